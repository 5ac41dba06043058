"""smartlock.crypto: the recipe layer (RSA-OAEP, RSA-PSS, labelled HMAC, the site PKI, dashboard
passwords)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import subprocess
import sys

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


# --- passwords (the dashboard's sign-in) ------------------------------------------------------

FAST_N = 2**10  # the tests' scrypt cost; one test below keeps the default


@pytest.fixture(scope="module")
def stored() -> str:
    return crypto.hash_password("correct horse battery staple", n=FAST_N)


def test_a_password_hash_is_self_describing_scrypt_with_a_16_byte_salt(stored: str) -> None:
    scheme, n, r, p, salt, derived = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(FAST_N), "8", "1")
    assert len(base64.urlsafe_b64decode(salt + "==")) == 16
    assert len(base64.urlsafe_b64decode(derived + "=")) == 32
    assert "correct horse" not in stored


def test_the_default_cost_is_n_2_to_the_15_and_still_verifies() -> None:
    hashed = crypto.hash_password("correct horse battery staple")
    assert hashed.split("$")[1] == str(2**15) == str(crypto.SCRYPT_N)
    assert crypto.password_matches("correct horse battery staple", hashed)
    assert not crypto.password_matches("correct horse battery stapler", hashed)


def test_the_hash_is_the_scrypt_of_the_password_under_its_salt(stored: str) -> None:
    _, n, r, p, salt, derived = stored.split("$")
    expected = hashlib.scrypt(
        b"correct horse battery staple",
        salt=base64.urlsafe_b64decode(salt + "=="),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=32,
    )
    assert base64.urlsafe_b64decode(derived + "=") == expected


def test_the_right_password_matches(stored: str) -> None:
    assert crypto.password_matches("correct horse battery staple", stored)


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery stapl",
        "correct horse battery staple ",
        "Correct horse battery staple",
        "",
        "\x00correct horse battery staple",
    ],
    ids=["shorter", "trailing-space", "capital", "empty", "leading-nul"],
)
def test_any_other_password_does_not_match(stored: str, password: str) -> None:
    assert not crypto.password_matches(password, stored)


def test_two_hashes_of_one_password_differ_but_both_match() -> None:
    first = crypto.hash_password("same password", n=FAST_N)
    second = crypto.hash_password("same password", n=FAST_N)
    assert first != second
    assert first.split("$")[4] != second.split("$")[4]  # the salts differ
    assert crypto.password_matches("same password", first)
    assert crypto.password_matches("same password", second)


def test_non_ascii_passwords_are_hashed_as_utf8() -> None:
    hashed = crypto.hash_password("pässwörd ✓ 🔒", n=FAST_N)
    assert crypto.password_matches("pässwörd ✓ 🔒", hashed)
    assert not crypto.password_matches("passwort ✓ 🔒", hashed)


def _replace_field(stored: str, index: int, value: str) -> str:
    fields = stored.split("$")
    fields[index] = value
    return "$".join(fields)


def _flip_last_char(text: str) -> str:
    return text[:-1] + ("A" if text[-1] != "A" else "B")


DAMAGED: dict[str, object] = {
    "empty": "",
    "plain-text": "correct horse battery staple",
    "only-dollars": "$$$$$",
    "mosquitto-pbkdf2": "$7$101$c2FsdHNhbHQ$aGFzaGhhc2g",
    "bcrypt": "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
    "other-scheme": lambda s: _replace_field(s, 0, "pbkdf2"),
    "upper-case-scheme": lambda s: _replace_field(s, 0, "SCRYPT"),
    "too-few-fields": lambda s: s.rsplit("$", 1)[0],
    "extra-field": lambda s: s + "$x",
    "derived-changed": _flip_last_char,
    "salt-changed": lambda s: _replace_field(s, 4, _flip_last_char(s.split("$")[4])),
    "derived-truncated": lambda s: s[:-4],
    "derived-empty": lambda s: _replace_field(s, 5, ""),
    "n-changed": lambda s: _replace_field(s, 1, str(FAST_N * 2)),
    "n-not-a-power-of-two": lambda s: _replace_field(s, 1, "1000"),
    "n-one": lambda s: _replace_field(s, 1, "1"),
    "n-zero": lambda s: _replace_field(s, 1, "0"),
    "n-negative": lambda s: _replace_field(s, 1, "-1024"),
    "n-above-the-cap": lambda s: _replace_field(s, 1, str(2**21)),
    "n-not-a-number": lambda s: _replace_field(s, 1, "many"),
    "n-huge": lambda s: _replace_field(s, 1, "9" * 5000),
    "r-zero": lambda s: _replace_field(s, 2, "0"),
    "r-negative": lambda s: _replace_field(s, 2, "-8"),
    "r-above-the-cap": lambda s: _replace_field(s, 2, "65"),
    "p-zero": lambda s: _replace_field(s, 3, "0"),
    "p-above-the-cap": lambda s: _replace_field(s, 3, "17"),
    "salt-not-base64": lambda s: _replace_field(s, 4, "A"),
    "salt-not-ascii": lambda s: _replace_field(s, 4, "sälz"),
    "derived-not-ascii": lambda s: _replace_field(s, 5, "ħash"),
}


@pytest.mark.parametrize("damage", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_or_foreign_stored_hash_never_matches_and_never_raises(
    stored: str, damage: object
) -> None:
    damaged = damage(stored) if callable(damage) else damage
    assert isinstance(damaged, str)
    assert damaged != stored
    assert not crypto.password_matches("correct horse battery staple", damaged)


def test_a_hash_made_for_another_password_does_not_match(stored: str) -> None:
    other = crypto.hash_password("another password", n=FAST_N)
    assert not crypto.password_matches("correct horse battery staple", other)
    assert not crypto.password_matches("another password", stored)


def test_a_password_that_cannot_be_encoded_does_not_match_and_does_not_raise(stored: str) -> None:
    assert not crypto.password_matches("\ud800", stored)  # a lone surrogate has no UTF-8


_PROBE = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
from smartlock import crypto
print(crypto.password_matches("pw", sys.argv[1]))
"""


