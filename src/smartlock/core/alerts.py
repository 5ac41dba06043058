"""Security and health alerts for owners and residents (README, "Intrusion detection", "Health").

The backend signs each alert (RSA-PSS) and publishes the same bytes on ``users/{user}/alerts``
of every owner and resident; ``smartlock watch`` verifies the signature before it shows one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from smartlock import crypto
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import ID_BYTES, PROTOCOL_VERSION, MessageType, open_frame
from smartlock.core.wire import Writer

LABEL_ALERT = b"smartlock/v1/alert"
MAX_DETAIL_BYTES = 200


@dataclass(frozen=True)
class Alert:
    alert_id: bytes
    at: int
    kind: str  # "intrusion" | "lock_offline" | "lock_online"
    lock_id: str  # "" when not about a lock
    subject: str  # the user or lock locked out, or the lock gone offline
    detail: str
    signature: bytes = b""

    def _fields(self, writer: Writer) -> Writer:
        return (
            writer.raw(self.alert_id)
            .u32(self.at)
            .text(self.kind)
            .text(self.lock_id)
            .text(self.subject)
            .text(self.detail)  # all of it: the signature covers exactly what is sent
        )

    def signed_bytes(self) -> bytes:
        return self._fields(Writer().raw(LABEL_ALERT).u8(0).u8(PROTOCOL_VERSION)).getvalue()

    def __bytes__(self) -> bytes:
        writer = self._fields(Writer().u8(PROTOCOL_VERSION).u8(MessageType.ALERT))
        return writer.long_bytes(self.signature).getvalue()

    @classmethod
    def from_bytes(cls, payload: bytes) -> Alert:
        reader = open_frame(payload, MessageType.ALERT)
        alert_id = reader.raw(ID_BYTES)
        at = reader.u32()
        kind = reader.text_value()
        lock_id = reader.text_value()
        subject = reader.text_value()
        detail = reader.text_value()
        signature = reader.long_bytes()
        reader.end()
        return cls(alert_id, at, kind, lock_id, subject, detail, signature)


def make_alert(
    *,
    kind: str,
    lock_id: str,
    subject: str,
    detail: str,
    now: float,
    backend_key: crypto.PrivateKey,
    random_bytes: Callable[[int], bytes],
) -> Alert:
    unsigned = Alert(random_bytes(ID_BYTES), int(now), kind, lock_id, subject, _cut(detail))
    return dataclasses.replace(
        unsigned, signature=crypto.sign(backend_key, unsigned.signed_bytes())
    )


def _cut(detail: str) -> str:
    """At most ``MAX_DETAIL_BYTES`` of UTF-8, cut on a character boundary."""
    return detail.encode()[:MAX_DETAIL_BYTES].decode("utf-8", "ignore")


def open_alert(payload: bytes, *, backend_public: crypto.TrustedKeys) -> Alert:
    alert_unverified = Alert.from_bytes(payload)
    if not crypto.signature_is_valid(
        backend_public, alert_unverified.signature, alert_unverified.signed_bytes()
    ):
        raise Rejected(Reason.BAD_SIGNATURE, "alert not signed by the backend")
    return alert_unverified
