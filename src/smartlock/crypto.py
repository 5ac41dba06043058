"""The recipe layer: the only module in smartlock that names cryptographic algorithms.

Callers get recipes ("encrypt this session key for that lock", "sign this issuance"), never an
algorithm parameter.  The choices, as the README's security model states them:

* key pairs: RSA-2048, public exponent 65537;
* key transport: RSA-OAEP with SHA-256 (MGF1-SHA-256), no label;
* signatures: RSA-PSS with SHA-256, MGF1-SHA-256, salt length = digest length (32 bytes);
* BLE tokens, acknowledgements, lock reports, the audit chain: HMAC-SHA-256 truncated to 16
  bytes, compared with :func:`hmac.compare_digest`, every input prefixed by a domain-separation
  label;
* remote commands: AES-256-GCM (96-bit random nonce, 128-bit tag) under a per-lock command key
  derived by HKDF-SHA-256 from the backend's command master key, the lock id and an epoch;
* dashboard passwords: scrypt (n=2^15, r=8, p=1, 16-byte salt), the hash stored self-describing;
  bearer secrets (session cookies, invitation codes, recovery codes) stored only as their SHA-256;
* the dashboard's second factor: TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30 s steps, pyotp), one
  step of clock drift either way; its secret sealed with AES-256-GCM under a key derived by
  HKDF-SHA-256 from the audit key (label ``totp``), the user name in the associated data;
* site PKI: an ECDSA P-256 CA and broker certificate, SHA-256, made with ``cryptography.x509``.

Every failure of a primitive surfaces as :class:`CryptoError` with no detail, as Fernet does.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field

import pyotp
from cryptography import x509
from cryptography.exceptions import InvalidKey, InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

RSA_KEY_BITS = 2048
SESSION_KEY_BYTES = 32
MAC_BYTES = 16
DIGEST_BYTES = 32
NONCE_BYTES = 12

PrivateKey = rsa.RSAPrivateKey
PublicKey = rsa.RSAPublicKey
# the keys a signature may come from: one, or (during a key rotation) the new and the previous
TrustedKeys = PublicKey | tuple[PublicKey, ...]


class CryptoError(Exception):
    """A primitive failed (bad ciphertext, bad key file); deliberately without detail."""


def random_bytes(size: int) -> bytes:
    """Bytes from the operating system's CSPRNG (``secrets``); adapters pass this to the core."""
    return secrets.token_bytes(size)


# --- key pairs -----------------------------------------------------------------------------


def generate_private_key() -> PrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)


