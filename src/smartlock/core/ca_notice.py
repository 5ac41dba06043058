"""The site CA certificates a device is to trust, from the backend (``smartlock rotate ca``).

A device that keeps its own copy of the site (an enrolled phone) has its own ``ca.crt``; during
a CA rotation it must learn the next CA before the broker switches to a certificate from it.
The backend publishes, retained on ``locks/{lock}/ca`` and ``users/{user}/ca``, the
certificates of the site's ``ca.crt``, signed with its key, which every device trusts:

``version | type | count u8 | count x certificate (DER, 2+n) | at u32 | signature (2+n)``,
the signature RSA-PSS over the label and every other field.  Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartlock import crypto
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import PROTOCOL_VERSION, MessageType, open_frame
from smartlock.core.wire import Writer

LABEL_CA_BUNDLE = b"smartlock/v1/ca-bundle"
MAX_CERTIFICATES = 2  # the current CA, and the next one during a rotation


@dataclass(frozen=True)
class CaNotice:
    certificates: tuple[bytes, ...]  # DER, in ca.crt's order
    at: int


def _fields(certificates: tuple[bytes, ...], at: int) -> Writer:
    writer = Writer().u8(len(certificates))
    for der in certificates:
        writer.long_bytes(der)
    return writer.u32(at)


def make_ca_notice(
    certificates: tuple[bytes, ...], *, now: float, backend_key: crypto.PrivateKey
) -> bytes:
    if not 1 <= len(certificates) <= MAX_CERTIFICATES:
        raise ValueError(f"a CA notice holds 1 to {MAX_CERTIFICATES} certificates")
    fields = _fields(certificates, int(now)).getvalue()
    signed = Writer().raw(LABEL_CA_BUNDLE).u8(PROTOCOL_VERSION).raw(fields).getvalue()
    signature = crypto.sign(backend_key, signed)
    return (
        Writer()
        .u8(PROTOCOL_VERSION)
        .u8(MessageType.CA_BUNDLE)
        .raw(fields)
        .long_bytes(signature)
        .getvalue()
    )


def open_ca_notice(payload: bytes, *, trusted: crypto.TrustedKeys) -> CaNotice:
    reader = open_frame(payload, MessageType.CA_BUNDLE)
    start = reader.offset()
    count = reader.u8()
    if not 1 <= count <= MAX_CERTIFICATES:
        raise Rejected(Reason.MALFORMED, f"a CA notice of {count} certificates")
    certificates = tuple(reader.long_bytes() for _ in range(count))
    at = reader.u32()
    fields = payload[start : reader.offset()]
    signature = reader.long_bytes()
    reader.end()
    signed = Writer().raw(LABEL_CA_BUNDLE).u8(PROTOCOL_VERSION).raw(fields).getvalue()
    if not crypto.signature_is_valid(trusted, signature, signed):
        raise Rejected(Reason.BAD_SIGNATURE, "CA notice not signed by the backend")
    return CaNotice(certificates, at)
