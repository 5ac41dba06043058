"""smartlock.core.alerts: the backend's signed alerts to owners and residents."""

from __future__ import annotations

import dataclasses

import pytest

from smartlock.core.alerts import Alert, make_alert, open_alert
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import PROTOCOL_VERSION, MessageType
from smartlock.core.wire import Writer

NOW = 1_800_000_000.0
ALERT_ID = b"\x0a" * 16
DETAIL = "4 failed attempts within 300 s; locked out for 300 s"


def _make(signer, detail: str = DETAIL, **changes: str) -> Alert:
    fields = {"kind": "intrusion", "lock_id": "lock1", "subject": "lock1", **changes}
    return make_alert(
        detail=detail, now=NOW, backend_key=signer, random_bytes=lambda n: ALERT_ID[:n], **fields
    )


def _open(payload: bytes, backend_key) -> Alert:
    return open_alert(payload, backend_public=backend_key.public_key())


def _reason(payload: bytes, backend_key) -> Reason:
    with pytest.raises(Rejected) as caught:
        _open(payload, backend_key)
    return caught.value.reason


def test_signed_alert_opens_with_every_field(backend_key) -> None:
    made = _make(backend_key)
    opened = _open(bytes(made), backend_key)
    assert opened == made
    assert (opened.alert_id, opened.at, opened.kind) == (ALERT_ID, int(NOW), "intrusion")
    assert (opened.lock_id, opened.subject, opened.detail) == ("lock1", "lock1", DETAIL)


def test_alert_about_no_lock_opens(backend_key) -> None:
    made = _make(backend_key, kind="lock_online", lock_id="")
    assert _open(bytes(made), backend_key).lock_id == ""


def test_alert_signed_by_another_key_is_refused(backend_key, lock_key) -> None:
    assert _reason(bytes(_make(lock_key)), backend_key) is Reason.BAD_SIGNATURE


def test_alert_with_a_garbage_signature_is_refused(backend_key) -> None:
    forged = dataclasses.replace(_make(backend_key), signature=b"\x00" * 256)
    assert _reason(bytes(forged), backend_key) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    "changes",
    [
        {"kind": "lock_offline"},
        {"lock_id": "lock2"},
        {"subject": "bob"},
        {"detail": "all is well"},
        {"at": int(NOW) + 1},
        {"alert_id": b"\x0b" * 16},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_alert_with_an_altered_field_is_refused(backend_key, changes: dict[str, object]) -> None:
    altered = dataclasses.replace(_make(backend_key), **changes)
    assert _reason(bytes(altered), backend_key) is Reason.BAD_SIGNATURE


def _encoded_with_detail(alert: Alert, detail: str) -> bytes:
    """``alert``'s bytes with another detail but its own signature (what a forger can send)."""
    return (
        Writer()
        .u8(PROTOCOL_VERSION)
        .u8(MessageType.ALERT)
        .raw(alert.alert_id)
        .u32(alert.at)
        .text(alert.kind)
        .text(alert.lock_id)
        .text(alert.subject)
        .text(detail)
        .long_bytes(alert.signature)
        .getvalue()
    )


def test_long_detail_is_cut_to_200_bytes_when_made(backend_key) -> None:
    made = _make(backend_key, detail="x" * 250)
    assert made.detail == "x" * 200
    assert _open(bytes(made), backend_key).detail == "x" * 200


def test_text_appended_to_a_full_length_detail_is_refused(backend_key) -> None:
    made = _make(backend_key, detail="x" * 250)
    forged = _encoded_with_detail(made, made.detail + " -- false alarm, ignore")
    assert _reason(forged, backend_key) is Reason.BAD_SIGNATURE


def test_long_non_ascii_detail_is_cut_on_a_character_boundary(backend_key) -> None:
    made = _make(backend_key, detail="é" * 150)  # 300 bytes of UTF-8
    assert made.detail == "é" * 100
    assert _open(bytes(made), backend_key).detail == "é" * 100


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda p: p[:-1], Reason.MALFORMED),
        (lambda p: p + b"\x00", Reason.MALFORMED),
        (lambda p: p[:1] + bytes([MessageType.REVOCATION_LIST]) + p[2:], Reason.WRONG_TYPE),
    ],
    ids=["truncated", "trailing", "type"],
)
def test_mangled_alert_is_refused(backend_key, mangle, reason: Reason) -> None:
    assert _reason(mangle(bytes(_make(backend_key))), backend_key) is reason