def test_a_stored_hash_asking_for_more_memory_than_there_is_does_not_raise() -> None:
    """On a backend with less memory than the damaged hash asks for (a Raspberry Pi, here a
    3 GiB address-space limit) the check must still just say "no match"."""
    damaged = "scrypt$1048576$64$16$c2FsdHNhbHRzYWx0c2FsdA$" + "A" * 43
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, damaged],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr[-300:]


def test_token_digest_is_the_hex_sha256_of_the_token() -> None:
    assert crypto.token_digest("abc") == hashlib.sha256(b"abc").hexdigest()
    assert len(crypto.token_digest("")) == 64
    assert crypto.token_digest("abc") != crypto.token_digest("abd")
    assert "abc" not in crypto.token_digest("abc")


# --- the dashboard's second factor (TOTP) -----------------------------------------------------

TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
TOTP_AT = 1_800_000_015.0  # 15 s into step 60_000_000
TOTP_STEP = 60_000_000


def _totp(step: int) -> str:
    import pyotp

    return pyotp.TOTP(TOTP_SECRET).at(step * 30)


def test_a_new_totp_secret_is_160_random_bits_of_base32() -> None:
    first, second = crypto.new_totp_secret(), crypto.new_totp_secret()

    assert first != second
    assert len(first) == 32
    assert len(base64.b32decode(first)) == 20


def test_the_provisioning_uri_names_the_account_and_issuer() -> None:
    import pyotp

    uri = crypto.totp_provisioning_uri(TOTP_SECRET, account="olivia", issuer="smartlock home")

    assert uri.startswith("otpauth://totp/smartlock%20home:olivia?")
    parsed = pyotp.parse_uri(uri)
    assert isinstance(parsed, pyotp.TOTP)
    assert (parsed.secret, parsed.issuer, parsed.name) == (TOTP_SECRET, "smartlock home", "olivia")
    assert (parsed.digits, parsed.interval) == (6, 30)


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_code_within_one_step_names_its_step(offset: int) -> None:
    step = TOTP_STEP + offset

    assert crypto.totp_matching_step(TOTP_SECRET, _totp(step), at=TOTP_AT) == step


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_a_code_further_away_does_not_match(offset: int) -> None:
    assert crypto.totp_matching_step(TOTP_SECRET, _totp(TOTP_STEP + offset), at=TOTP_AT) is None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "\x00" * 6])
def test_a_code_that_is_not_six_digits_never_matches_and_never_raises(code: str) -> None:
    assert crypto.totp_matching_step(TOTP_SECRET, code, at=TOTP_AT) is None


def test_a_code_of_another_secret_does_not_match() -> None:
    import pyotp

    other = pyotp.TOTP("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").at(TOTP_AT)
    assert other not in {_totp(TOTP_STEP + offset) for offset in (-1, 0, 1)}

    assert crypto.totp_matching_step(TOTP_SECRET, other, at=TOTP_AT) is None


def test_a_clock_before_1970_matches_nothing() -> None:
    assert crypto.totp_matching_step(TOTP_SECRET, _totp(0), at=-100.0) is None


def test_a_sealed_totp_secret_opens_for_its_user_under_its_key() -> None:
    nonce, sealed = crypto.seal_totp_secret(SECRET, "olivia", TOTP_SECRET)

    assert len(nonce) == crypto.NONCE_BYTES
    assert TOTP_SECRET.encode() not in sealed
    assert crypto.open_totp_secret(SECRET, "olivia", nonce, sealed) == TOTP_SECRET


