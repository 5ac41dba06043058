"""smartlock.core.messages: shapes of the MQTT messages (decoding checks shape, not trust)."""

from __future__ import annotations

import dataclasses

import pytest

from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import (
    LABEL_ACCESS_EVENT,
    LABEL_DENIAL,
    LABEL_ISSUANCE,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    AccessEvent,
    Action,
    GuestDelivery,
    IssuanceHeader,
    KeyAck,
    LockDelivery,
    MessageType,
    Outcome,
    SessionDenied,
    SessionRequest,
    issuance_signed_bytes,
    message_type_of,
    open_frame,
)
from smartlock.core.wire import Writer

KEY_ID = bytes(range(16))
REQUEST_ID = bytes(range(100, 116))
EVENT_ID = bytes(range(200, 216))
AT = 1_800_000_000

HEADER = IssuanceHeader(
    key_id=KEY_ID, issued_at=AT, expires_at=AT + 300, lock_id="lock1", guest_id="guest1"
)

SAMPLES = {
    "session_request": SessionRequest(request_id=REQUEST_ID, sent_at=AT, lock_id="lock1"),
    "lock_delivery": LockDelivery(
        header=HEADER,
        lock_ciphertext=b"\x11" * 256,
        guest_part_digest=b"\x22" * 32,
        signature=b"\x33" * 256,
    ),
    "guest_delivery": GuestDelivery(
        header=HEADER,
        request_id=REQUEST_ID,
        guest_ciphertext=b"\x44" * 256,
        lock_part_digest=b"\x55" * 32,
        signature=b"\x66" * 256,
    ),
    "key_ack": KeyAck(key_id=KEY_ID, lock_id="lock1", tag=b"\x77" * 16),
    "access_event": AccessEvent(
        event_id=EVENT_ID,
        at=AT,
        lock_id="lock1",
        guest_id="guest1",
        key_id=KEY_ID,
        pass_id=7,
        counter=42,
        action=Action.LOCK,
        outcome=Outcome.GRANTED,
        ack_tag=b"\x88" * 16,
        signature=b"\x99" * 256,
    ),
    "session_denied": SessionDenied(
        request_id=REQUEST_ID, at=AT, guest_id="guest1", reason="not_granted", signature=b"\xaa" * 5
    ),
}
TYPE_OF = {
    "session_request": MessageType.SESSION_REQUEST,
    "lock_delivery": MessageType.LOCK_DELIVERY,
    "guest_delivery": MessageType.GUEST_DELIVERY,
    "key_ack": MessageType.KEY_ACK,
    "access_event": MessageType.ACCESS_EVENT,
    "session_denied": MessageType.SESSION_DENIED,
}
NAMES = sorted(SAMPLES)


def _decode(name: str, payload: bytes):
    return type(SAMPLES[name]).from_bytes(payload)


def _reason(name: str, payload: bytes) -> Reason:
    with pytest.raises(Rejected) as caught:
        _decode(name, payload)
    return caught.value.reason


# --- round trips and framing ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_message_round_trips(name: str) -> None:
    message = SAMPLES[name]
    assert _decode(name, bytes(message)) == message


@pytest.mark.parametrize("name", NAMES)
def test_message_starts_with_version_and_type(name: str) -> None:
    payload = bytes(SAMPLES[name])
    assert payload[0] == PROTOCOL_VERSION
    assert payload[1] == TYPE_OF[name]
    assert message_type_of(payload) is TYPE_OF[name]


@pytest.mark.parametrize("name", NAMES)
def test_every_truncation_is_malformed(name: str) -> None:
    payload = bytes(SAMPLES[name])
    for cut in range(len(payload)):
        assert _reason(name, payload[:cut]) is Reason.MALFORMED, f"cut at {cut}"


@pytest.mark.parametrize("name", NAMES)
def test_trailing_bytes_are_malformed(name: str) -> None:
    assert _reason(name, bytes(SAMPLES[name]) + b"\x00") is Reason.MALFORMED


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("version", [0, 1, 3, 0xFF])
def test_wrong_version_is_rejected(name: str, version: int) -> None:
    payload = bytes([version]) + bytes(SAMPLES[name])[1:]
    assert _reason(name, payload) is Reason.WRONG_VERSION


