"""smartlock.core.token: the 24-byte BLE token frame and the advertising data that carries it."""

from __future__ import annotations

import dataclasses

import pytest

from smartlock.core.errors import Reason, Rejected
from smartlock.core.issuance import SessionKey
from smartlock.core.messages import Action, IssuanceHeader
from smartlock.core.token import (
    AD_FLAGS,
    AD_MANUFACTURER_SPECIFIC,
    COMPANY_ID,
    FRAME_BYTES,
    LEGACY_ADVERTISING_MAX,
    MAX_COUNTER,
    TOKEN_VERSION,
    TokenFrame,
    advertising_data,
    make_token,
    token_is_valid,
    token_payload,
)

NOW = 1_800_000_000
KEY_A = SessionKey(
    IssuanceHeader(
        key_id=bytes.fromhex("a1a2a3a4") + b"\x00" * 12,
        issued_at=NOW,
        expires_at=NOW + 300,
        lock_id="lock_a",
        guest_id="guest1",
    ),
    secret=b"\x5a" * 32,
)


def _reason(call, *args) -> Reason:
    with pytest.raises(Rejected) as caught:
        call(*args)
    return caught.value.reason


def _manufacturer(company: int, payload: bytes) -> bytes:
    value = company.to_bytes(2, "little") + payload
    return bytes([len(value) + 1, AD_MANUFACTURER_SPECIFIC]) + value


# --- the frame ------------------------------------------------------------------------------


def test_token_frame_is_24_bytes() -> None:
    assert FRAME_BYTES == 24
    assert len(bytes(make_token(KEY_A, 1))) == 24


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("counter", [1, 2, 0x1234, MAX_COUNTER])
def test_token_frame_round_trips(action: Action, counter: int) -> None:
    frame = make_token(KEY_A, counter, action)
    assert TokenFrame.from_bytes(bytes(frame)) == frame


def test_token_frame_layout_is_version_action_handle_counter_tag() -> None:
    frame = make_token(KEY_A, 0x0102, Action.LOCK)
    data = bytes(frame)
    assert data[0] == TOKEN_VERSION
    assert data[1] == Action.LOCK
    assert data[2:6] == KEY_A.key_id[:4]
    assert data[6:8] == b"\x01\x02"
    assert data[8:] == frame.tag
    assert len(frame.tag) == 16


@pytest.mark.parametrize("size", [0, 1, 23, 25, 31])
def test_token_frame_of_wrong_size_is_malformed(size: int) -> None:
    data = (bytes(make_token(KEY_A, 1)) * 2)[:size]
    assert _reason(TokenFrame.from_bytes, data) is Reason.MALFORMED


@pytest.mark.parametrize("version", [0, 2, 0xFF])
def test_token_frame_of_another_version_is_rejected(version: int) -> None:
    data = bytes([version]) + bytes(make_token(KEY_A, 1))[1:]
    assert _reason(TokenFrame.from_bytes, data) is Reason.WRONG_VERSION


@pytest.mark.parametrize("action", [0, 3, 0xFF])
def test_token_frame_with_unknown_action_is_malformed(action: int) -> None:
    data = bytearray(bytes(make_token(KEY_A, 1)))
    data[1] = action
    assert _reason(TokenFrame.from_bytes, bytes(data)) is Reason.MALFORMED


@pytest.mark.parametrize("counter", [0, -1, MAX_COUNTER + 1])
def test_token_counter_out_of_range_is_refused(counter: int) -> None:
    with pytest.raises(ValueError, match="counter"):
        make_token(KEY_A, counter)


# --- the tag ----------------------------------------------------------------------------------


def test_token_verifies_for_its_lock() -> None:
    assert token_is_valid(make_token(KEY_A, 7), KEY_A, "lock_a")


def test_token_made_for_lock_a_does_not_verify_at_lock_b() -> None:
    # lock B holding the very same key (id and secret) still refuses lock A's token
    frame = make_token(KEY_A, 7)
    key_at_b = SessionKey(dataclasses.replace(KEY_A.header, lock_id="lock_b"), KEY_A.secret)
    assert not token_is_valid(frame, KEY_A, "lock_b")
    assert not token_is_valid(frame, key_at_b, "lock_b")
    assert token_is_valid(make_token(key_at_b, 7), key_at_b, "lock_b")


def test_token_is_bound_to_counter_and_action() -> None:
    frame = make_token(KEY_A, 7, Action.UNLOCK)
    assert not token_is_valid(dataclasses.replace(frame, counter=8), KEY_A, "lock_a")
    assert not token_is_valid(dataclasses.replace(frame, action=Action.LOCK), KEY_A, "lock_a")


