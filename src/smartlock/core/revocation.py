"""The signed revocation list a lock applies before anything else (README, "Revocation").

The backend publishes, retained, on ``locks/{lock}/revocations``: ``version | issued_at | lock
| revoked pass ids | removed users | RSA-PSS signature``.  A lock applies a list only if it is
signed by the backend, names this lock and has a *higher* version than the one it holds (an
older list replayed by the broker cannot bring a pass back).  Applying it drops every installed
session key issued under a revoked pass, or to a removed owner or resident at or before their
removal (``(name, revoked_before)``: a person removed and added back under the same name gets
new keys, never the old ones' power back), and the lock refuses later deliveries for them.
Because the message is retained, a lock that was offline during a revocation receives it as
soon as it subscribes on reconnect -- it subscribes to this topic before any other, so it
applies the list before it takes another key or command.

The list stays short: a revoked pass is listed only while it could still have live keys (until
its ``valid_until``), a removed owner or resident for a day (the longest key lifetime); removed
guests need no entry (their passes are revoked).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from smartlock import crypto
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, MessageType, open_frame
from smartlock.core.wire import Writer, check_identifier

LABEL_REVOCATIONS = b"smartlock/v1/revocation-list"
# At most this many entries, and the signed list within MAX_MESSAGE_BYTES (which long user names
# can reach first: 200 pass ids take 800 bytes, 200 names of 32 characters 6600).
MAX_ENTRIES = 200


@dataclass(frozen=True)
class RevocationList:
    version: int
    issued_at: int
    lock_id: str
    pass_ids: tuple[int, ...]
    users: tuple[tuple[str, int], ...]  # (name, keys issued at or before this are revoked)
    signature: bytes = b""

    def __post_init__(self) -> None:
        check_identifier(self.lock_id, "lock id")
        for user, _ in self.users:
            check_identifier(user, "user name")
        if len(self.pass_ids) + len(self.users) > MAX_ENTRIES:
            raise ValueError(f"a revocation list holds at most {MAX_ENTRIES} entries")

    def _fields(self, writer: Writer) -> Writer:
        writer.u32(self.version).u32(self.issued_at).text(self.lock_id).u16(len(self.pass_ids))
        for pass_id in self.pass_ids:
            writer.u32(pass_id)
        writer.u16(len(self.users))
        for user, before in self.users:
            writer.text(user).u32(before)
        return writer

    def signed_bytes(self) -> bytes:
        writer = Writer().raw(LABEL_REVOCATIONS).u8(0).u8(PROTOCOL_VERSION)
        return self._fields(writer).getvalue()

    def __bytes__(self) -> bytes:
        writer = Writer().u8(PROTOCOL_VERSION).u8(MessageType.REVOCATION_LIST)
        return self._fields(writer).long_bytes(self.signature).getvalue()

    @classmethod
    def from_bytes(cls, payload: bytes) -> RevocationList:
        reader = open_frame(payload, MessageType.REVOCATION_LIST)
        version = reader.u32()
        issued_at = reader.u32()
        lock_id = reader.identifier()
        pass_ids = tuple(reader.u32() for _ in range(reader.u16()))
        users = tuple((reader.identifier(), reader.u32()) for _ in range(reader.u16()))
        signature = reader.long_bytes()
        reader.end()
        try:
            return cls(version, issued_at, lock_id, pass_ids, users, signature)
        except ValueError as exc:
            raise Rejected(Reason.MALFORMED, str(exc)) from None


def make_revocation_list(
    *,
    version: int,
    lock_id: str,
    pass_ids: list[int],
    users: list[tuple[str, int]],
    now: float,
    backend_key: crypto.PrivateKey,
) -> RevocationList:
    unsigned = RevocationList(version, int(now), lock_id, tuple(sorted(pass_ids)), tuple(users))
    signed = dataclasses.replace(
        unsigned, signature=crypto.sign(backend_key, unsigned.signed_bytes())
    )
    if len(bytes(signed)) > MAX_MESSAGE_BYTES:  # a lock would refuse it as oversized
        raise ValueError(f"revocation list of {len(bytes(signed))} bytes: not one message")
    return signed


def open_revocation_list(
    payload: bytes, *, lock_id: str, backend_public: crypto.TrustedKeys
) -> RevocationList:
    list_unverified = RevocationList.from_bytes(payload)
    if not crypto.signature_is_valid(
        backend_public, list_unverified.signature, list_unverified.signed_bytes()
    ):
        raise Rejected(Reason.BAD_SIGNATURE, "revocation list not signed by the backend")
    if list_unverified.lock_id != lock_id:
        raise Rejected(Reason.WRONG_LOCK, f"revocation list for {list_unverified.lock_id}")
    return list_unverified
