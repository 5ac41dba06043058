"""Remote lock / unlock (README, "Protocol": remote commands).

1. An owner or resident publishes a :class:`CommandRequest` on ``backend/commands/{user}`` with
   an MQTT v5 response topic (``users/{user}/replies``) and correlation data (the request id).
   The broker's ACL proves who asks; the backend decides from the store.
2. The backend sends the lock a :class:`LockCommand`: ``version | type | epoch | nonce |
   AES-256-GCM(issued_at, action)``, 37 bytes, under the lock's **command key**.  The lock
   refuses a command that does not open under its key (``bad_mac``), one from another epoch,
   one whose time is outside its clock window (``stale`` / ``not_yet_valid``) and a nonce it has
   already seen (``replay``; nonces are remembered for twice the window, across restarts).
3. The command key is ``HKDF(command master key, lock id, epoch)``.  The backend hands it to the
   lock once per epoch in a :class:`CommandKeyDelivery` -- RSA-OAEP to the lock, RSA-PSS signed by
   the backend -- retained on ``locks/{lock}/command_key`` so a lock gets it whenever it connects.
   A lock reset bumps the epoch.  A delivery of an older epoch is refused (no rollback).
4. The lock acts and reports the outcome in a MAC'd report (:mod:`smartlock.core.reports`); the
   backend answers the requester with a signed :class:`CommandReply`.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from smartlock import crypto
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import (
    ID_BYTES,
    PROTOCOL_VERSION,
    Action,
    MessageType,
    open_frame,
)
from smartlock.core.wire import Reader, Writer, check_identifier

LABEL_COMMAND_KEY = b"smartlock/v1/command-key"
LABEL_COMMAND_KEY_DELIVERY = b"smartlock/v1/command-key-delivery"
LABEL_LOCK_COMMAND = b"smartlock/v1/lock-command"
LABEL_COMMAND_REPLY = b"smartlock/v1/command-reply"
RECENT_NONCES_MAX = 4096


def _header(message_type: MessageType) -> Writer:
    return Writer().u8(PROTOCOL_VERSION).u8(message_type)


def _action(value: int) -> Action:
    try:
        return Action(value)
    except ValueError:
        raise Rejected(Reason.MALFORMED, "unknown action") from None


def command_key(master: bytes, lock_id: str, epoch: int) -> bytes:
    """The lock's command key for ``epoch``: the backend derives it, the lock receives it."""
    return crypto.derive_key(
        master, LABEL_COMMAND_KEY, Writer().text(lock_id).u16(epoch).getvalue()
    )


