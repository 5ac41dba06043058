"""Fuzzes the MQTT message codecs (smartlock.core.messages): ``peek_type``, ``open_frame``,
``message_type_of`` and ``from_bytes`` of SessionRequest, LockDelivery, GuestDelivery, KeyAck,
AccessEvent and SessionDenied.

Rule: decoding any bytes gives a message or ``Rejected``, nothing else; a decoded message is
exactly the bytes it came from (it re-encodes to them: no two encodings of one message, nothing
ignored); a header is accepted only with the version, a type allowed and a size within bounds;
valid messages round-trip.
"""

from __future__ import annotations

from typing import Any

import pytest
from fuzz_support import (
    actions,
    decoded_or_refused,
    identifiers,
    ids,
    mutations,
    short_texts,
    tags,
    u16,
    u32,
)
from hypothesis import given
from hypothesis import strategies as st

from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import (
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    AccessEvent,
    GuestDelivery,
    IssuanceHeader,
    KeyAck,
    LockDelivery,
    MessageType,
    Outcome,
    SessionDenied,
    SessionRequest,
    message_type_of,
    open_frame,
    peek_type,
)

long_bytes = st.binary(max_size=300)  # ciphertexts and signatures (256 bytes with RSA-2048)
digests = st.binary(min_size=32, max_size=32)
headers = st.builds(
    IssuanceHeader,
    key_id=ids,
    issued_at=u32,
    expires_at=u32,
    lock_id=identifiers,
    guest_id=identifiers,
    pass_id=u32,
    max_uses=u16,
)
MESSAGES: dict[type[Any], st.SearchStrategy[Any]] = {
    SessionRequest: st.builds(SessionRequest, ids, u32, identifiers),
    LockDelivery: st.builds(LockDelivery, headers, long_bytes, digests, long_bytes),
    GuestDelivery: st.builds(GuestDelivery, headers, ids, long_bytes, digests, long_bytes),
    KeyAck: st.builds(KeyAck, ids, identifiers, tags),
    AccessEvent: st.builds(
        AccessEvent,
        ids,
        u32,
        identifiers,
        identifiers,
        ids,
        u32,
        u16,
        actions,
        st.sampled_from(Outcome),
        tags,
        long_bytes,
    ),
    SessionDenied: st.builds(SessionDenied, ids, u32, identifiers, short_texts, long_bytes),
}
codecs = pytest.mark.parametrize("codec", list(MESSAGES), ids=lambda codec: codec.__name__)
headers_then_anything = st.builds(
    lambda version, kind, rest: bytes([version, kind]) + rest,
    st.just(PROTOCOL_VERSION) | st.integers(0, 255),
    st.sampled_from(MessageType) | st.integers(0, 255),
    st.binary(max_size=100),
)


@codecs
@given(data=st.data())
def test_every_message_round_trips(codec: type[Any], data: st.DataObject) -> None:
    message = data.draw(MESSAGES[codec], label="message")
    assert codec.from_bytes(bytes(message)) == message


@codecs
@given(data=st.data(), mutation=mutations())
def test_a_mutated_message_decodes_to_exactly_its_bytes_or_is_refused(
    codec: type[Any], data: st.DataObject, mutation
) -> None:
    payload = mutation.apply(bytes(data.draw(MESSAGES[codec], label="message")))
    decoded = decoded_or_refused(codec.from_bytes, payload)
    if decoded is not None:
        assert bytes(decoded) == payload


@codecs
@given(payload=st.binary(max_size=600) | headers_then_anything)
def test_any_bytes_decode_to_exactly_those_bytes_or_are_refused(
    codec: type[Any], payload: bytes
) -> None:
    decoded = decoded_or_refused(codec.from_bytes, payload)
    if decoded is not None:
        assert bytes(decoded) == payload


@given(
    st.binary(max_size=40) | headers_then_anything,
    st.lists(st.sampled_from(MessageType), min_size=1, max_size=4, unique=True).map(tuple),
)
def test_peek_type_accepts_only_our_version_and_an_allowed_type(
    payload: bytes, allowed: tuple[MessageType, ...]
) -> None:
    found = decoded_or_refused(lambda p: peek_type(p, allowed), payload)
    if found is not None:
        assert payload[0] == PROTOCOL_VERSION
        assert payload[1] == found
        assert found in allowed


@given(st.binary(min_size=MAX_MESSAGE_BYTES + 1, max_size=2 * MAX_MESSAGE_BYTES))
def test_an_oversized_payload_is_refused_before_anything_is_read(payload: bytes) -> None:
    with pytest.raises(Rejected) as refused:
        peek_type(payload, tuple(MessageType))
    assert refused.value.reason is Reason.OVERSIZED


@given(st.binary(max_size=40) | headers_then_anything, st.sampled_from(MessageType))
def test_open_frame_reads_on_after_a_valid_header_only(
    payload: bytes, expected: MessageType
) -> None:
    reader = decoded_or_refused(lambda p: open_frame(p, expected), payload)
    if reader is not None:
        assert payload[:2] == bytes([PROTOCOL_VERSION, expected])
        assert reader.offset() == 2


@given(st.binary(max_size=40) | headers_then_anything)
def test_message_type_of_names_a_type_only_for_our_version(payload: bytes) -> None:
    found = message_type_of(payload)  # a peek for dispatch: it never raises
    if found is None:
        assert (
            len(payload) < 2 or payload[0] != PROTOCOL_VERSION or payload[1] not in set(MessageType)
        )
    else:
        assert payload[:2] == bytes([PROTOCOL_VERSION, found])
