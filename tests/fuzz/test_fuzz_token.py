"""Fuzzes the BLE token codec (smartlock.core.token): ``TokenFrame.from_bytes`` and
``token_payload`` of advertising data.

Rule: any bytes either decode or are refused with ``Rejected``, nothing else escapes; what decodes
is exactly what was sent (a frame re-encodes to the same 24 bytes, a payload is the body of the one
smartlock structure in at most 31 bytes); valid values round-trip.
"""

from __future__ import annotations

from fuzz_support import actions, decoded_or_refused, mutations, tags, u16
from hypothesis import given
from hypothesis import strategies as st

from smartlock.core.token import (
    AD_MANUFACTURER_SPECIFIC,
    COMPANY_ID,
    FRAME_BYTES,
    KEY_HANDLE_BYTES,
    LEGACY_ADVERTISING_MAX,
    TOKEN_VERSION,
    TokenFrame,
    advertising_data,
    token_payload,
)

frames = st.builds(
    TokenFrame,
    version=st.just(TOKEN_VERSION),
    action=actions,
    key_handle=st.binary(min_size=KEY_HANDLE_BYTES, max_size=KEY_HANDLE_BYTES),
    counter=u16,
    tag=tags,
)
OURS = COMPANY_ID.to_bytes(2, "little")


@st.composite
def ad_structures(draw: st.DrawFn) -> bytes:
    """One advertising structure: often a smartlock one (of any length), else any type."""
    if draw(st.booleans()):
        body = draw(frames.map(bytes) | st.binary(max_size=30))
        value = bytes([AD_MANUFACTURER_SPECIFIC]) + OURS + body
    else:
        value = draw(st.binary(max_size=30))
    length = draw(st.just(len(value)) | st.integers(0, 255))  # sometimes a lying length
    return bytes([length]) + value


advertisements = st.lists(ad_structures(), max_size=4).map(b"".join) | st.binary(max_size=40)


@given(frames)
def test_token_frames_round_trip(frame: TokenFrame) -> None:
    assert TokenFrame.from_bytes(bytes(frame)) == frame


@given(st.binary(max_size=2 * FRAME_BYTES) | frames.map(bytes) | st.binary().map(b"\x01".__add__))
def test_any_bytes_decode_to_the_same_token_frame_or_are_refused(data: bytes) -> None:
    frame = decoded_or_refused(TokenFrame.from_bytes, data)
    if frame is not None:
        assert bytes(frame) == data


@given(frames, mutations(version=TOKEN_VERSION))
def test_a_mutated_token_frame_decodes_to_exactly_its_bytes_or_is_refused(frame, mutation) -> None:
    data = mutation.apply(bytes(frame))
    decoded = decoded_or_refused(TokenFrame.from_bytes, data)
    if decoded is not None:
        assert bytes(decoded) == data
        assert decoded.version == TOKEN_VERSION


@given(frames)
def test_the_token_payload_of_a_token_advertisement_is_its_frame(frame: TokenFrame) -> None:
    data = advertising_data(frame)
    assert len(data) <= LEGACY_ADVERTISING_MAX
    assert token_payload(data) == bytes(frame)


@given(advertisements)
def test_token_payload_finds_only_a_smartlock_structure_within_legacy_advertising(
    data: bytes,
) -> None:
    payload = decoded_or_refused(token_payload, data)
    if payload is not None:
        assert len(data) <= LEGACY_ADVERTISING_MAX
        header = bytes([len(payload) + 3, AD_MANUFACTURER_SPECIFIC]) + OURS
        assert header + payload in data
