"""smartlock.crypto: the recipe layer (RSA-OAEP, RSA-PSS, labelled HMAC, the site PKI)."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from smartlock import crypto

NOW = dt.datetime(2027, 1, 15, 12, 0, tzinfo=dt.UTC)
SECRET = bytes(range(32))
KEY = b"\x42" * 32


@pytest.fixture(scope="module")
def key() -> crypto.PrivateKey:
    return crypto.generate_private_key()


@pytest.fixture(scope="module")
def other_key() -> crypto.PrivateKey:
    return crypto.generate_private_key()


@pytest.fixture(scope="module")
def weak_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


@pytest.fixture(scope="module")
def ca() -> crypto.CertifiedKey:
    return crypto.make_certificate_authority("home", now=NOW)


def _cert(certified: crypto.CertifiedKey) -> x509.Certificate:
    return x509.load_pem_x509_certificate(certified.cert_pem)


# --- key pairs ---------------------------------------------------------------------------------


def test_generated_key_is_rsa_2048_with_exponent_65537(key) -> None:
    assert key.key_size == 2048
    assert key.public_key().public_numbers().e == 65537


def test_private_key_pem_round_trips(key) -> None:
    loaded = crypto.load_private_key(crypto.private_key_to_pem(key))
    assert loaded.private_numbers() == key.private_numbers()


def test_public_key_pem_round_trips(key) -> None:
    loaded = crypto.load_public_key(crypto.public_key_to_pem(key.public_key()))
    assert loaded.public_numbers() == key.public_key().public_numbers()


@pytest.mark.parametrize(
    "pem",
    [b"", b"garbage", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
    ids=["empty", "garbage", "bad-base64-body"],
)
def test_load_private_key_of_garbage_is_a_crypto_error(pem: bytes) -> None:
    with pytest.raises(crypto.CryptoError):
        crypto.load_private_key(pem)


def test_load_public_key_of_garbage_is_a_crypto_error() -> None:
    with pytest.raises(crypto.CryptoError):
        crypto.load_public_key(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")


def test_public_key_is_not_loaded_as_a_private_key(key) -> None:
    with pytest.raises(crypto.CryptoError):
        crypto.load_private_key(crypto.public_key_to_pem(key.public_key()))


def test_keys_under_2048_bits_are_refused(weak_key) -> None:
    with pytest.raises(crypto.CryptoError):
        crypto.load_private_key(crypto.private_key_to_pem(weak_key))
    with pytest.raises(crypto.CryptoError):
        crypto.load_public_key(crypto.public_key_to_pem(weak_key.public_key()))


def test_non_rsa_keys_are_refused() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    private_pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(crypto.CryptoError):
        crypto.load_private_key(private_pem)
    with pytest.raises(crypto.CryptoError):
        crypto.load_public_key(public_pem)


def test_fingerprint_is_stable_short_and_distinct(key, other_key) -> None:
    fingerprint = crypto.public_key_fingerprint(key.public_key())
    assert fingerprint == crypto.public_key_fingerprint(key.public_key())
    assert len(fingerprint) == 16
    int(fingerprint, 16)  # hex
    assert fingerprint != crypto.public_key_fingerprint(other_key.public_key())


# --- key transport -------------------------------------------------------------------------


def test_encrypt_decrypt_round_trip(key) -> None:
    ciphertext = crypto.encrypt_for(key.public_key(), SECRET)
    assert len(ciphertext) == 256
    assert crypto.decrypt_with(key, ciphertext) == SECRET


def test_encryption_is_randomised(key) -> None:
    public = key.public_key()
    assert crypto.encrypt_for(public, SECRET) != crypto.encrypt_for(public, SECRET)


def test_decrypt_with_the_wrong_key_is_a_crypto_error(key, other_key) -> None:
    ciphertext = crypto.encrypt_for(key.public_key(), SECRET)
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt_with(other_key, ciphertext)


@pytest.mark.parametrize("mangle", ["flip", "truncate", "empty"])
def test_decrypt_of_damaged_ciphertext_is_a_crypto_error(key, mangle: str) -> None:
    ciphertext = crypto.encrypt_for(key.public_key(), SECRET)
    damaged = {
        "flip": ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]),
        "truncate": ciphertext[:-1],
        "empty": b"",
    }[mangle]
    with pytest.raises(crypto.CryptoError):
        crypto.decrypt_with(key, damaged)


# --- signatures --------------------------------------------------------------------------------


def test_signature_verifies(key) -> None:
    signature = crypto.sign(key, b"message")
    assert len(signature) == crypto.signature_size(key) == 256
    assert crypto.signature_is_valid(key.public_key(), signature, b"message")


def test_signature_over_another_message_is_invalid(key) -> None:
    signature = crypto.sign(key, b"message")
    assert not crypto.signature_is_valid(key.public_key(), signature, b"messagf")


def test_signature_under_another_key_is_invalid(key, other_key) -> None:
    signature = crypto.sign(other_key, b"message")
    assert not crypto.signature_is_valid(key.public_key(), signature, b"message")


@pytest.mark.parametrize("signature", [b"", b"\x00" * 256, b"\xff" * 256, b"\x01" * 512])
def test_garbage_signature_is_invalid_not_an_exception(key, signature: bytes) -> None:
    assert not crypto.signature_is_valid(key.public_key(), signature, b"message")


def test_digest_is_sha256() -> None:
    assert crypto.digest(b"abc") == hashlib.sha256(b"abc").digest()
    assert len(crypto.digest(b"")) == crypto.DIGEST_BYTES


# --- MACs --------------------------------------------------------------------------------------


def test_mac_is_16_bytes_and_verifies() -> None:
    tag = crypto.mac(KEY, b"label", b"message")
    assert len(tag) == crypto.MAC_BYTES == 16
    assert crypto.mac_is_valid(KEY, b"label", b"message", tag)


def test_mac_separates_domains_by_label() -> None:
    assert crypto.mac(KEY, b"smartlock/v1/ble-token", b"m") != crypto.mac(
        KEY, b"smartlock/v1/key-ack", b"m"
    )
    # the 0x00 separator keeps label and message apart
    assert crypto.mac(KEY, b"ab", b"c") != crypto.mac(KEY, b"a", b"bc")


def test_mac_depends_on_the_key() -> None:
    assert crypto.mac(KEY, b"label", b"m") != crypto.mac(b"\x43" * 32, b"label", b"m")


def test_mac_is_invalid_after_any_one_bit_change() -> None:
    message = b"lock1|key|counter"
    tag = crypto.mac(KEY, b"label", message)
    for bit in range(8 * len(message)):
        changed = bytearray(message)
        changed[bit // 8] ^= 1 << (bit % 8)
        assert not crypto.mac_is_valid(KEY, b"label", bytes(changed), tag), f"message bit {bit}"
    for bit in range(8 * len(tag)):
        changed = bytearray(tag)
        changed[bit // 8] ^= 1 << (bit % 8)
        assert not crypto.mac_is_valid(KEY, b"label", message, bytes(changed)), f"tag bit {bit}"


def test_truncated_mac_is_invalid() -> None:
    tag = crypto.mac(KEY, b"label", b"m")
    assert not crypto.mac_is_valid(KEY, b"label", b"m", tag[:-1])
    assert not crypto.mac_is_valid(KEY, b"label", b"m", b"")


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_mac_key_must_be_32_bytes(size: int) -> None:
    with pytest.raises(crypto.CryptoError):
        crypto.mac(b"\x00" * size, b"label", b"m")


def test_random_bytes_have_the_requested_size() -> None:
    assert len(crypto.random_bytes(16)) == 16
    assert crypto.random_bytes(32) != crypto.random_bytes(32)


# --- site PKI ---------------------------------------------------------------------------------


def test_certificate_authority_is_self_signed_ca(ca) -> None:
    cert = _cert(ca)
    cert.verify_directly_issued_by(cert)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca
    assert constraints.path_length == 0
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.not_valid_before_utc <= NOW < cert.not_valid_after_utc


def test_server_certificate_chains_to_the_ca_and_names_its_hosts(ca) -> None:
    hosts = ["broker.local", "localhost", "127.0.0.1", "::1"]
    server = crypto.make_server_certificate(ca, hosts, now=NOW)
    cert = _cert(server)
    cert.verify_directly_issued_by(_cert(ca))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.local", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert cert.not_valid_before_utc <= NOW < cert.not_valid_after_utc


def test_server_certificate_key_matches_its_certificate(ca) -> None:
    server = crypto.make_server_certificate(ca, ["broker.local"], now=NOW)
    key = serialization.load_pem_private_key(server.key_pem, password=None)
    assert key.public_key() == _cert(server).public_key()


def test_server_certificate_does_not_verify_under_another_ca(ca) -> None:
    server = crypto.make_server_certificate(ca, ["broker.local"], now=NOW)
    other_ca = crypto.make_certificate_authority("home", now=NOW)  # same name, other key
    with pytest.raises(InvalidSignature):
        _cert(server).verify_directly_issued_by(_cert(other_ca))


def test_server_certificate_needs_an_ec_ca_key(ca, key) -> None:
    rsa_ca = crypto.CertifiedKey(crypto.private_key_to_pem(key), ca.cert_pem)
    with pytest.raises(crypto.CryptoError):
        crypto.make_server_certificate(rsa_ca, ["broker.local"], now=NOW)


# --- key derivation and sealing (remote commands) ---------------------------------------------

NONCE = b"\x0c" * 12


def test_derived_key_is_32_bytes_and_deterministic() -> None:
    derived = crypto.derive_key(SECRET, b"label", b"context")
    assert len(derived) == 32
    assert crypto.derive_key(SECRET, b"label", b"context") == derived
    assert derived != SECRET


@pytest.mark.parametrize(
    ("master", "label", "context"),
    [
        (KEY, b"label", b"context"),
        (SECRET, b"other-label", b"context"),
        (SECRET, b"label", b"other-context"),
        (SECRET, b"label", b""),
    ],
    ids=["master", "label", "context", "empty-context"],
)
def test_derived_keys_differ_by_master_label_and_context(
    master: bytes, label: bytes, context: bytes
) -> None:
    assert crypto.derive_key(master, label, context) != crypto.derive_key(
        SECRET, b"label", b"context"
    )


def test_derivation_separates_label_from_context() -> None:
    assert crypto.derive_key(SECRET, b"ab", b"c") != crypto.derive_key(SECRET, b"a", b"bc")


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_derivation_needs_a_32_byte_master(size: int) -> None:
    with pytest.raises(crypto.CryptoError):
        crypto.derive_key(b"\x00" * size, b"label", b"context")


def test_sealed_message_opens_to_its_plaintext() -> None:
    sealed = crypto.seal(KEY, NONCE, b"unlock now", b"associated")
    assert len(sealed) == len(b"unlock now") + 16  # ciphertext and a 16-byte tag
    assert b"unlock now" not in sealed
    assert crypto.open_sealed(KEY, NONCE, sealed, b"associated") == b"unlock now"


def test_empty_plaintext_seals_to_a_bare_tag() -> None:
    sealed = crypto.seal(KEY, NONCE, b"", b"associated")
    assert len(sealed) == 16
    assert crypto.open_sealed(KEY, NONCE, sealed, b"associated") == b""


def test_sealed_message_does_not_open_after_any_one_bit_change() -> None:
    sealed = crypto.seal(KEY, NONCE, b"unlock now", b"associated")
    for bit in range(8 * len(sealed)):
        changed = bytearray(sealed)
        changed[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(crypto.CryptoError):
            crypto.open_sealed(KEY, NONCE, bytes(changed), b"associated")


@pytest.mark.parametrize(
    ("key", "nonce", "associated"),
    [
        (b"\x43" * 32, NONCE, b"associated"),
        (KEY, b"\x0d" * 12, b"associated"),
        (KEY, NONCE, b"associatee"),
        (KEY, NONCE, b""),
    ],
    ids=["key", "nonce", "associated-data", "no-associated-data"],
)
def test_sealed_message_opens_only_with_its_key_nonce_and_associated_data(
    key: bytes, nonce: bytes, associated: bytes
) -> None:
    sealed = crypto.seal(KEY, NONCE, b"unlock now", b"associated")
    with pytest.raises(crypto.CryptoError):
        crypto.open_sealed(key, nonce, sealed, associated)


@pytest.mark.parametrize("size", [0, 15])
def test_truncated_sealed_message_does_not_open(size: int) -> None:
    sealed = crypto.seal(KEY, NONCE, b"unlock now", b"associated")
    with pytest.raises(crypto.CryptoError):
        crypto.open_sealed(KEY, NONCE, sealed[:size], b"associated")


@pytest.mark.parametrize(
    ("key", "nonce"),
    [(KEY[:31], NONCE), (KEY + b"\x00", NONCE), (KEY, NONCE[:11]), (KEY, NONCE + b"\x00")],
    ids=["short-key", "long-key", "short-nonce", "long-nonce"],
)
def test_seal_and_open_refuse_wrong_key_or_nonce_sizes(key: bytes, nonce: bytes) -> None:
    with pytest.raises(crypto.CryptoError):
        crypto.seal(key, nonce, b"m", b"a")
    with pytest.raises(crypto.CryptoError):
        crypto.open_sealed(key, nonce, b"\x00" * 17, b"a")
