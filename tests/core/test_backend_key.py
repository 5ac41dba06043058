"""smartlock.core.backend_key: the backend's signed notices that rotate the key a device trusts.

An ENDORSE names the new key and is signed by the previous one; a RETIRE names the retired key and
is signed by the new one.  The keys are the session's (tests/pure_fixtures.py): ``backend_key``
plays the previous key, ``other_lock_key`` the new one, ``guest_key`` a stranger's.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from smartlock import crypto
from smartlock.core.backend_key import (
    ENDORSE,
    RETIRE,
    _signed,
    make_backend_key_notice,
    open_backend_key_notice,
)
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, MessageType
from smartlock.core.wire import Writer

NOW = 1_800_000_000.75
KIND_OFFSET = 2  # version u8, type u8, then the kind


@pytest.fixture
def previous_key(backend_key: crypto.PrivateKey) -> crypto.PrivateKey:
    return backend_key


@pytest.fixture
def new_key(other_lock_key: crypto.PrivateKey) -> crypto.PrivateKey:
    return other_lock_key


@pytest.fixture
def stranger_key(guest_key: crypto.PrivateKey) -> crypto.PrivateKey:
    return guest_key


@pytest.fixture
def endorsement(previous_key: crypto.PrivateKey, new_key: crypto.PrivateKey) -> bytes:
    """ "My key is now the new one", signed by the previous key."""
    return make_backend_key_notice(ENDORSE, new_key.public_key(), now=NOW, signing_key=previous_key)


def _der(key: crypto.PublicKey) -> bytes:
    return crypto.public_key_to_der(key)


def _hand_made(kind: int, key_der: bytes, at: int, signing_key: crypto.PrivateKey) -> bytes:
    """A notice laid out as the module does, for fields ``make_backend_key_notice`` refuses."""
    signature = crypto.sign(signing_key, _signed(kind, key_der, at))
    return (
        Writer()
        .u8(PROTOCOL_VERSION)
        .u8(MessageType.BACKEND_KEY)
        .u8(kind)
        .long_bytes(key_der)
        .u32(at)
        .long_bytes(signature)
        .getvalue()
    )


def _rejection(payload: bytes, trusted: crypto.TrustedKeys) -> Reason:
    with pytest.raises(Rejected) as caught:
        open_backend_key_notice(payload, trusted=trusted)
    return caught.value.reason


# --- round trips ---------------------------------------------------------------------------------


def test_an_endorsement_opens_with_the_previous_key_and_names_the_new_key(
    endorsement: bytes, previous_key: crypto.PrivateKey, new_key: crypto.PrivateKey
) -> None:
    notice = open_backend_key_notice(endorsement, trusted=previous_key.public_key())

    assert notice.kind == ENDORSE
    assert _der(notice.key) == _der(new_key.public_key())
    assert notice.at == int(NOW)


def test_a_retirement_opens_with_the_new_key_and_names_the_retired_key(
    previous_key: crypto.PrivateKey, new_key: crypto.PrivateKey
) -> None:
    payload = make_backend_key_notice(
        RETIRE, previous_key.public_key(), now=NOW, signing_key=new_key
    )

    notice = open_backend_key_notice(payload, trusted=new_key.public_key())

    assert notice.kind == RETIRE
    assert _der(notice.key) == _der(previous_key.public_key())
    assert notice.at == int(NOW)


def test_a_notice_fits_in_one_message(endorsement: bytes) -> None:
    assert len(endorsement) <= MAX_MESSAGE_BYTES


# --- who signed it -------------------------------------------------------------------------------


def test_a_notice_signed_by_an_untrusted_key_is_a_bad_signature(
    new_key: crypto.PrivateKey, stranger_key: crypto.PrivateKey, previous_key: crypto.PrivateKey
) -> None:
    forged = make_backend_key_notice(
        ENDORSE, stranger_key.public_key(), now=NOW, signing_key=stranger_key
    )

    trusted = (new_key.public_key(), previous_key.public_key())
    assert _rejection(forged, trusted) == Reason.BAD_SIGNATURE


def test_an_endorsement_does_not_open_with_the_key_it_endorses(
    endorsement: bytes, new_key: crypto.PrivateKey
) -> None:
    assert _rejection(endorsement, new_key.public_key()) == Reason.BAD_SIGNATURE


@pytest.mark.parametrize("signer", ["previous", "new"])
def test_a_notice_signed_by_either_of_the_trusted_keys_opens(
    signer: str,
    previous_key: crypto.PrivateKey,
    new_key: crypto.PrivateKey,
    stranger_key: crypto.PrivateKey,
) -> None:
    signing_key = {"previous": previous_key, "new": new_key}[signer]
    payload = make_backend_key_notice(
        RETIRE, stranger_key.public_key(), now=NOW, signing_key=signing_key
    )

    notice = open_backend_key_notice(
        payload, trusted=(new_key.public_key(), previous_key.public_key())
    )

    assert notice.kind == RETIRE
    assert _der(notice.key) == _der(stranger_key.public_key())


def test_an_empty_tuple_of_trusted_keys_trusts_nothing(endorsement: bytes) -> None:
    assert _rejection(endorsement, ()) == Reason.BAD_SIGNATURE


# --- what was signed -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [RETIRE, 3, 0], ids=["retire", "unknown-3", "zero"])
def test_a_kind_changed_after_signing_is_a_bad_signature(
    endorsement: bytes, previous_key: crypto.PrivateKey, kind: int
) -> None:
    assert endorsement[KIND_OFFSET] == ENDORSE
    altered = endorsement[:KIND_OFFSET] + bytes([kind]) + endorsement[KIND_OFFSET + 1 :]

    assert _rejection(altered, previous_key.public_key()) == Reason.BAD_SIGNATURE


@pytest.mark.parametrize("field", ["key", "at", "signature"])
def test_any_other_field_changed_after_signing_is_a_bad_signature(
    endorsement: bytes, previous_key: crypto.PrivateKey, field: str
) -> None:
    key_start = KIND_OFFSET + 1 + 2  # the kind, then the key's u16 length
    key_length = int.from_bytes(endorsement[KIND_OFFSET + 1 : key_start], "big")
    offset = {
        "key": key_start + key_length - 1,  # the last byte of the DER: still parses
        "at": key_start + key_length + 3,
        "signature": len(endorsement) - 1,
    }[field]
    altered = bytearray(endorsement)
    altered[offset] ^= 1

    assert _rejection(bytes(altered), previous_key.public_key()) == Reason.BAD_SIGNATURE


def test_a_validly_signed_notice_of_an_unknown_kind_is_malformed(
    previous_key: crypto.PrivateKey, new_key: crypto.PrivateKey
) -> None:
    payload = _hand_made(3, _der(new_key.public_key()), int(NOW), previous_key)

    assert _rejection(payload, previous_key.public_key()) == Reason.MALFORMED


def test_a_validly_signed_notice_naming_no_public_key_is_malformed(
    previous_key: crypto.PrivateKey,
) -> None:
    payload = _hand_made(ENDORSE, b"not a key", int(NOW), previous_key)

    assert _rejection(payload, previous_key.public_key()) == Reason.MALFORMED


# --- the frame -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: bytes([PROTOCOL_VERSION + 1]) + p[1:], Reason.WRONG_VERSION),
        (lambda p: p[:1] + bytes([MessageType.REVOCATION_LIST]) + p[2:], Reason.WRONG_TYPE),
        (lambda p: p[:-1], Reason.MALFORMED),
        (lambda p: p[: KIND_OFFSET + 1], Reason.MALFORMED),
        (lambda p: p[:1], Reason.MALFORMED),
        (lambda p: p + b"\x00", Reason.MALFORMED),
        (lambda p: p + b"\x00" * MAX_MESSAGE_BYTES, Reason.OVERSIZED),
    ],
    ids=[
        "wrong-version",
        "wrong-type",
        "truncated-signature",
        "truncated-after-kind",
        "shorter-than-a-header",
        "trailing-byte",
        "oversized",
    ],
)
def test_a_damaged_frame_is_refused_with_its_reason(
    endorsement: bytes,
    previous_key: crypto.PrivateKey,
    damage: Callable[[bytes], bytes],
    reason: Reason,
) -> None:
    assert _rejection(damage(endorsement), previous_key.public_key()) == reason


# --- making one ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [0, 3])
def test_making_a_notice_of_another_kind_is_a_value_error(
    previous_key: crypto.PrivateKey, kind: int
) -> None:
    with pytest.raises(ValueError, match="endorses or retires"):
        make_backend_key_notice(kind, previous_key.public_key(), now=NOW, signing_key=previous_key)