# --- requester -> backend -------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandRequest:
    """User -> backend on ``backend/commands/{user}``: lock or unlock ``lock_id`` now."""

    request_id: bytes
    sent_at: int
    lock_id: str
    action: Action

    def __post_init__(self) -> None:
        if len(self.request_id) != ID_BYTES:
            raise ValueError(f"ids are {ID_BYTES} bytes")
        check_identifier(self.lock_id, "lock id")

    def __bytes__(self) -> bytes:
        return (
            _header(MessageType.COMMAND_REQUEST)
            .raw(self.request_id)
            .u32(self.sent_at)
            .text(self.lock_id)
            .u8(self.action)
            .getvalue()
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> CommandRequest:
        reader = open_frame(payload, MessageType.COMMAND_REQUEST)
        request_id = reader.raw(ID_BYTES)
        sent_at = reader.u32()
        lock_id = reader.identifier()
        action = _action(reader.u8())
        reader.end()
        return cls(request_id, sent_at, lock_id, action)


# --- backend -> lock: the command key -------------------------------------------------------------


@dataclass(frozen=True)
class CommandKeyDelivery:
    lock_id: str
    epoch: int
    issued_at: int
    ciphertext: bytes  # RSA-OAEP of the 32-byte command key, to the lock
    signature: bytes

    def signed_bytes(self) -> bytes:
        return (
            Writer()
            .raw(LABEL_COMMAND_KEY_DELIVERY)
            .u8(0)
            .u8(PROTOCOL_VERSION)
            .text(self.lock_id)
            .u16(self.epoch)
            .u32(self.issued_at)
            .long_bytes(self.ciphertext)
            .getvalue()
        )

    def __bytes__(self) -> bytes:
        return (
            _header(MessageType.COMMAND_KEY)
            .text(self.lock_id)
            .u16(self.epoch)
            .u32(self.issued_at)
            .long_bytes(self.ciphertext)
            .long_bytes(self.signature)
            .getvalue()
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> CommandKeyDelivery:
        reader = open_frame(payload, MessageType.COMMAND_KEY)
        lock_id = reader.identifier()
        epoch = reader.u16()
        issued_at = reader.u32()
        ciphertext = reader.long_bytes()
        signature = reader.long_bytes()
        reader.end()
        return cls(lock_id, epoch, issued_at, ciphertext, signature)


def make_command_key_delivery(
    *,
    master: bytes,
    lock_id: str,
    epoch: int,
    now: float,
    lock_public: crypto.PublicKey,
    backend_key: crypto.PrivateKey,
) -> CommandKeyDelivery:
    key = command_key(master, lock_id, epoch)
    unsigned = CommandKeyDelivery(
        lock_id, epoch, int(now), crypto.encrypt_for(lock_public, key), b""
    )
    return dataclasses.replace(
        unsigned, signature=crypto.sign(backend_key, unsigned.signed_bytes())
    )


def open_command_key_delivery(
    payload: bytes,
    *,
    lock_id: str,
    lock_key: crypto.PrivateKey,
    backend_public: crypto.TrustedKeys,
    previous_lock_keys: Sequence[crypto.PrivateKey] = (),
) -> tuple[int, bytes]:
    """Verify and decrypt a delivery for ``lock_id``: ``(epoch, command key)``.  During a
    rotation of the lock's key, a delivery made for the previous key still opens."""
    delivery_unverified = CommandKeyDelivery.from_bytes(payload)
    if not crypto.signature_is_valid(
        backend_public, delivery_unverified.signature, delivery_unverified.signed_bytes()
    ):
        raise Rejected(Reason.BAD_SIGNATURE, "command key not signed by the backend")
    delivery = delivery_unverified
    if delivery.lock_id != lock_id:
        raise Rejected(Reason.WRONG_LOCK, f"command key for {delivery.lock_id}")
    for candidate in (lock_key, *previous_lock_keys):
        try:
            key = crypto.decrypt_with(candidate, delivery.ciphertext)
            break
        except crypto.CryptoError:
            continue
    else:
        raise Rejected(Reason.UNDECRYPTABLE, "command key")
    if len(key) != crypto.SESSION_KEY_BYTES:
        raise Rejected(Reason.MALFORMED, "command key size")
    return delivery.epoch, key


# --- backend -> lock: the command itself ----------------------------------------------------------


def _command_associated(lock_id: str, epoch: int) -> bytes:
    return (
        Writer()
        .raw(LABEL_LOCK_COMMAND)
        .u8(0)
        .u8(PROTOCOL_VERSION)
        .u8(MessageType.LOCK_COMMAND)
        .text(lock_id)
        .u16(epoch)
        .getvalue()
    )


def seal_lock_command(
    *,
    key: bytes,
    lock_id: str,
    epoch: int,
    action: Action,
    now: float,
    random_bytes: Callable[[int], bytes],
) -> tuple[bytes, bytes]:
    """``(payload, nonce)``: the sealed command and its nonce (the lock's report names it)."""
    nonce = random_bytes(crypto.NONCE_BYTES)
    plaintext = Writer().u32(int(now)).u8(action).getvalue()
    sealed = crypto.seal(key, nonce, plaintext, _command_associated(lock_id, epoch))
    payload = _header(MessageType.LOCK_COMMAND).u16(epoch).raw(nonce).raw(sealed).getvalue()
    return payload, nonce


@dataclass(frozen=True)
class LockCommand:
    nonce: bytes
    issued_at: int
    action: Action


class CommandReceiver:
    """The lock's side: holds the command key, opens commands, refuses replays and stale ones."""

    def __init__(self, *, lock_id: str, window_s: float) -> None:
        if window_s <= 0:
            raise ValueError("the command window must be positive")
        self.lock_id = lock_id
        self.window_s = window_s
        self.epoch = 0  # 0: no command key yet
        self.key: bytes | None = None
        self._nonces: OrderedDict[bytes, float] = OrderedDict()

    def install(self, epoch: int, key: bytes) -> bool:
        """Take the key of ``epoch``; False (nothing changes) when it is the one held already."""
        if epoch < self.epoch:
            raise Rejected(Reason.REPLAY, f"command key epoch {epoch} older than {self.epoch}")
        if epoch == self.epoch:
            return False
        self.epoch, self.key = epoch, key
        self._nonces.clear()
        return True

    def open(self, payload: bytes, now: float) -> LockCommand:
        reader = open_frame(payload, MessageType.LOCK_COMMAND)
        epoch = reader.u16()
        nonce = reader.raw(crypto.NONCE_BYTES)
        sealed = reader.rest()
        if self.key is None:
            raise Rejected(Reason.UNKNOWN_KEY, "no command key yet")
        if epoch != self.epoch:
            raise Rejected(
                Reason.UNKNOWN_KEY, f"command under epoch {epoch}, lock holds {self.epoch}"
            )
        try:
            plaintext = crypto.open_sealed(
                self.key, nonce, sealed, _command_associated(self.lock_id, epoch)
            )
        except crypto.CryptoError:
            raise Rejected(Reason.BAD_MAC, "command does not open under the command key") from None
        inner = Reader(plaintext)
        issued_at = inner.u32()
        action = _action(inner.u8())
        inner.end()
        if issued_at < now - self.window_s:
            raise Rejected(Reason.STALE, f"command {int(now - issued_at)} s old")
        if issued_at > now + self.window_s:
            raise Rejected(Reason.NOT_YET_VALID, "command from the future")
        self._forget(now)
        if nonce in self._nonces:
            raise Rejected(Reason.REPLAY, "command already executed")
        self._nonces[nonce] = now
        while len(self._nonces) > RECENT_NONCES_MAX:
            self._nonces.popitem(last=False)
        return LockCommand(nonce, issued_at, action)

    def _forget(self, now: float) -> None:
        while self._nonces:
            oldest, at = next(iter(self._nonces.items()))
            if now - at <= 2 * self.window_s:
                break
            del self._nonces[oldest]

    def snapshot(self) -> dict[str, object]:
        return {
            "epoch": self.epoch,
            "key": self.key.hex() if self.key else None,
            "nonces": [[n.hex(), at] for n, at in self._nonces.items()],
        }

    def restore(self, data: object) -> None:
        if not isinstance(data, dict):
            raise ValueError("command state is not an object")  # noqa: TRY004 -- one error type for a damaged state file
        try:
            epoch = int(data["epoch"])
            key = bytes.fromhex(data["key"]) if data["key"] else None
            nonces = OrderedDict((bytes.fromhex(n), float(at)) for n, at in data["nonces"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"command state is damaged ({type(exc).__name__})") from None
        if not 0 <= epoch <= 0xFFFF:  # an epoch the wire cannot carry would refuse every key
            raise ValueError("command key epoch out of range")
        if key is not None and len(key) != crypto.SESSION_KEY_BYTES:
            raise ValueError("command key has the wrong size")
        self.epoch, self.key, self._nonces = epoch, key, nonces


# --- backend -> requester -------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandReply:
    """Backend -> user on the request's response topic: what became of the command."""

    request_id: bytes
    at: int
    lock_id: str
    action: Action
    result: str  # "done" | "denied" | "failed"
    reason: str  # a Reason value, or "" when done
    bolt: str  # the bolt state the lock reported, or "unknown"
    signature: bytes

    def signed_bytes(self) -> bytes:
        return self._fields(Writer().raw(LABEL_COMMAND_REPLY).u8(0).u8(PROTOCOL_VERSION))

    def _fields(self, writer: Writer) -> bytes:
        return (
            writer.raw(self.request_id)
            .u32(self.at)
            .text(self.lock_id)
            .u8(self.action)
            .text(self.result)
            .text(self.reason)
            .text(self.bolt)
            .getvalue()
        )

    def __bytes__(self) -> bytes:
        body = self._fields(_header(MessageType.COMMAND_REPLY))
        return Writer().raw(body).long_bytes(self.signature).getvalue()

    @classmethod
    def from_bytes(cls, payload: bytes) -> CommandReply:
        reader = open_frame(payload, MessageType.COMMAND_REPLY)
        request_id = reader.raw(ID_BYTES)
        at = reader.u32()
        lock_id = reader.identifier()
        action = _action(reader.u8())
        result = reader.text_value()
        reason = reader.text_value()
        bolt = reader.text_value()
        signature = reader.long_bytes()
        reader.end()
        return cls(request_id, at, lock_id, action, result, reason, bolt, signature)


def make_command_reply(
    *,
    request: CommandRequest,
    result: str,
    reason: str,
    bolt: str,
    now: float,
    backend_key: crypto.PrivateKey,
) -> CommandReply:
    unsigned = CommandReply(
        request.request_id, int(now), request.lock_id, request.action, result, reason, bolt, b""
    )
    return dataclasses.replace(
        unsigned, signature=crypto.sign(backend_key, unsigned.signed_bytes())
    )


def open_command_reply(payload: bytes, *, backend_public: crypto.TrustedKeys) -> CommandReply:
    reply_unverified = CommandReply.from_bytes(payload)
    if not crypto.signature_is_valid(
        backend_public, reply_unverified.signature, reply_unverified.signed_bytes()
    ):
        raise Rejected(Reason.BAD_SIGNATURE, "command reply not signed by the backend")
    return reply_unverified