@pytest.mark.parametrize("name", NAMES)
def test_another_message_type_is_rejected(name: str) -> None:
    for other in NAMES:
        if other != name:
            assert _reason(name, bytes(SAMPLES[other])) is Reason.WRONG_TYPE, other


@pytest.mark.parametrize("name", NAMES)
def test_unknown_message_type_is_rejected(name: str) -> None:
    payload = bytes([PROTOCOL_VERSION, 0x7F]) + bytes(SAMPLES[name])[2:]
    assert _reason(name, payload) is Reason.WRONG_TYPE


@pytest.mark.parametrize("name", NAMES)
def test_oversized_message_is_rejected_before_anything_else(name: str) -> None:
    payload = bytes(SAMPLES[name])
    oversized = payload + b"\x00" * (MAX_MESSAGE_BYTES + 1 - len(payload))
    assert len(oversized) == MAX_MESSAGE_BYTES + 1
    assert _reason(name, oversized) is Reason.OVERSIZED
    # even with a wrong version, size is checked first
    assert _reason(name, b"\x09" + oversized[1:]) is Reason.OVERSIZED


def test_message_of_exactly_max_bytes_is_not_oversized() -> None:
    payload = bytes(SAMPLES["lock_delivery"])
    padded = payload + b"\x00" * (MAX_MESSAGE_BYTES - len(payload))
    assert _reason("lock_delivery", padded) is Reason.MALFORMED  # trailing, not oversized


def test_open_frame_positions_reader_after_header() -> None:
    reader = open_frame(bytes([PROTOCOL_VERSION, MessageType.KEY_ACK, 0xAB]), MessageType.KEY_ACK)
    assert reader.offset() == 2
    assert reader.u8() == 0xAB


# --- bad fields inside frames ----------------------------------------------------------------


@pytest.mark.parametrize("lock_id", ["", "Lock1", "lock/1", "x" * 33])
def test_session_request_with_bad_lock_id_is_malformed(lock_id: str) -> None:
    payload = (
        Writer()
        .u8(PROTOCOL_VERSION)
        .u8(MessageType.SESSION_REQUEST)
        .raw(REQUEST_ID)
        .u32(AT)
        .text(lock_id)
        .getvalue()
    )
    assert _reason("session_request", payload) is Reason.MALFORMED


def _replace_text(payload: bytes, old: str, new: bytes) -> bytes:
    """Replace the length-prefixed ``old`` (first occurrence) by ``new`` with its own prefix."""
    encoded = bytes([len(old)]) + old.encode()
    assert encoded in payload
    return payload.replace(encoded, bytes([len(new)]) + new, 1)


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("lock_delivery", "lock1"),
        ("lock_delivery", "guest1"),
        ("guest_delivery", "lock1"),
        ("guest_delivery", "guest1"),
        ("key_ack", "lock1"),
        ("access_event", "lock1"),
        ("access_event", "guest1"),
        ("session_denied", "guest1"),
    ],
)
@pytest.mark.parametrize("bad", [b"LOCK1", b"a/b", b"\xff\xfe", b"", b"#"])
def test_bad_identifier_in_frame_is_malformed(name: str, field: str, bad: bytes) -> None:
    payload = _replace_text(bytes(SAMPLES[name]), field, bad)
    assert _reason(name, payload) is Reason.MALFORMED


def test_access_event_with_unknown_action_is_malformed() -> None:
    event = SAMPLES["access_event"]
    payload = bytes(dataclasses.replace(event, action=3))
    assert _reason("access_event", payload) is Reason.MALFORMED


def test_access_event_with_unknown_outcome_is_malformed() -> None:
    event = SAMPLES["access_event"]
    payload = bytes(dataclasses.replace(event, outcome=7))
    assert _reason("access_event", payload) is Reason.MALFORMED


def test_denial_reason_that_is_not_utf8_is_malformed() -> None:
    payload = (
        Writer()
        .u8(PROTOCOL_VERSION)
        .u8(MessageType.SESSION_DENIED)
        .raw(REQUEST_ID)
        .u32(AT)
        .text("guest1")
        .short_bytes(b"\xc3\x28")
        .long_bytes(b"sig")
        .getvalue()
    )
    assert _reason("session_denied", payload) is Reason.MALFORMED