def test_each_seal_of_a_totp_secret_has_its_own_nonce() -> None:
    first = crypto.seal_totp_secret(SECRET, "olivia", TOTP_SECRET)
    second = crypto.seal_totp_secret(SECRET, "olivia", TOTP_SECRET)

    assert first[0] != second[0]
    assert first[1] != second[1]


def test_the_totp_key_is_derived_from_the_audit_key_under_the_totp_label() -> None:
    nonce, sealed = crypto.seal_totp_secret(SECRET, "olivia", TOTP_SECRET)
    key = crypto.derive_key(SECRET, b"totp", b"")

    opened = crypto.open_sealed(key, nonce, sealed, b"smartlock totp secret\x00olivia")

    assert opened == TOTP_SECRET.encode()


@pytest.mark.parametrize(
    ("audit_key", "user", "change"),
    [
        (bytes(32), "olivia", None),
        (SECRET, "oliver", None),
        (SECRET, "olivia", "nonce"),
        (SECRET, "olivia", "sealed"),
    ],
    ids=["other-audit-key", "other-user", "altered-nonce", "altered-ciphertext"],
)
def test_a_sealed_totp_secret_does_not_open_otherwise(
    audit_key: bytes, user: str, change: str | None
) -> None:
    nonce, sealed = crypto.seal_totp_secret(SECRET, "olivia", TOTP_SECRET)
    if change == "nonce":
        nonce = bytes([nonce[0] ^ 1]) + nonce[1:]
    if change == "sealed":
        sealed = sealed[:-1] + bytes([sealed[-1] ^ 1])

    with pytest.raises(crypto.CryptoError):
        crypto.open_totp_secret(audit_key, user, nonce, sealed)


# --- signatures under several trusted keys (a rotation's overlap) ------------------------------


@pytest.mark.parametrize("signer", ["first", "second"])
def test_a_signature_by_any_key_of_a_tuple_is_valid(key, other_key, signer: str) -> None:
    signing_key = {"first": key, "second": other_key}[signer]
    signature = crypto.sign(signing_key, b"message")

    assert crypto.signature_is_valid(
        (key.public_key(), other_key.public_key()), signature, b"message"
    )


def test_a_signature_by_no_key_of_a_tuple_is_invalid(key, other_key, weak_key) -> None:
    signature = crypto.sign(weak_key, b"message")

    assert not crypto.signature_is_valid(
        (key.public_key(), other_key.public_key()), signature, b"message"
    )


def test_a_tuple_checks_the_message_too(key, other_key) -> None:
    signature = crypto.sign(other_key, b"message")

    assert not crypto.signature_is_valid(
        (key.public_key(), other_key.public_key()), signature, b"messagf"
    )


def test_an_empty_tuple_of_keys_validates_no_signature(key) -> None:
    assert not crypto.signature_is_valid((), crypto.sign(key, b"message"), b"message")


# --- public keys in DER (the backend's key notices) ------------------------------------------


def test_public_key_der_round_trips(key) -> None:
    der = crypto.public_key_to_der(key.public_key())

    loaded = crypto.load_public_key_der(der)

    assert loaded.public_numbers() == key.public_key().public_numbers()
    assert crypto.public_key_to_der(loaded) == der


def test_public_key_der_is_the_der_of_its_pem(key) -> None:
    pem = crypto.public_key_to_pem(key.public_key())
    body = b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))

    assert crypto.public_key_to_der(key.public_key()) == base64.b64decode(body)


@pytest.mark.parametrize(
    "der",
    [b"", b"garbage", b"\x30\x03\x02\x01\x01"],
    ids=["empty", "garbage", "der-but-not-a-key"],
)
def test_load_public_key_der_of_garbage_is_a_crypto_error(der: bytes) -> None:
    with pytest.raises(crypto.CryptoError):
        crypto.load_public_key_der(der)


def test_load_public_key_der_refuses_a_truncated_key(key) -> None:
    der = crypto.public_key_to_der(key.public_key())

    with pytest.raises(crypto.CryptoError):
        crypto.load_public_key_der(der[:-1])


def test_load_public_key_der_refuses_an_rsa_key_under_2048_bits(weak_key) -> None:
    der = weak_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    with pytest.raises(crypto.CryptoError):
        crypto.load_public_key_der(der)


def test_load_public_key_der_refuses_a_non_rsa_key() -> None:
    der = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    with pytest.raises(crypto.CryptoError):
        crypto.load_public_key_der(der)


def test_load_public_key_der_does_not_take_a_private_key(key) -> None:
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

    with pytest.raises(crypto.CryptoError):
        crypto.load_public_key_der(der)
