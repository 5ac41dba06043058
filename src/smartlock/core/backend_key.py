"""Rotating the backend's signing key with an overlap (``smartlock rotate backend-key``).

Every lock and user device pins the backend's public key: it checks key deliveries, revocation
lists, command keys, denials, replies and alerts with it.  A device that keeps its own copy of
the site (an enrolled phone) cannot read the site's new key file, so the backend tells each
device, retained on ``locks/{lock}/backend_key`` and ``users/{user}/backend_key``:

* :data:`ENDORSE` -- "my key is now K", signed with the *previous* key, which the device trusts:
  the device pins K and keeps trusting the previous key (messages still on their way, retained
  ones not yet replaced) until it is told otherwise;
* :data:`RETIRE` -- "key P is retired", signed with the *new* key: the device stops trusting P.

``version | type | kind u8 | key (DER, 2+n) | at u32 | signature (2+n)``; the signature is
RSA-PSS over the label and every other field.  A notice whose signature no trusted key verifies
changes nothing.  Pure: the caller keeps the keys (:mod:`smartlock.adapters.backend_trust`).
"""

from __future__ import annotations

from dataclasses import dataclass

from smartlock import crypto
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import PROTOCOL_VERSION, MessageType, open_frame
from smartlock.core.wire import Writer

LABEL_BACKEND_KEY = b"smartlock/v1/backend-key"
ENDORSE = 1
RETIRE = 2


@dataclass(frozen=True)
class BackendKeyNotice:
    kind: int
    key: crypto.PublicKey
    at: int


def _signed(kind: int, key_der: bytes, at: int) -> bytes:
    return (
        Writer()
        .raw(LABEL_BACKEND_KEY)
        .u8(PROTOCOL_VERSION)
        .u8(kind)
        .long_bytes(key_der)
        .u32(at)
        .getvalue()
    )


def make_backend_key_notice(
    kind: int, key: crypto.PublicKey, *, now: float, signing_key: crypto.PrivateKey
) -> bytes:
    """ENDORSE (``key`` = the new one, signed by the previous) or RETIRE (``key`` = the retired
    one, signed by the new)."""
    if kind not in (ENDORSE, RETIRE):
        raise ValueError("a notice endorses or retires a key")
    der = crypto.public_key_to_der(key)
    at = int(now)
    signature = crypto.sign(signing_key, _signed(kind, der, at))
    return (
        Writer()
        .u8(PROTOCOL_VERSION)
        .u8(MessageType.BACKEND_KEY)
        .u8(kind)
        .long_bytes(der)
        .u32(at)
        .long_bytes(signature)
        .getvalue()
    )


def open_backend_key_notice(payload: bytes, *, trusted: crypto.TrustedKeys) -> BackendKeyNotice:
    reader = open_frame(payload, MessageType.BACKEND_KEY)
    kind = reader.u8()
    der = reader.long_bytes()
    at = reader.u32()
    signature = reader.long_bytes()
    reader.end()
    if not crypto.signature_is_valid(trusted, signature, _signed(kind, der, at)):
        raise Rejected(Reason.BAD_SIGNATURE, "backend key notice not signed by a trusted key")
    if kind not in (ENDORSE, RETIRE):
        raise Rejected(Reason.MALFORMED, f"backend key notice of kind {kind}")
    try:
        key = crypto.load_public_key_der(der)
    except crypto.CryptoError:
        raise Rejected(Reason.MALFORMED, "backend key notice: not a public key") from None
    return BackendKeyNotice(kind, key, at)