def private_key_to_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_to_pem(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(pem: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise CryptoError("not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < RSA_KEY_BITS:
        raise CryptoError(f"not an RSA private key of at least {RSA_KEY_BITS} bits")
    return key


def load_public_key(pem: bytes) -> PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise CryptoError("not a PEM public key") from None
    return _rsa_public(key)


def _rsa_public(key: object) -> PublicKey:
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < RSA_KEY_BITS:
        raise CryptoError(f"not an RSA public key of at least {RSA_KEY_BITS} bits")
    return key


def public_key_to_der(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key_der(der: bytes) -> PublicKey:
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError):
        raise CryptoError("not a DER public key") from None
    return _rsa_public(key)


def public_key_fingerprint(key: PublicKey) -> str:
    """Short SHA-256 fingerprint of a public key, for logs and ``smartlock init`` output."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


# --- key transport and signatures ------------------------------------------------------------

_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def encrypt_for(recipient: PublicKey, plaintext: bytes) -> bytes:
    """RSA-OAEP(SHA-256) encryption of a short secret (a session key) to ``recipient``."""
    return recipient.encrypt(plaintext, _OAEP)


def decrypt_with(key: PrivateKey, ciphertext: bytes) -> bytes:
    try:
        return key.decrypt(ciphertext, _OAEP)
    except ValueError:
        raise CryptoError("decryption failed") from None


def sign(key: PrivateKey, message: bytes) -> bytes:
    """RSA-PSS(SHA-256) signature over ``message``."""
    return key.sign(message, _PSS, hashes.SHA256())


def signature_is_valid(key: TrustedKeys, signature: bytes, message: bytes) -> bool:
    """RSA-PSS(SHA-256) check of ``signature`` by ``key`` (or by any one of several keys)."""
    for candidate in key if isinstance(key, tuple) else (key,):
        try:
            candidate.verify(signature, message, _PSS, hashes.SHA256())
        except (InvalidSignature, ValueError):
            continue
        return True
    return False


def signature_size(key: PublicKey | PrivateKey) -> int:
    return (key.key_size + 7) // 8


def digest(data: bytes) -> bytes:
    """SHA-256."""
    return hashlib.sha256(data).digest()


# --- symmetric MACs ----------------------------------------------------------------------------


def mac(key: bytes, label: bytes, message: bytes) -> bytes:
    """HMAC-SHA-256 over ``label || 0x00 || message``, truncated to 16 bytes.

    ``label`` separates the domains (BLE token, key acknowledgement, access acknowledgement) so a
    MAC made for one purpose is never valid for another.
    """
    if len(key) != SESSION_KEY_BYTES:
        raise CryptoError("session keys are 32 bytes")
    return hmac.new(key, label + b"\x00" + message, hashlib.sha256).digest()[:MAC_BYTES]


def mac_is_valid(key: bytes, label: bytes, message: bytes, tag: bytes) -> bool:
    """Constant-time check of a :func:`mac` tag."""
    return hmac.compare_digest(mac(key, label, message), tag)


# --- symmetric encryption (remote commands) ----------------------------------------------------


def derive_key(master: bytes, label: bytes, context: bytes) -> bytes:
    """HKDF-SHA-256 of a 32-byte ``master`` secret: a 32-byte key for ``label`` and ``context``."""
    if len(master) != SESSION_KEY_BYTES:
        raise CryptoError("master secrets are 32 bytes")
    return HKDF(
        algorithm=hashes.SHA256(),
        length=SESSION_KEY_BYTES,
        salt=None,
        info=label + b"\x00" + context,
    ).derive(master)


def seal(key: bytes, nonce: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """AES-256-GCM: ciphertext and 16-byte tag; ``associated`` is authenticated, not encrypted.

    The caller puts its domain-separation label in ``associated`` and never reuses a nonce under
    one key (nonces are random, 96 bits, from :func:`random_bytes`).
    """
    if len(key) != SESSION_KEY_BYTES or len(nonce) != NONCE_BYTES:
        raise CryptoError("bad key or nonce size")
    return AESGCM(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, nonce: bytes, sealed: bytes, associated: bytes) -> bytes:
    """The plaintext of :func:`seal`'s output, or :class:`CryptoError` if anything was altered."""
    if len(key) != SESSION_KEY_BYTES or len(nonce) != NONCE_BYTES:
        raise CryptoError("bad key or nonce size")
    try:
        return AESGCM(key).decrypt(nonce, sealed, associated)
    except InvalidTag:
        raise CryptoError("message authentication failed") from None


# --- passwords (the web dashboard's sign-in) -------------------------------------------------

PASSWORD_SCHEME = "scrypt"  # noqa: S105 -- the name of the hash scheme, not a password
SCRYPT_N = 2**15  # 32 MiB of memory per guess (memory-hard: RFC 7914)
SCRYPT_N_MAX = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
PASSWORD_SALT_BYTES = 16


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    """A self-describing scrypt hash: ``scrypt$n$r$p$salt$hash`` (base64url, 16-byte salt).

    ``n`` (a power of two) is kept in the hash, so a later, stronger setting still reads old ones.
    """
    salt = secrets.token_bytes(PASSWORD_SALT_BYTES)
    derived = Scrypt(salt=salt, length=DIGEST_BYTES, n=n, r=SCRYPT_R, p=SCRYPT_P).derive(
        password.encode()
    )
    return "$".join(
        (PASSWORD_SCHEME, str(n), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(derived))
    )


def password_matches(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` (from :func:`hash_password`) was made from.

    A damaged ``stored`` value never matches; the comparison of the hashes is constant-time.
    """
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        # a damaged or hostile row must not make us spend gigabytes: r and p are ours, and n
        # at most 4 x today's (128 MiB)
        if scheme != PASSWORD_SCHEME or (r, p) != (str(SCRYPT_R), str(SCRYPT_P)):
            return False
        if not 2 <= int(n) <= SCRYPT_N_MAX or int(n) & (int(n) - 1):
            return False
        kdf = Scrypt(salt=_unb64(salt), length=DIGEST_BYTES, n=int(n), r=int(r), p=int(p))
        kdf.verify(password.encode(), _unb64(expected))
    except (ValueError, InvalidKey, OverflowError):
        return False
    return True


def token_digest(token: str) -> str:
    """The hex SHA-256 under which a bearer secret (session cookie, invitation code) is stored:
    a copy of the database does not hold a usable secret."""
    return hashlib.sha256(token.encode()).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    """Strict: only the one canonical spelling of some bytes (ValueError otherwise), so a
    stored hash whose text changed never reads as the same bytes."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data


# --- the dashboard's second factor (TOTP) ----------------------------------------------------

TOTP_WINDOW = 1  # steps of clock drift accepted either way (30 s each)
_TOTP_KEY_LABEL = b"totp"
_TOTP_SECRET_LABEL = b"smartlock totp secret"


def new_totp_secret() -> str:
    """A fresh TOTP secret: 32 base32 characters (160 random bits), as authenticator apps take."""
    return pyotp.random_base32()


def totp_provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app scans (RFC 6238 defaults)."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def totp_matching_step(secret: str, code: str, *, at: float) -> int | None:
    """The time step (RFC 6238's counter) whose code is ``code``, within :data:`TOTP_WINDOW`
    steps of ``at``; ``None`` if there is none.  Each candidate is compared in constant time.

    The step, not just a yes, so that the caller can refuse a step already used (a replay).
    """
    totp = pyotp.TOTP(secret)
    try:
        now_step = totp.timecode(at)
    except ValueError:  # a clock before 1970 or after 9999
        return None
    presented = code.encode()
    matches = [
        step
        for step in range(now_step - TOTP_WINDOW, now_step + TOTP_WINDOW + 1)
        if hmac.compare_digest(totp.generate_otp(step).encode(), presented)
    ]
    return max(matches, default=None)


def _totp_associated(user: str) -> bytes:
    return _TOTP_SECRET_LABEL + b"\x00" + user.encode()


def seal_totp_secret(audit_key: bytes, user: str, secret: str) -> tuple[bytes, bytes]:
    """``(nonce, sealed)``: ``user``'s TOTP secret under a key derived from the audit key (which
    lives outside the database), bound to the user's name."""
    nonce = random_bytes(NONCE_BYTES)
    key = derive_key(audit_key, _TOTP_KEY_LABEL, b"")
    return nonce, seal(key, nonce, secret.encode(), _totp_associated(user))


def open_totp_secret(audit_key: bytes, user: str, nonce: bytes, sealed: bytes) -> str:
    """The secret :func:`seal_totp_secret` sealed for ``user``; :class:`CryptoError` if the row
    was altered, moved to another user, or sealed under another audit key."""
    key = derive_key(audit_key, _TOTP_KEY_LABEL, b"")
    try:
        return open_sealed(key, nonce, sealed, _totp_associated(user)).decode("ascii")
    except UnicodeDecodeError:  # pragma: no cover -- authenticated: only what we sealed opens
        raise CryptoError("not a TOTP secret") from None


# --- site PKI (TLS for the broker) -----------------------------------------------------------


@dataclass(frozen=True)
class CertifiedKey:
    """A PEM private key and its PEM certificate."""

    key_pem: bytes = field(repr=False)
    cert_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smartlock site"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ec_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_certificate_authority(
    site_name: str, *, now: dt.datetime, days: int = 3650
) -> CertifiedKey:
    """A self-signed CA for one site; it signs only the broker's certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"smartlock CA {site_name}")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertifiedKey(_ec_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


def make_server_certificate(
    ca: CertifiedKey, hostnames: list[str], *, now: dt.datetime, days: int = 825
) -> CertifiedKey:
    """The broker's TLS certificate for ``hostnames`` (DNS names or IP addresses)."""
    if not hostnames:
        raise ValueError("the broker certificate needs at least one host name")
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise CryptoError("the site CA key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hostnames[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return CertifiedKey(_ec_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


def certificates_to_der(pem: bytes) -> tuple[bytes, ...]:
    """The certificates of a PEM bundle (a ``ca.crt``), DER, in order."""
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise CryptoError("not a PEM certificate bundle") from None
    return tuple(c.public_bytes(serialization.Encoding.DER) for c in certificates)


def certificates_to_pem(ders: tuple[bytes, ...]) -> bytes:
    """A PEM bundle of DER certificates (each must be one, and a CA: this is for ``ca.crt``)."""
    pems = []
    for der in ders:
        try:
            certificate = x509.load_der_x509_certificate(der)
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        except (ValueError, x509.ExtensionNotFound):
            raise CryptoError("not a CA certificate") from None
        if not constraints.value.ca:
            raise CryptoError("not a CA certificate")
        pems.append(certificate.public_bytes(serialization.Encoding.PEM))
    return b"".join(pems)