def test_token_is_bound_to_the_secret() -> None:
    other = SessionKey(KEY_A.header, b"\xa5" * 32)
    assert not token_is_valid(make_token(other, 7), KEY_A, "lock_a")


def test_token_is_bound_to_the_full_key_id_not_just_the_handle() -> None:
    twin = SessionKey(
        dataclasses.replace(KEY_A.header, key_id=KEY_A.key_id[:4] + b"\xff" * 12), KEY_A.secret
    )
    frame = make_token(twin, 7)
    assert frame.key_handle == make_token(KEY_A, 7).key_handle
    assert not token_is_valid(frame, KEY_A, "lock_a")


def test_distinct_tokens_have_distinct_tags() -> None:
    tags = {make_token(KEY_A, c, a).tag for c in range(1, 50) for a in Action}
    assert len(tags) == 98


# --- advertising data ---------------------------------------------------------------------------


def test_advertising_data_fits_legacy_advertising_and_carries_the_frame() -> None:
    frame = make_token(KEY_A, 9)
    data = advertising_data(frame)
    assert len(data) <= LEGACY_ADVERTISING_MAX
    assert data[:3] == bytes([2, AD_FLAGS, 0x06])
    assert token_payload(data) == bytes(frame)


def test_token_payload_skips_other_structures_and_stops_at_padding() -> None:
    frame = bytes(make_token(KEY_A, 9))[:10]  # short payload so everything fits in 31 bytes
    data = (
        bytes([2, AD_FLAGS, 0x06])
        + bytes([3, 0x03, 0x0D, 0x18])  # a service UUID list
        + _manufacturer(0x004C, b"\x01\x02")  # someone else's manufacturer data
        + _manufacturer(COMPANY_ID, frame)
    )
    assert token_payload(data + b"\x00" * (LEGACY_ADVERTISING_MAX - len(data))) == frame
    # bytes after a zero length are padding and are not parsed
    assert token_payload(bytes([0]) + _manufacturer(COMPANY_ID, b"xx")) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes([2, AD_FLAGS, 0x06]),
        bytes([2, AD_FLAGS, 0x06]) + _manufacturer(0x004C, b"token"),
        bytes([2, AD_FLAGS, 0x06]) + _manufacturer(0xFFFE, b"token"),
        bytes([2, AD_MANUFACTURER_SPECIFIC, 0xFF]),  # company id cut short
        bytes([1, AD_MANUFACTURER_SPECIFIC]),
        bytes([3, 0x16, 0xFF, 0xFF]),  # service data, not manufacturer data
    ],
    ids=["empty", "flags-only", "apple", "company-fffe", "short-company", "empty-value", "svc"],
)
def test_advertisement_without_company_ffff_has_no_token(data: bytes) -> None:
    assert token_payload(data) is None


def test_advertising_data_over_31_bytes_is_oversized() -> None:
    data = advertising_data(make_token(KEY_A, 1)) + b"\x00"
    assert len(data) == 32
    assert _reason(token_payload, data) is Reason.OVERSIZED


@pytest.mark.parametrize(
    "data",
    [
        bytes([2, AD_FLAGS, 0x06, 5, AD_MANUFACTURER_SPECIFIC, 0xFF, 0xFF]),
        advertising_data(make_token(KEY_A, 1))[:-1],
    ],
    ids=["manufacturer-cut", "token-cut"],
)
def test_cut_off_smartlock_structure_is_malformed(data: bytes) -> None:
    assert _reason(token_payload, data) is Reason.MALFORMED


@pytest.mark.parametrize(
    "data",
    [
        bytes([2, AD_FLAGS]),
        bytes([30]),
        bytes([2, AD_FLAGS, 0x06, 9, AD_MANUFACTURER_SPECIFIC, 0x4C, 0x00, 1]),
        bytes([40, AD_MANUFACTURER_SPECIFIC, 0x4C, 0x00]) + bytes(36),  # long, not ours
    ],
    ids=["flags-cut", "length-only", "other-company-cut", "other-company-long"],
)
def test_broken_or_long_advertisements_of_other_devices_are_ignored(data: bytes) -> None:
    assert token_payload(data) is None


def test_two_tokens_in_one_advertisement_are_malformed() -> None:
    data = _manufacturer(COMPANY_ID, b"one") + _manufacturer(COMPANY_ID, b"two")
    assert _reason(token_payload, data) is Reason.MALFORMED
