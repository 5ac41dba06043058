"""Issuing a session key and opening its two deliveries (README, "Protocol", steps 2-4).

One issuance costs the backend one RSA-PSS signature: the signed bytes hold the shared header
and the digests of the lock's part and the guest's part (:func:`issuance_signed_bytes`).  The
lock and the guest each verify that signature against the pinned backend key *before* they
read any field of their delivery, then check binding (their own id), time and decrypt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from smartlock import crypto
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import (
    ID_BYTES,
    NO_PASS,
    UNLIMITED_USES,
    GuestDelivery,
    IssuanceHeader,
    KeyAck,
    LockDelivery,
    SessionDenied,
    SessionRequest,
    guest_part,
    issuance_signed_bytes,
    lock_part,
)

RandomBytes = Callable[[int], bytes]
DEFAULT_KEY_TTL_S = 300
DEFAULT_CLOCK_SKEW_S = 30
MAX_KEY_TTL_S = 24 * 3600
KEY_ACK_LABEL = b"smartlock/v1/key-ack"


@dataclass(frozen=True)
class SessionKey:
    """A verified session key as the lock or the guest holds it."""

    header: IssuanceHeader
    secret: bytes = field(repr=False)

    @property
    def key_id(self) -> bytes:
        return self.header.key_id

    @property
    def handle(self) -> str:
        """The public short name of the key for logs: the first 4 bytes of its id, in hex."""
        return self.header.key_id[:4].hex()


@dataclass(frozen=True)
class Issuance:
    key: SessionKey
    lock_delivery: LockDelivery
    guest_delivery: GuestDelivery


def issue_session_key(
    *,
    request: SessionRequest,
    guest_id: str,
    now: float,
    ttl_s: int,
    backend_key: crypto.PrivateKey,
    lock_public: crypto.PublicKey,
    guest_public: crypto.PublicKey,
    random_bytes: RandomBytes,
    pass_id: int = NO_PASS,
    max_uses: int = UNLIMITED_USES,
    not_after: int | None = None,
) -> Issuance:
    """Make a fresh 32-byte key bound to ``request.lock_id`` and ``guest_id``, valid ``ttl_s``.

    ``not_after`` caps the lifetime (the end of the pass or of its weekly window), so a lock
    that is offline still refuses the key when the pass no longer allows access.
    """
    if not 0 < ttl_s <= MAX_KEY_TTL_S:
        raise ValueError(f"session key lifetime must be 1..{MAX_KEY_TTL_S} seconds")
    secret = random_bytes(crypto.SESSION_KEY_BYTES)
    issued_at = int(now)
    expires_at = issued_at + ttl_s
    if not_after is not None:
        expires_at = min(expires_at, not_after)
    if expires_at <= issued_at:
        raise ValueError("the key would expire before it is issued")
    header = IssuanceHeader(
        key_id=random_bytes(ID_BYTES),
        issued_at=issued_at,
        expires_at=expires_at,
        lock_id=request.lock_id,
        guest_id=guest_id,
        pass_id=pass_id,
        max_uses=max_uses,
    )
    lock_ciphertext = crypto.encrypt_for(lock_public, secret)
    guest_ciphertext = crypto.encrypt_for(guest_public, secret)
    lock_digest = crypto.digest(lock_part(lock_ciphertext))
    guest_digest = crypto.digest(guest_part(request.request_id, guest_ciphertext))
    signature = crypto.sign(backend_key, issuance_signed_bytes(header, lock_digest, guest_digest))
    return Issuance(
        key=SessionKey(header, secret),
        lock_delivery=LockDelivery(header, lock_ciphertext, guest_digest, signature),
        guest_delivery=GuestDelivery(
            header, request.request_id, guest_ciphertext, lock_digest, signature
        ),
    )


def _check_validity(header: IssuanceHeader, now: float, clock_skew_s: int) -> None:
    if (
        header.expires_at <= header.issued_at
        or header.expires_at - header.issued_at > MAX_KEY_TTL_S
    ):
        raise Rejected(Reason.MALFORMED, "impossible validity period")
    if now >= header.expires_at:
        raise Rejected(Reason.EXPIRED, f"key {header.key_id[:4].hex()} expired")
    if header.issued_at > now + clock_skew_s:
        raise Rejected(Reason.NOT_YET_VALID, f"key {header.key_id[:4].hex()} issued in the future")


def _decrypt_key(private_key: crypto.PrivateKey, ciphertext: bytes) -> bytes:
    try:
        secret = crypto.decrypt_with(private_key, ciphertext)
    except crypto.CryptoError:
        raise Rejected(Reason.UNDECRYPTABLE, "session key does not decrypt") from None
    if len(secret) != crypto.SESSION_KEY_BYTES:
        raise Rejected(Reason.MALFORMED, "session key is not 32 bytes")
    return secret


def open_lock_delivery(
    payload: bytes,
    *,
    lock_id: str,
    backend_public: crypto.TrustedKeys,
    lock_key: crypto.PrivateKey,
    now: float,
    clock_skew_s: int = DEFAULT_CLOCK_SKEW_S,
) -> SessionKey:
    """Verify and decrypt a key delivery addressed to ``lock_id`` (replay is the caller's job)."""
    delivery_unverified = LockDelivery.from_bytes(payload)
    signed = issuance_signed_bytes(
        delivery_unverified.header,
        crypto.digest(lock_part(delivery_unverified.lock_ciphertext)),
        delivery_unverified.guest_part_digest,
    )
    if not crypto.signature_is_valid(backend_public, delivery_unverified.signature, signed):
        raise Rejected(Reason.BAD_SIGNATURE, "key delivery not signed by the backend")
    delivery = delivery_unverified
    if delivery.header.lock_id != lock_id:
        raise Rejected(Reason.WRONG_LOCK, f"key delivery for {delivery.header.lock_id}")
    _check_validity(delivery.header, now, clock_skew_s)
    return SessionKey(delivery.header, _decrypt_key(lock_key, delivery.lock_ciphertext))


def open_guest_delivery(
    payload: bytes,
    *,
    guest_id: str,
    lock_id: str,
    request_id: bytes,
    backend_public: crypto.TrustedKeys,
    guest_key: crypto.PrivateKey,
    now: float,
    clock_skew_s: int = DEFAULT_CLOCK_SKEW_S,
) -> SessionKey:
    """Verify and decrypt the guest's copy of a session key it asked for with ``request_id``."""
    delivery_unverified = GuestDelivery.from_bytes(payload)
    signed = issuance_signed_bytes(
        delivery_unverified.header,
        delivery_unverified.lock_part_digest,
        crypto.digest(
            guest_part(delivery_unverified.request_id, delivery_unverified.guest_ciphertext)
        ),
    )
    if not crypto.signature_is_valid(backend_public, delivery_unverified.signature, signed):
        raise Rejected(Reason.BAD_SIGNATURE, "key delivery not signed by the backend")
    delivery = delivery_unverified
    if delivery.header.guest_id != guest_id:
        raise Rejected(Reason.WRONG_GUEST, f"key delivery for {delivery.header.guest_id}")
    if delivery.request_id != request_id:
        raise Rejected(Reason.REPLAY, "key delivery answers another request")
    if delivery.header.lock_id != lock_id:
        raise Rejected(Reason.WRONG_LOCK, f"key for {delivery.header.lock_id}, asked for {lock_id}")
    _check_validity(delivery.header, now, clock_skew_s)
    return SessionKey(delivery.header, _decrypt_key(guest_key, delivery.guest_ciphertext))


# --- the lock's receipt of a key -------------------------------------------------------------


def make_key_ack(key: SessionKey) -> KeyAck:
    lock_id = key.header.lock_id
    tag = crypto.mac(key.secret, KEY_ACK_LABEL, KeyAck.mac_input(key.key_id, lock_id))
    return KeyAck(key.key_id, lock_id, tag)


def key_ack_is_valid(ack: KeyAck, key: SessionKey) -> bool:
    return ack.lock_id == key.header.lock_id and crypto.mac_is_valid(
        key.secret, KEY_ACK_LABEL, KeyAck.mac_input(key.key_id, key.header.lock_id), ack.tag
    )


# --- refusals ----------------------------------------------------------------------------------


def make_denial(
    *, request_id: bytes, guest_id: str, reason: str, now: float, backend_key: crypto.PrivateKey
) -> SessionDenied:
    unsigned = SessionDenied(request_id, int(now), guest_id, reason, b"")
    return dataclasses.replace(
        unsigned, signature=crypto.sign(backend_key, unsigned.signed_bytes())
    )


def open_denial(
    payload: bytes, *, guest_id: str, request_id: bytes, backend_public: crypto.TrustedKeys
) -> SessionDenied:
    denial_unverified = SessionDenied.from_bytes(payload)
    if not crypto.signature_is_valid(
        backend_public, denial_unverified.signature, denial_unverified.signed_bytes()
    ):
        raise Rejected(Reason.BAD_SIGNATURE, "denial not signed by the backend")
    if denial_unverified.guest_id != guest_id or denial_unverified.request_id != request_id:
        raise Rejected(Reason.WRONG_GUEST, "denial answers another request")
    return denial_unverified