# --- construction checks ------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", [b"", b"\x00" * 15, b"\x00" * 17])
def test_session_request_needs_a_16_byte_id(request_id: bytes) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        SessionRequest(request_id=request_id, sent_at=AT, lock_id="lock1")


def test_session_request_needs_a_valid_lock_id() -> None:
    with pytest.raises(ValueError, match="lock id"):
        SessionRequest(request_id=REQUEST_ID, sent_at=AT, lock_id="Front Door")


def test_issuance_header_refuses_bad_fields() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        dataclasses.replace(HEADER, key_id=b"short")
    with pytest.raises(ValueError, match="lock id"):
        dataclasses.replace(HEADER, lock_id="LOCK")
    with pytest.raises(ValueError, match="guest id"):
        dataclasses.replace(HEADER, guest_id="guest one")


# --- what gets signed ---------------------------------------------------------------------------


def test_issuance_signed_bytes_are_labelled_and_cover_every_field() -> None:
    lock_digest, guest_digest = b"\x01" * 32, b"\x02" * 32
    signed = issuance_signed_bytes(HEADER, lock_digest, guest_digest)
    assert signed.startswith(LABEL_ISSUANCE + b"\x00" + bytes([PROTOCOL_VERSION]))
    header_changes = {
        "key_id": b"\x09" * 16,
        "issued_at": AT + 1,
        "expires_at": AT + 301,
        "lock_id": "lock2",
        "guest_id": "guest2",
    }
    variants = [
        issuance_signed_bytes(HEADER, guest_digest, lock_digest),
        issuance_signed_bytes(HEADER, lock_digest, b"\x03" * 32),
        issuance_signed_bytes(HEADER, b"\x03" * 32, guest_digest),
    ] + [
        issuance_signed_bytes(
            dataclasses.replace(HEADER, **{field: value}), lock_digest, guest_digest
        )
        for field, value in header_changes.items()
    ]
    for variant in variants:
        assert variant != signed


def test_access_event_signed_bytes_cover_every_field_but_the_signature() -> None:
    event = SAMPLES["access_event"]
    signed = event.signed_bytes()
    assert signed.startswith(LABEL_ACCESS_EVENT + b"\x00" + bytes([PROTOCOL_VERSION]))
    assert dataclasses.replace(event, signature=b"other").signed_bytes() == signed
    changes = {
        "event_id": b"\x00" * 16,
        "at": AT + 1,
        "lock_id": "lock2",
        "guest_id": "guest2",
        "key_id": b"\x01" * 16,
        "counter": 43,
        "action": Action.UNLOCK,
        "ack_tag": b"\x00" * 16,
    }
    for field, value in changes.items():
        assert dataclasses.replace(event, **{field: value}).signed_bytes() != signed, field


def test_denial_signed_bytes_cover_every_field_but_the_signature() -> None:
    denial = SAMPLES["session_denied"]
    signed = denial.signed_bytes()
    assert signed.startswith(LABEL_DENIAL + b"\x00" + bytes([PROTOCOL_VERSION]))
    assert dataclasses.replace(denial, signature=b"").signed_bytes() == signed
    changes = {
        "request_id": b"\x00" * 16,
        "at": AT + 1,
        "guest_id": "guest2",
        "reason": "stale",
    }
    for field, value in changes.items():
        assert dataclasses.replace(denial, **{field: value}).signed_bytes() != signed, field


def test_signing_labels_are_distinct() -> None:
    assert len({LABEL_ISSUANCE, LABEL_ACCESS_EVENT, LABEL_DENIAL}) == 3


# --- dispatch -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x01",
        bytes([1, MessageType.KEY_ACK]),
        bytes([PROTOCOL_VERSION, 0]),
        bytes([PROTOCOL_VERSION, 0x63]),
    ],
    ids=["empty", "one-byte", "wrong-version", "type-zero", "unknown-type"],
)
def test_message_type_of_unknown_or_short_payload_is_none(payload: bytes) -> None:
    assert message_type_of(payload) is None
