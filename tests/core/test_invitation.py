"""smartlock.core.invitation: the ``SLI1.`` text a guest scans or pastes round-trips, and every
malformed part of it is refused with a message that says what is wrong."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from smartlock.core.invitation import MAX_TEXT, PREFIX, InvitationCode, InvitationError

CODE = "Q2hvb3NlLWEtY29kZQ_-AB"  # secrets.token_urlsafe(16): 22 characters
CA = "0123456789abcdef" * 4

INVITATION = InvitationCode(
    site="home", guest="guest_01", url="https://home.example:8443", code=CODE, ca_sha256=CA
)


def _fields() -> dict[str, Any]:
    return {
        "v": 1,
        "site": "home",
        "guest": "guest_01",
        "url": INVITATION.url,
        "code": CODE,
        "ca": CA,
    }


def _encode(body: bytes) -> str:
    return PREFIX + base64.urlsafe_b64encode(body).decode().rstrip("=")


def _text(change: Callable[[dict[str, Any]], object]) -> str:
    fields = _fields()
    change(fields)
    return _encode(json.dumps(fields).encode())


# --- round trips ---------------------------------------------------------------------------


def test_an_invitation_round_trips_through_its_text() -> None:
    text = str(INVITATION)
    assert text.startswith("SLI1.")
    assert "=" not in text  # no base64 padding: safe in a URL and compact in a QR code
    assert InvitationCode.parse(text) == INVITATION


def test_the_text_is_base64url_json_with_every_field() -> None:
    body = str(INVITATION)[len(PREFIX) :]
    decoded = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert decoded == _fields()


def test_the_hand_encoded_fields_parse_to_the_same_invitation() -> None:
    assert InvitationCode.parse(_text(lambda d: None)) == INVITATION


@pytest.mark.parametrize(
    "site",
    ["home", "Maison de Léa", "a/b\"c'<script>", ""],
    ids=["plain", "accents", "symbols", "empty"],
)
def test_any_site_name_round_trips(site: str) -> None:
    invitation = InvitationCode(site, "guest_01", "https://10.0.0.2:8080", CODE, CA)
    assert InvitationCode.parse(str(invitation)) == invitation


def test_whitespace_around_a_pasted_invitation_is_ignored() -> None:
    assert InvitationCode.parse(f"  \n{INVITATION}\r\n\t") == INVITATION


@pytest.mark.parametrize("length", [16, 64])
def test_codes_of_16_and_64_characters_are_accepted(length: int) -> None:
    code = ("aZ09_-" * 11)[:length]
    assert InvitationCode.parse(_text(lambda d: d.update(code=code))).code == code


# --- refusals ------------------------------------------------------------------------------


def _refused(text: str) -> str:
    with pytest.raises(InvitationError) as raised:
        InvitationCode.parse(text)
    return str(raised.value)


def test_an_invitation_error_is_a_value_error() -> None:
    assert issubclass(InvitationError, ValueError)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "SLI2." + str(INVITATION)[5:],
        "sli1." + str(INVITATION)[5:],
        "SLI1",
        str(INVITATION)[1:],
    ],
    ids=[
        "empty",
        "blank",
        "other-version-prefix",
        "lower-case-prefix",
        "no-dot",
        "cut-at-the-start",
    ],
)
def test_text_without_the_prefix_is_not_an_invitation(text: str) -> None:
    assert _refused(text) == "not a smartlock invitation (it starts with 'SLI1.')"


@pytest.mark.parametrize(
    "text",
    [
        "SLI1.A",  # one character more than a multiple of four: no base64 at all
        "SLI1.é-accented",  # not ASCII
        str(INVITATION)[:-7],  # cut short: the JSON does not end
        _encode(b"not json"),
        _encode(b"\xff\xfe\xfd"),  # not UTF-8
        _encode(b""),
        "SLI1.",
    ],
    ids=["bad-base64", "not-ascii", "truncated", "not-json", "not-utf8", "empty-body", "no-body"],
)
def test_a_damaged_body_asks_to_copy_all_of_it(text: str) -> None:
    assert _refused(text) == "the invitation is damaged (copy all of it)"


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(v=2),
        lambda d: d.update(v=0),
        lambda d: d.update(v="1"),
        lambda d: d.pop("v"),
        lambda d: d.update(v=True),
        lambda d: d.update(v=1.0),
    ],
    ids=["v2", "v0", "v-as-string", "no-version", "v-as-true", "v-as-float"],
)
def test_another_version_is_refused(change: Callable[[dict[str, Any]], object]) -> None:
    assert _refused(_text(change)) == "this invitation is of another smartlock version"


@pytest.mark.parametrize(
    "body", [b"[1]", b'"SLI1"', b"1", b"null"], ids=["list", "string", "number", "null"]
)
def test_json_that_is_not_an_object_is_refused(body: bytes) -> None:
    assert _refused(_encode(body)) == "this invitation is of another smartlock version"


@pytest.mark.parametrize("field", ["site", "guest", "url", "code", "ca"])
def test_a_missing_field_is_refused(field: str) -> None:
    assert (
        _refused(_text(lambda d: d.pop(field))) == "the invitation is damaged (a field is missing)"
    )


@pytest.mark.parametrize(
    "value", [None, 7, ["x"], {"x": 1}], ids=["null", "number", "list", "object"]
)
@pytest.mark.parametrize("field", ["site", "guest", "url", "code", "ca"])
def test_a_field_that_is_not_a_string_is_refused(field: str, value: object) -> None:
    text = _text(lambda d: d.update({field: value}))
    assert _refused(text) == "the invitation is damaged (a field is missing)"


@pytest.mark.parametrize(
    "guest",
    ["Guest", "guest one", "", "-guest", "g" * 33, "../etc", "guest\n"],
    ids=["capital", "space", "empty", "leading-dash", "33-chars", "path", "newline"],
)
def test_a_bad_guest_name_is_refused_naming_it(guest: str) -> None:
    message = _refused(_text(lambda d: d.update(guest=guest)))
    assert message.startswith(f"invalid guest name {guest!r}: use 1-32 characters")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://home.example",
        "javascript:alert(1)",
        "home.example",
        "",
        "HTTPS://home.example",
        "//x",
        "http://10.0.0.2:8080",
        "http://home.example",
    ],
    ids=[
        "ftp",
        "javascript",
        "no-scheme",
        "empty",
        "upper-case-scheme",
        "scheme-relative",
        "plain-http-to-the-lan",
        "plain-http-to-a-name",
    ],
)
def test_an_address_that_is_not_http_is_refused(url: str) -> None:
    assert _refused(_text(lambda d: d.update(url=url))) == (
        "the invitation's address must be https://, or http:// on this machine"
    )


@pytest.mark.parametrize(
    "code",
    ["a" * 15, "a" * 65, "", "abc+def/ghi=jklmnop", "abcdefghijklmnop qrs", "abcdéfghijklmnopq"],
    ids=["15-chars", "65-chars", "empty", "plain-base64", "space", "not-ascii"],
)
def test_a_bad_code_is_refused(code: str) -> None:
    assert _refused(_text(lambda d: d.update(code=code))) == (
        "the invitation is damaged (bad code or CA fingerprint)"
    )


@pytest.mark.parametrize(
    "ca",
    [CA.upper(), CA[:-1], CA + "0", "g" * 64, "", CA[:32] + ":" + CA[33:]],
    ids=["upper-case", "63-digits", "65-digits", "not-hex", "empty", "colon"],
)
def test_a_bad_ca_fingerprint_is_refused(ca: str) -> None:
    assert _refused(_text(lambda d: d.update(ca=ca))) == (
        "the invitation is damaged (bad code or CA fingerprint)"
    )


def _with_site_of(length: int) -> InvitationCode:
    return InvitationCode("h" * length, "guest_01", "https://x.example", CODE, CA)


def test_an_invitation_longer_than_the_limit_is_refused_before_it_is_decoded() -> None:
    length = 0
    while len(str(_with_site_of(length + 1))) <= MAX_TEXT:
        length += 1
    longest = _with_site_of(length)
    assert InvitationCode.parse(str(longest)) == longest
    too_long = str(_with_site_of(length + 1))
    assert len(too_long) == MAX_TEXT + 1 or len(too_long) == MAX_TEXT + 2
    assert _refused(too_long) == "the invitation is too long (at most 2048 characters)"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"]
)
def test_plain_http_is_accepted_on_this_machine_only(url: str) -> None:
    invitation = InvitationCode("home", "guest_01", url, CODE, CA)
    assert InvitationCode.parse(str(invitation)) == invitation
