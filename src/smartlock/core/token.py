"""The BLE unlock token (README, "Protocol", step 5).

A guest advertises, in legacy advertising data (at most 31 bytes), a Flags structure and a
manufacturer-specific data structure with company ID 0xFFFF whose 24-byte payload is::

    version (u8) | action (u8) | key handle (4 bytes) | counter (u16) | tag (16 bytes)

``tag = HMAC-SHA-256(session key, "smartlock/v1/ble-token" 0x00 lock_id | key_id | counter |
action)[:16]``.  The full 16-byte key id and the lock id are inside the MAC though only the
first four bytes of the key id travel, so a token is bound to one key, one lock, one counter
value and one action.

The counter is a time slot: ``1 + (seconds since the key was issued) // TOKEN_SLOT_S``, so a
token is also bound to a few seconds of time.  The lock accepts each (key, counter) once, only
increasing, and only within its token window of its own slot
(:mod:`smartlock.core.lock_verifier`): a token sniffed but never heard by the lock is dead
within that window instead of living as long as its key.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartlock import crypto
from smartlock.core.errors import Reason, Rejected
from smartlock.core.issuance import SessionKey
from smartlock.core.messages import Action
from smartlock.core.wire import Reader, Writer

COMPANY_ID = 0xFFFF
TOKEN_VERSION = 1
TOKEN_LABEL = b"smartlock/v1/ble-token"
KEY_HANDLE_BYTES = 4
FRAME_BYTES = 1 + 1 + KEY_HANDLE_BYTES + 2 + crypto.MAC_BYTES
MAX_COUNTER = 0xFFFF
LEGACY_ADVERTISING_MAX = 31
TOKEN_SLOT_S = 2.0  # 65535 slots of 2 s outlast the longest key (24 h)

AD_FLAGS = 0x01
AD_MANUFACTURER_SPECIFIC = 0xFF
FLAGS_LE_GENERAL_DISCOVERABLE_NO_BREDR = 0x06


@dataclass(frozen=True)
class TokenFrame:
    version: int
    action: Action
    key_handle: bytes
    counter: int
    tag: bytes

    def __bytes__(self) -> bytes:
        return (
            Writer()
            .u8(self.version)
            .u8(self.action)
            .raw(self.key_handle)
            .u16(self.counter)
            .raw(self.tag)
            .getvalue()
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> TokenFrame:
        if len(payload) != FRAME_BYTES:
            raise Rejected(Reason.MALFORMED, f"token frame of {len(payload)} bytes")
        reader = Reader(payload)
        version = reader.u8()
        if version != TOKEN_VERSION:
            raise Rejected(Reason.WRONG_VERSION, f"token version {version}")
        try:
            action = Action(reader.u8())
        except ValueError:
            raise Rejected(Reason.MALFORMED, "unknown action") from None
        key_handle = reader.raw(KEY_HANDLE_BYTES)
        counter = reader.u16()
        tag = reader.raw(crypto.MAC_BYTES)
        reader.end()
        return cls(version, action, key_handle, counter, tag)


def token_slot(issued_at: float, now: float) -> int:
    """The counter a token made at ``now`` carries, for a key issued at ``issued_at``."""
    return 1 + max(0, int((now - issued_at) // TOKEN_SLOT_S))


def token_mac_input(lock_id: str, key_id: bytes, counter: int, action: Action) -> bytes:
    return Writer().text(lock_id).raw(key_id).u16(counter).u8(action).getvalue()


def make_token(key: SessionKey, counter: int, action: Action = Action.UNLOCK) -> TokenFrame:
    """The guest's token number ``counter`` (1..65535) under ``key``."""
    if not 0 < counter <= MAX_COUNTER:
        raise ValueError("token counter must be 1..65535")
    tag = crypto.mac(
        key.secret, TOKEN_LABEL, token_mac_input(key.header.lock_id, key.key_id, counter, action)
    )
    return TokenFrame(TOKEN_VERSION, action, key.key_id[:KEY_HANDLE_BYTES], counter, tag)


def token_is_valid(frame: TokenFrame, key: SessionKey, lock_id: str) -> bool:
    """Constant-time check of ``frame``'s tag for ``lock_id`` under ``key``."""
    return crypto.mac_is_valid(
        key.secret,
        TOKEN_LABEL,
        token_mac_input(lock_id, key.key_id, frame.counter, frame.action),
        frame.tag,
    )


def advertising_data(frame: TokenFrame) -> bytes:
    """Legacy advertising data: Flags, then manufacturer data 0xFFFF carrying ``frame``."""
    manufacturer = COMPANY_ID.to_bytes(2, "little") + bytes(frame)
    data = (
        bytes([2, AD_FLAGS, FLAGS_LE_GENERAL_DISCOVERABLE_NO_BREDR])
        + bytes([len(manufacturer) + 1, AD_MANUFACTURER_SPECIFIC])
        + manufacturer
    )
    assert len(data) <= LEGACY_ADVERTISING_MAX
    return data


def token_payload(data: bytes) -> bytes | None:
    """The manufacturer payload for company 0xFFFF in advertising ``data``, or None if absent.

    Only a smartlock structure is judged; other devices' advertising data is none of the lock's
    business, so a structure that overruns the data simply ends the parse.  A smartlock
    structure in more than 31 bytes (legacy advertising cannot carry it) raises
    ``Rejected(oversized)``; a cut-off one, or two of them, raise ``Rejected(malformed)``.
    """
    offset = 0
    found: bytes | None = None
    while offset < len(data):
        length = data[offset]
        if length == 0:  # the rest is padding
            break
        value = data[offset + 2 : offset + 1 + length]
        is_ours = (
            offset + 1 < len(data)
            and data[offset + 1] == AD_MANUFACTURER_SPECIFIC
            and len(value) >= 2
            and int.from_bytes(value[:2], "little") == COMPANY_ID
        )
        if offset + 1 + length > len(data):
            if is_ours:
                raise Rejected(Reason.MALFORMED, "smartlock token cut off")
            break
        if is_ours:
            if found is not None:
                raise Rejected(Reason.MALFORMED, "two smartlock tokens in one advertisement")
            found = value[2:]
        offset += 1 + length
    if found is not None and len(data) > LEGACY_ADVERTISING_MAX:
        raise Rejected(Reason.OVERSIZED, f"{len(data)} bytes of advertising data")
    return found
