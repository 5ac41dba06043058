"""Guessing a broker password, and logging in with a client certificate instead of one.

Mosquitto does not slow down or lock out wrong passwords, so what stops an online guesser is the
size of the password space alone: every broker password is a long random secret, and the
broker keeps only salted PBKDF2-SHA512 hashes of them.  Nor does the broker lock out the real
user after an attacker's failures.  A client certificate is not a credential: the broker does
not ask for one, and a client that presents one, from a foreign CA or even from the site's own,
still needs the right user name and password.  (Plain MQTT to the TLS port, anonymous clients
and a client trusting a foreign server CA: test_broker_access.py.)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
import shutil
import string
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smartlock import site as site_module
from smartlock.adapters.mqtt import BrokerUnavailable, MqttConnection, close_refused_socket
from smartlock.broker import client_tls_context
from smartlock.site import BACKEND_USER, Credentials, Site
from system_harness import OWNER, System, cli_json, new_site_dir

ATTEMPTS = 50
URLSAFE = frozenset(string.ascii_letters + string.digits + "-_")
SECONDS_PER_YEAR = 365.25 * 24 * 3600


async def test_fifty_wrong_passwords_are_refused_and_the_owner_still_gets_in(
    system: System,
) -> None:
    site = system.site
    broker = system.broker
    lock = system.locks["lock_01"]
    refusals_before = broker.count(r"not authori[sz]ed")
    started = time.monotonic()
    for attempt in range(ATTEMPTS):
        guess = Credentials(OWNER, f"guess-{attempt:02d}-{'x' * 32}")
        with pytest.raises(BrokerUnavailable, match="not authorized"):
            async with MqttConnection(site, guess):
                pass
    elapsed = time.monotonic() - started
    rate = ATTEMPTS / elapsed
    # the broker saw every attempt and refused each one (its log lines come asynchronously)
    async with asyncio.timeout(10):
        while broker.count(r"not authori[sz]ed") - refusals_before < ATTEMPTS:  # noqa: ASYNC110 -- a log offers no event
            await asyncio.sleep(0.05)
    assert broker.count(r"not authori[sz]ed") - refusals_before == ATTEMPTS
    bits = len(site.credentials(OWNER).password) * 6 // 8 * 8  # whole random bytes encoded
    years = 2 ** (bits - 1) / rate / SECONDS_PER_YEAR
    print(
        f"\n{ATTEMPTS} wrong passwords refused in {elapsed:.2f} s: {rate:.0f} attempts/s "
        f"from one client; the broker neither slowed down nor locked out. At that rate half "
        f"of a {bits:.0f}-bit password space takes {years:.1e} years."
    )
    assert years > 1e20  # what stops guessing is the password space, not the broker
    # no lockout of the real owner: right after, it connects and its remote command works
    before = lock.count(r"UNLOCKED lock_01")
    answer = await cli_json(site, "remote", "unlock", "lock_01", "--id", OWNER)
    assert answer["result"] == "done", answer
    assert lock.count(r"UNLOCKED lock_01") == before + 1


def test_broker_passwords_are_random_secrets_of_at_least_128_bits(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    # by construction: each identity's password is secrets.token_urlsafe(n), n >= 16 bytes
    drawn: list[tuple[int, str]] = []
    real = secrets.token_urlsafe

    def recording(nbytes: int | None = None) -> str:
        assert nbytes is not None  # the default size is Python's choice, not ours
        value: str = real(nbytes)
        drawn.append((nbytes, value))
        return value

    monkeypatch.setattr(secrets, "token_urlsafe", recording)
    root = Path(tempfile.mkdtemp(prefix="smartlock-probe-"))
    try:
        probe = Site(root, "probe", "127.0.0.1", 1, ("probe_lock",), ())
        password = site_module._make_identity(probe, "probe_lock")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert len(drawn) == 1
    nbytes, value = drawn[0]
    assert nbytes * 8 >= 128, f"token_urlsafe({nbytes}) gives {nbytes * 8} bits"
    assert password == value  # used as drawn: not cut, not derived from something smaller
    # and the site's passwords have that shape: base64url of >= 16 random bytes, all different
    site = system.site
    identities = (BACKEND_USER, *site.locks, *site.users)
    passwords = {identity: site.credentials(identity).password for identity in identities}
    for identity, secret in passwords.items():
        assert set(secret) <= URLSAFE, identity
        assert len(secret) * 6 >= 128, (identity, len(secret))
        assert len(secret) == len(value), identity  # made the same way
    assert len(set(passwords.values())) == len(passwords)


def test_broker_password_file_holds_only_pbkdf2_sha512_hashes(system: System) -> None:
    site = system.site
    text = (site.broker_dir / "passwd").read_text()
    entries = dict(line.split(":", 1) for line in text.splitlines() if line)
    assert set(entries) == {BACKEND_USER, *site.locks, *site.users}
    iterations = set()
    for user, stored in entries.items():
        # mosquitto_passwd's $7$: PBKDF2-SHA512, iterations, base64 salt, base64 64-byte hash
        match = re.fullmatch(r"\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/]{86}==)", stored)
        assert match, (user, stored[:12])
        iterations.add(int(match.group(1)))
        password = site.credentials(user).password
        assert password not in text
    salts = [stored.split("$")[3] for stored in entries.values()]
    assert len(set(salts)) == len(salts)  # salted: equal passwords would not show
    print(f"\npassword file: {len(entries)} PBKDF2-SHA512 hashes, iterations {sorted(iterations)}")


# --- client certificates ---------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _client_certificate(
    issuer_key: ec.EllipticCurvePrivateKey, issuer_name: x509.Name, user: str
) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a TLS client certificate for ``user``."""
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(user))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _foreign_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Name, bytes]:
    """A self-signed CA of the attacker's: (key, name, certificate PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("an attacker's CA")
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, name, cert.public_bytes(serialization.Encoding.PEM)


def _site_ca(site: Site) -> tuple[ec.EllipticCurvePrivateKey, x509.Name, bytes]:
    """The site's own CA (as someone who stole ``ca/ca.key`` would have it)."""
    key = serialization.load_pem_private_key((site.root / "ca" / "ca.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    cert_pem = site.ca_cert.read_bytes()
    return key, x509.load_pem_x509_certificate(cert_pem).subject, cert_pem


@pytest.fixture
def cert_dir() -> Iterator[Path]:
    root = new_site_dir()
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("issuer", ["a foreign CA", "the site CA"])
@pytest.mark.parametrize(
    ("username", "password"),
    [(OWNER, "not-the-password"), (OWNER, None), (None, None)],
    ids=["wrong password", "no password", "no user name"],
)
async def test_a_client_certificate_grants_nothing_without_the_password(
    system: System, cert_dir: Path, issuer: str, username: str | None, password: str | None
) -> None:
    site = system.site
    issuer_key, issuer_name, ca_pem = _foreign_ca() if issuer == "a foreign CA" else _site_ca(site)
    cert_pem, key_pem = _client_certificate(issuer_key, issuer_name, OWNER)
    (cert_dir / "client.crt").write_bytes(cert_pem + ca_pem)  # the chain up to its CA
    (cert_dir / "client.key").write_bytes(key_pem)
    context = client_tls_context(site)  # the right CA for the broker, and the certificate
    context.load_cert_chain(cert_dir / "client.crt", cert_dir / "client.key")
    broker = system.broker
    mark = len(broker.lines)
    client = aiomqtt.Client(
        site.broker_host,
        site.broker_port,
        username=username,
        password=password,
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=context,
        timeout=5,
    )
    try:
        with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed"):
            async with client:
                pass
    finally:
        close_refused_socket(client)
    await broker.wait_for(r"not authori[sz]ed", after=mark)
    # the site's own client is unaffected, with its password and no certificate
    async with MqttConnection(site, site.credentials(OWNER)):
        pass
