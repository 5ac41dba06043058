"""Wire formats of the MQTT messages (README, "Protocol").

Every message starts with ``version (u8) | type (u8)``; integers are big-endian; ids are
length-prefixed UTF-8 (:mod:`smartlock.core.wire`); times are whole Unix seconds (u32).
Decoding here only checks the *shape* of the bytes: the values are not yet trusted.  Objects a
verifier has not yet checked are named ``*_unverified`` by their callers, as Fernet does, and
:mod:`smartlock.core.issuance` verifies signatures before any field is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from smartlock.core.errors import Reason, Rejected
from smartlock.core.wire import Reader, Writer, check_identifier

PROTOCOL_VERSION = 2  # 2: keys carry their pass and use limit; access control messages
MAX_MESSAGE_BYTES = 2048
ID_BYTES = 16
NO_PASS = 0  # pass id of keys issued to owners and residents (they need no pass)
UNLIMITED_USES = 0  # max_uses of a key whose pass has no use limit

# Domain-separation labels: a signature or MAC made for one of these is never valid for another.
LABEL_ISSUANCE = b"smartlock/v1/issuance"
LABEL_ACCESS_EVENT = b"smartlock/v1/access-event"
LABEL_DENIAL = b"smartlock/v1/session-denied"


class MessageType(IntEnum):
    SESSION_REQUEST = 1
    LOCK_DELIVERY = 2
    GUEST_DELIVERY = 3
    KEY_ACK = 4
    ACCESS_EVENT = 5
    SESSION_DENIED = 6
    COMMAND_REQUEST = 7
    COMMAND_KEY = 8
    LOCK_COMMAND = 9
    COMMAND_REPLY = 10
    REVOCATION_LIST = 11
    LOCK_REPORT = 12
    ALERT = 13
    UPDATE_OFFER = 14
    UPDATE_CHUNK = 15
    BACKEND_KEY = 16
    CA_BUNDLE = 17


class Action(IntEnum):
    UNLOCK = 1
    LOCK = 2


def peek_type(
    payload: bytes, allowed: tuple[MessageType, ...], *, max_bytes: int = MAX_MESSAGE_BYTES
) -> MessageType:
    """Check size and version of ``payload`` and that its type is one of ``allowed``."""
    if len(payload) > max_bytes:
        raise Rejected(Reason.OVERSIZED, f"{len(payload)} bytes")
    if len(payload) < 2:
        raise Rejected(Reason.MALFORMED, "shorter than a header")
    if payload[0] != PROTOCOL_VERSION:
        raise Rejected(Reason.WRONG_VERSION, f"version {payload[0]}")
    for message_type in allowed:
        if payload[1] == message_type:
            return message_type
    names = " or ".join(t.name for t in allowed)
    raise Rejected(Reason.WRONG_TYPE, f"type {payload[1]}, expected {names}")


def open_frame(
    payload: bytes, expected: MessageType, *, max_bytes: int = MAX_MESSAGE_BYTES
) -> Reader:
    """Check size, version and type of ``payload``; return a reader positioned after them."""
    peek_type(payload, (expected,), max_bytes=max_bytes)
    reader = Reader(payload)
    reader.raw(2)
    return reader


def _header(message_type: MessageType) -> Writer:
    return Writer().u8(PROTOCOL_VERSION).u8(message_type)


def _check_id(value: bytes) -> bytes:
    if len(value) != ID_BYTES:
        raise ValueError(f"ids are {ID_BYTES} bytes")
    return value


@dataclass(frozen=True)
class SessionRequest:
    """Guest -> backend on ``backend/session_requests/{guest_id}``: "a key for this lock, please".

    The guest's identity is not in the message: the broker proves it (the ACL lets only that
    user write the topic that carries its name).
    """

    request_id: bytes
    sent_at: int
    lock_id: str

    def __post_init__(self) -> None:
        _check_id(self.request_id)
        check_identifier(self.lock_id, "lock id")

    def __bytes__(self) -> bytes:
        return (
            _header(MessageType.SESSION_REQUEST)
            .raw(self.request_id)
            .u32(self.sent_at)
            .text(self.lock_id)
            .getvalue()
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> SessionRequest:
        reader = open_frame(payload, MessageType.SESSION_REQUEST)
        request_id = reader.raw(ID_BYTES)
        sent_at = reader.u32()
        lock_id = reader.identifier()
        reader.end()
        return cls(request_id, sent_at, lock_id)


@dataclass(frozen=True)
class IssuanceHeader:
    """Fields shared by the two deliveries of one session key, covered by one signature."""

    key_id: bytes
    issued_at: int
    expires_at: int
    lock_id: str
    guest_id: str
    pass_id: int = NO_PASS  # the guest pass the key was issued under; NO_PASS for owner/resident
    max_uses: int = UNLIMITED_USES  # unlocks the pass allows in all (the lock counts them)

    def __post_init__(self) -> None:
        _check_id(self.key_id)
        check_identifier(self.lock_id, "lock id")
        check_identifier(self.guest_id, "guest id")
        if not 0 <= self.pass_id < 2**32 or not 0 <= self.max_uses < 2**16:
            raise ValueError("pass id or use count out of range")
        if not (0 <= self.issued_at < 2**32 and 0 <= self.expires_at < 2**32):
            raise ValueError("issue or expiry time out of range (u32 seconds)")

    def write(self, writer: Writer) -> Writer:
        return (
            writer.raw(self.key_id)
            .u32(self.issued_at)
            .u32(self.expires_at)
            .text(self.lock_id)
            .text(self.guest_id)
            .u32(self.pass_id)
            .u16(self.max_uses)
        )

    @classmethod
    def read(cls, reader: Reader) -> IssuanceHeader:
        key_id = reader.raw(ID_BYTES)
        issued_at = reader.u32()
        expires_at = reader.u32()
        lock_id = reader.identifier()
        guest_id = reader.identifier()
        pass_id = reader.u32()
        max_uses = reader.u16()
        return cls(key_id, issued_at, expires_at, lock_id, guest_id, pass_id, max_uses)


def issuance_signed_bytes(
    header: IssuanceHeader, lock_part_digest: bytes, guest_part_digest: bytes
) -> bytes:
    """What the backend signs, once per issuance: the header and a digest of each recipient's part.

    Each delivery carries its own part in full and only the digest of the other's, so the lock and
    the guest can both verify the one signature without seeing each other's ciphertext.
    """
    writer = Writer().raw(LABEL_ISSUANCE).u8(0).u8(PROTOCOL_VERSION)
    header.write(writer)
    return writer.raw(lock_part_digest).raw(guest_part_digest).getvalue()


def guest_part(request_id: bytes, guest_ciphertext: bytes) -> bytes:
    return Writer().raw(request_id).long_bytes(guest_ciphertext).getvalue()


def lock_part(lock_ciphertext: bytes) -> bytes:
    return Writer().long_bytes(lock_ciphertext).getvalue()


@dataclass(frozen=True)
class LockDelivery:
    """Backend -> lock on ``locks/{lock_id}/session``: the session key, RSA-OAEP to the lock."""

    header: IssuanceHeader
    lock_ciphertext: bytes
    guest_part_digest: bytes
    signature: bytes

    def __bytes__(self) -> bytes:
        writer = _header(MessageType.LOCK_DELIVERY)
        self.header.write(writer)
        return (
            writer.long_bytes(self.lock_ciphertext)
            .raw(self.guest_part_digest)
            .long_bytes(self.signature)
            .getvalue()
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> LockDelivery:
        reader = open_frame(payload, MessageType.LOCK_DELIVERY)
        header = IssuanceHeader.read(reader)
        ciphertext = reader.long_bytes()
        other_digest = reader.raw(32)
        signature = reader.long_bytes()
        reader.end()
        return cls(header, ciphertext, other_digest, signature)


@dataclass(frozen=True)
class GuestDelivery:
    """Backend -> guest on ``guests/{guest_id}/session``: the same key, RSA-OAEP to the guest."""

    header: IssuanceHeader
    request_id: bytes
    guest_ciphertext: bytes
    lock_part_digest: bytes
    signature: bytes

    def __bytes__(self) -> bytes:
        writer = _header(MessageType.GUEST_DELIVERY)
        self.header.write(writer)
        return (
            writer.raw(self.request_id)
            .long_bytes(self.guest_ciphertext)
            .raw(self.lock_part_digest)
            .long_bytes(self.signature)
            .getvalue()
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> GuestDelivery:
        reader = open_frame(payload, MessageType.GUEST_DELIVERY)
        header = IssuanceHeader.read(reader)
        request_id = reader.raw(ID_BYTES)
        ciphertext = reader.long_bytes()
        other_digest = reader.raw(32)
        signature = reader.long_bytes()
        reader.end()
        return cls(header, request_id, ciphertext, other_digest, signature)


@dataclass(frozen=True)
class KeyAck:
    """Lock -> backend on ``locks/{lock_id}/events``: "I hold key ``key_id``".

    Authenticated by a MAC under the session key itself, which only the backend and this lock
    know; the backend releases the guest's copy of the key only after this arrives, so a guest
    never advertises a token the lock cannot check yet.
    """

    key_id: bytes
    lock_id: str
    tag: bytes

    def __bytes__(self) -> bytes:
        return (
            _header(MessageType.KEY_ACK)
            .raw(self.key_id)
            .text(self.lock_id)
            .raw(self.tag)
            .getvalue()
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> KeyAck:
        reader = open_frame(payload, MessageType.KEY_ACK)
        key_id = reader.raw(ID_BYTES)
        lock_id = reader.identifier()
        tag = reader.raw(16)
        reader.end()
        return cls(key_id, lock_id, tag)

    @staticmethod
    def mac_input(key_id: bytes, lock_id: str) -> bytes:
        return Writer().raw(key_id).text(lock_id).getvalue()


class Outcome(IntEnum):
    GRANTED = 0


@dataclass(frozen=True)
class AccessEvent:
    """Lock -> backend on ``locks/{lock_id}/events``: the bolt was driven for a guest.

    Signed by the lock (RSA-PSS) for the backend's audit, and carrying ``ack_tag``, a MAC under
    the session key that the backend forwards to the guest as its proof that the lock acted.
    """

    event_id: bytes
    at: int
    lock_id: str
    guest_id: str
    key_id: bytes
    pass_id: int
    counter: int
    action: Action
    outcome: Outcome
    ack_tag: bytes
    signature: bytes

    def _write_fields(self, writer: Writer) -> Writer:
        return (
            writer.raw(self.event_id)
            .u32(self.at)
            .text(self.lock_id)
            .text(self.guest_id)
            .raw(self.key_id)
            .u32(self.pass_id)
            .u16(self.counter)
            .u8(self.action)
            .u8(self.outcome)
            .raw(self.ack_tag)
        )

    def signed_bytes(self) -> bytes:
        """Everything but the signature, under the access-event label and the version."""
        writer = Writer().raw(LABEL_ACCESS_EVENT).u8(0).u8(PROTOCOL_VERSION)
        return self._write_fields(writer).getvalue()

    def __bytes__(self) -> bytes:
        writer = self._write_fields(_header(MessageType.ACCESS_EVENT))
        return writer.long_bytes(self.signature).getvalue()

    @classmethod
    def from_bytes(cls, payload: bytes) -> AccessEvent:
        reader = open_frame(payload, MessageType.ACCESS_EVENT)
        event_id = reader.raw(ID_BYTES)
        at = reader.u32()
        lock_id = reader.identifier()
        guest_id = reader.identifier()
        key_id = reader.raw(ID_BYTES)
        pass_id = reader.u32()
        counter = reader.u16()
        try:
            action = Action(reader.u8())
            outcome = Outcome(reader.u8())
        except ValueError:
            raise Rejected(Reason.MALFORMED, "unknown action or outcome") from None
        ack_tag = reader.raw(16)
        signature = reader.long_bytes()
        reader.end()
        return cls(
            event_id,
            at,
            lock_id,
            guest_id,
            key_id,
            pass_id,
            counter,
            action,
            outcome,
            ack_tag,
            signature,
        )

    @staticmethod
    def ack_input(
        lock_id: str, key_id: bytes, counter: int, action: Action, outcome: Outcome
    ) -> bytes:
        return Writer().text(lock_id).raw(key_id).u16(counter).u8(action).u8(outcome).getvalue()


@dataclass(frozen=True)
class SessionDenied:
    """Backend -> guest on ``guests/{guest_id}/session``: the request was refused, and why."""

    request_id: bytes
    at: int
    guest_id: str
    reason: str
    signature: bytes

    def signed_bytes(self) -> bytes:
        return (
            Writer()
            .raw(LABEL_DENIAL)
            .u8(0)
            .u8(PROTOCOL_VERSION)
            .raw(self.request_id)
            .u32(self.at)
            .text(self.guest_id)
            .text(self.reason)
            .getvalue()
        )

    def __bytes__(self) -> bytes:
        return (
            _header(MessageType.SESSION_DENIED)
            .raw(self.request_id)
            .u32(self.at)
            .text(self.guest_id)
            .text(self.reason)
            .long_bytes(self.signature)
            .getvalue()
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> SessionDenied:
        reader = open_frame(payload, MessageType.SESSION_DENIED)
        request_id = reader.raw(ID_BYTES)
        at = reader.u32()
        guest_id = reader.identifier()
        try:
            reason = reader.short_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected(Reason.MALFORMED, "reason is not UTF-8") from None
        signature = reader.long_bytes()
        reader.end()
        return cls(request_id, at, guest_id, reason, signature)


def message_type_of(payload: bytes) -> MessageType | None:
    """Peek at the type byte (for dispatch only; the full decode re-checks everything)."""
    if len(payload) < 2 or payload[0] != PROTOCOL_VERSION:
        return None
    try:
        return MessageType(payload[1])
    except ValueError:
        return None
