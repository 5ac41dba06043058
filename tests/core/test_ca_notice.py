"""The backend's signed list of site CA certificates (core/ca_notice.py): what a device with
its own copy of the site trusts after it; pure."""

from __future__ import annotations

import datetime as dt

import pytest

from smartlock import crypto
from smartlock.core.ca_notice import MAX_CERTIFICATES, make_ca_notice, open_ca_notice
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, MessageType

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
CURRENT = crypto.certificates_to_der(crypto.make_certificate_authority("a", now=NOW).cert_pem)[0]
NEXT = crypto.certificates_to_der(crypto.make_certificate_authority("a", now=NOW).cert_pem)[0]


def test_a_notice_of_two_certificates_round_trips_and_fits_a_message(
    backend_key: crypto.PrivateKey,
) -> None:
    payload = make_ca_notice((CURRENT, NEXT), now=1000, backend_key=backend_key)
    assert len(payload) <= MAX_MESSAGE_BYTES
    notice = open_ca_notice(payload, trusted=backend_key.public_key())
    assert (notice.certificates, notice.at) == ((CURRENT, NEXT), 1000)


def test_a_notice_is_trusted_from_any_of_the_backend_keys_during_a_rotation(
    backend_key: crypto.PrivateKey, lock_key: crypto.PrivateKey
) -> None:
    payload = make_ca_notice((CURRENT,), now=1000, backend_key=backend_key)
    trusted = (lock_key.public_key(), backend_key.public_key())  # any two keys will do
    assert open_ca_notice(payload, trusted=trusted).certificates == (CURRENT,)


def test_a_notice_signed_by_another_key_is_refused(
    backend_key: crypto.PrivateKey, lock_key: crypto.PrivateKey
) -> None:
    payload = make_ca_notice((CURRENT,), now=1000, backend_key=lock_key)
    with pytest.raises(Rejected) as refused:
        open_ca_notice(payload, trusted=backend_key.public_key())
    assert refused.value.reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("where", [3, 10, 300])
def test_every_changed_byte_of_the_certificates_is_refused(
    backend_key: crypto.PrivateKey, where: int
) -> None:
    payload = bytearray(make_ca_notice((CURRENT,), now=1000, backend_key=backend_key))
    payload[2 + 1 + 2 + where] ^= 0x01
    with pytest.raises(Rejected) as refused:
        open_ca_notice(bytes(payload), trusted=backend_key.public_key())
    assert refused.value.reason is Reason.BAD_SIGNATURE


def test_another_version_type_or_count_is_refused(backend_key: crypto.PrivateKey) -> None:
    payload = make_ca_notice((CURRENT,), now=1000, backend_key=backend_key)
    cases = {
        Reason.WRONG_VERSION: bytes([PROTOCOL_VERSION - 1]) + payload[1:],
        Reason.WRONG_TYPE: payload[:1] + bytes([MessageType.ALERT]) + payload[2:],
        Reason.MALFORMED: payload[:2] + bytes([MAX_CERTIFICATES + 1]) + payload[3:],
    }
    for reason, changed in cases.items():
        with pytest.raises(Rejected) as refused:
            open_ca_notice(changed, trusted=backend_key.public_key())
        assert refused.value.reason is reason


def test_a_truncated_notice_is_malformed(backend_key: crypto.PrivateKey) -> None:
    payload = make_ca_notice((CURRENT,), now=1000, backend_key=backend_key)
    with pytest.raises(Rejected) as refused:
        open_ca_notice(payload[:-1], trusted=backend_key.public_key())
    assert refused.value.reason is Reason.MALFORMED


def test_a_notice_holds_one_or_two_certificates(backend_key: crypto.PrivateKey) -> None:
    for certificates in [(), (CURRENT, NEXT, CURRENT)]:
        with pytest.raises(ValueError, match="1 to 2"):
            make_ca_notice(certificates, now=0, backend_key=backend_key)


def test_only_ca_certificates_become_a_ca_bundle() -> None:
    assert crypto.certificates_to_der(crypto.certificates_to_pem((CURRENT, NEXT))) == (
        CURRENT,
        NEXT,
    )
    ca = crypto.make_certificate_authority("a", now=NOW)
    server = crypto.make_server_certificate(ca, ["localhost"], now=NOW)
    leaf = crypto.certificates_to_der(server.cert_pem)
    with pytest.raises(crypto.CryptoError, match="not a CA certificate"):
        crypto.certificates_to_pem(leaf)
    with pytest.raises(crypto.CryptoError):
        crypto.certificates_to_pem((b"not a certificate",))
