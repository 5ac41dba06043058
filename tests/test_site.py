"""smartlock.site: provisioning a site directory and loading it back.

One site is provisioned per module (RSA key generation is slow) and only read by the tests;
tests that need to write get a fresh directory of their own.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import pwd
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from smartlock.broker import BROKER_USER, free_port
from smartlock.core.errors import ConfigError
from smartlock.core.issuance import MAX_KEY_TTL_S
from smartlock.site import Site, provision_site, validate_site_spec, write_private

LOCKS = ["lock_01", "lock_02"]
GUESTS = ["guest_01", "guest_02"]
GRANTS = [("guest_01", "lock_01"), ("guest_02", "lock_02")]
USERS = ["backend", *LOCKS, *GUESTS]
BROKER_SHARED_FILES = ["broker.key", "passwd", "acl", "mosquitto.conf"]


def new_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="smartlock-test-"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    root = new_dir()
    yield provision_site(
        root,
        locks=LOCKS,
        guests=GUESTS,
        grants=GRANTS,
        broker_host="127.0.0.1",
        broker_port=free_port(),
        session_ttl_s=600,
    )
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_dir() -> Iterator[Path]:
    root = new_dir()
    yield root
    shutil.rmtree(root, ignore_errors=True)


def provision_small(root: Path, *, force: bool = False, locks: list[str] | None = None) -> Site:
    """The cheapest complete site: the backend and one lock (two RSA keys)."""
    return provision_site(
        root,
        locks=locks or ["lock_01"],
        guests=[],
        grants=[],
        broker_host="127.0.0.1",
        broker_port=18883,
        force=force,
    )


# --- file permissions -------------------------------------------------------------------------


def private_key_files(site: Site) -> list[Path]:
    return [
        site.root / "ca" / "ca.key",
        site.root / "backend" / "backend.key",
        *(site.root / "locks" / lock / "lock.key" for lock in LOCKS),
        *(site.root / "guests" / guest / "guest.key" for guest in GUESTS),
    ]


def test_every_private_key_is_readable_by_its_owner_only(site: Site) -> None:
    files = private_key_files(site)
    assert all(path.is_file() for path in files)
    assert {path: oct(mode(path)) for path in files} == dict.fromkeys(files, "0o600")


def test_every_password_file_is_readable_by_its_owner_only(site: Site) -> None:
    files = [site.identity_dir(user) / "password" for user in USERS]
    assert all(path.is_file() for path in files)
    assert {path: oct(mode(path)) for path in files} == dict.fromkeys(files, "0o600")


def test_identity_and_ca_directories_are_closed_to_group_and_others(site: Site) -> None:
    dirs = [site.root / "ca", *(site.identity_dir(user) for user in USERS)]
    assert {path: oct(mode(path)) for path in dirs} == dict.fromkeys(dirs, "0o700")


def test_broker_files_are_readable_by_the_broker_group_only(site: Site) -> None:
    files = [site.broker_dir / name for name in BROKER_SHARED_FILES]
    assert {path: oct(mode(path)) for path in files} == dict.fromkeys(files, "0o640")


def test_broker_files_belong_to_the_group_the_broker_drops_to(site: Site) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root hands the broker's files to the 'mosquitto' group")
    gid = pwd.getpwnam(BROKER_USER).pw_gid
    files = [site.broker_dir / name for name in BROKER_SHARED_FILES]
    assert {path: path.stat().st_gid for path in files} == dict.fromkeys(files, gid)


# --- the broker's password file -----------------------------------------------------------------


def passwd_entries(site: Site) -> dict[str, str]:
    lines = (site.broker_dir / "passwd").read_text().splitlines()
    entries = dict(line.split(":", 1) for line in lines)
    assert len(entries) == len(lines), "a user appears twice in the password file"
    return entries


def test_password_file_has_one_line_per_broker_user(site: Site) -> None:
    lines = (site.broker_dir / "passwd").read_text().splitlines()
    assert sorted(line.split(":", 1)[0] for line in lines) == sorted(USERS)


def test_password_file_holds_hashes_never_the_plaintext_passwords(site: Site) -> None:
    text = (site.broker_dir / "passwd").read_text()
    for user, hashed in passwd_entries(site).items():
        assert hashed.startswith(("$7$", "$6$")), f"{user}: {hashed[:4]}..."
        password = site.credentials(user).password
        assert len(password) >= 32
        assert password not in text


def _mosquitto_hash_matches(hashed: str, password: str) -> bool:
    """Check a ``$7$`` (PBKDF2-SHA512) or ``$6$`` (salted SHA-512) Mosquitto hash."""
    fields = hashed.split("$")
    if fields[1] == "7":
        _, _, iterations, salt, digest = fields
        computed = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt), int(iterations)
        )
    else:
        _, _, salt, digest = fields
        computed = hashlib.sha512(password.encode() + base64.b64decode(salt)).digest()
    return computed == base64.b64decode(digest)


def test_each_password_hash_verifies_the_identitys_own_password(site: Site) -> None:
    entries = passwd_entries(site)
    for user in USERS:
        assert _mosquitto_hash_matches(entries[user], site.credentials(user).password), user
    # and not another user's password: the hashes are bound to the right identity
    assert not _mosquitto_hash_matches(entries["lock_01"], site.credentials("lock_02").password)


def test_credentials_are_the_password_file_of_each_identity(site: Site) -> None:
    for user in USERS:
        stored = (site.identity_dir(user) / "password").read_text()
        assert site.credentials(user).username == user
        assert site.credentials(user).password == stored.strip()
    assert len({site.credentials(user).password for user in USERS}) == len(USERS)


# --- keys and certificates ------------------------------------------------------------------


def test_each_public_key_file_belongs_to_the_identitys_private_key(site: Site) -> None:
    for user in USERS:
        assert site.public_key(user).public_numbers() == (
            site.private_key(user).public_key().public_numbers()
        ), user
    assert (
        site.public_key("lock_01").public_numbers() != site.public_key("lock_02").public_numbers()
    )


def test_broker_certificate_is_issued_by_the_site_ca(site: Site) -> None:
    ca = x509.load_pem_x509_certificate(site.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate((site.broker_dir / "broker.crt").read_bytes())
    server.verify_directly_issued_by(ca)  # raises if the chain is broken
    assert server.issuer == ca.subject


def test_broker_certificate_names_localhost_and_loopback(site: Site) -> None:
    server = x509.load_pem_x509_certificate((site.broker_dir / "broker.crt").read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)


def test_ca_key_on_disk_is_the_key_of_the_ca_certificate(site: Site) -> None:
    ca = x509.load_pem_x509_certificate(site.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(
        (site.root / "ca" / "ca.key").read_bytes(), password=None
    )
    assert key.public_key() == ca.public_key()


# --- loading ------------------------------------------------------------------------------------


def test_load_returns_the_site_that_provisioning_wrote(site: Site) -> None:
    loaded = Site.load(site.root)
    assert loaded == site
    assert loaded.locks == tuple(LOCKS)
    assert loaded.guests == tuple(GUESTS)
    assert loaded.grants == tuple(GRANTS)
    assert loaded.session_ttl_s == 600


def test_load_of_a_missing_directory_explains_what_a_site_is(fresh_dir: Path) -> None:
    missing = fresh_dir / "nowhere"
    with pytest.raises(ConfigError, match="not a smartlock site") as raised:
        Site.load(missing)
    assert "smartlock init" in str(raised.value)
    assert "Traceback" not in str(raised.value)


def _damage(site: Site, root: Path, change: object) -> None:
    data = json.loads(site.to_json())
    if callable(change):
        change(data)
        text = json.dumps(data)
    else:
        text = str(change)
    (root / "site.json").write_text(text)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param("{not json", r"site\.json is damaged: JSONDecodeError", id="not-json"),
        pytest.param(
            lambda d: d.update(version=2), r"unsupported site version 2", id="wrong-version"
        ),
        pytest.param(
            lambda d: d.pop("broker"), r"site\.json is damaged: KeyError: 'broker'", id="no-broker"
        ),
        pytest.param(
            lambda d: d.update(locks=["Bad Lock"]),
            r"site\.json is damaged: ValueError: invalid lock id 'Bad Lock'",
            id="bad-lock-id",
        ),
        pytest.param(
            lambda d: d["broker"].update(port="eighty"),
            r"site\.json is damaged: ValueError",
            id="port-not-a-number",
        ),
    ],
)
def test_load_of_a_damaged_site_json_is_a_readable_config_error(
    site: Site, fresh_dir: Path, change: object, message: str
) -> None:
    _damage(site, fresh_dir, change)
    with pytest.raises(ConfigError, match=message) as raised:
        Site.load(fresh_dir)
    assert "Traceback" not in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("text", ["[]", "null", '"site"'])
def test_load_of_a_site_json_that_is_not_an_object_is_a_config_error(
    fresh_dir: Path, text: str
) -> None:
    (fresh_dir / "site.json").write_text(text)
    with pytest.raises(ConfigError, match="damaged"):
        Site.load(fresh_dir)


@pytest.mark.parametrize("reader", ["credentials", "private_key", "public_key"])
def test_reading_an_unknown_identity_is_a_config_error(site: Site, reader: str) -> None:
    with pytest.raises(ConfigError, match="no lock or guest 'lock_99'"):
        getattr(site, reader)("lock_99")


def test_missing_key_file_is_a_config_error_not_a_file_error(fresh_dir: Path) -> None:
    small = provision_small(fresh_dir)
    small.private_key_path("lock_01").unlink()
    with pytest.raises(ConfigError, match=r"missing .*lock\.key"):
        small.private_key("lock_01")


# --- provisioning over an existing directory ---------------------------------------------------


def test_provisioning_into_a_non_empty_directory_needs_force(fresh_dir: Path) -> None:
    (fresh_dir / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="--force"):
        provision_small(fresh_dir)
    assert sorted(p.name for p in fresh_dir.iterdir()) == ["notes.txt"]


def test_force_replaces_an_existing_site_with_a_new_one(fresh_dir: Path) -> None:
    first = provision_small(fresh_dir)
    old_ca = first.ca_cert.read_bytes()
    old_lock_key = first.private_key_path("lock_01").read_bytes()
    (fresh_dir / "stale.txt").write_text("left over")

    with pytest.raises(ConfigError, match="--force"):
        provision_small(fresh_dir, locks=["front_door"])
    assert first.ca_cert.read_bytes() == old_ca  # refused without touching anything

    second = provision_small(fresh_dir, force=True, locks=["front_door"])
    assert second.ca_cert.read_bytes() != old_ca
    assert not (fresh_dir / "stale.txt").exists()
    assert not (fresh_dir / "locks" / "lock_01").exists()
    assert second.private_key_path("front_door").read_bytes() != old_lock_key
    assert Site.load(fresh_dir).locks == ("front_door",)


def test_force_refuses_to_wipe_a_directory_that_holds_no_site(fresh_dir: Path) -> None:
    (fresh_dir / "thesis.tex").write_text("years of work")
    (fresh_dir / "figures").mkdir()
    with pytest.raises(ConfigError, match="no site; refusing to delete"):
        provision_small(fresh_dir, force=True)
    assert (fresh_dir / "thesis.tex").read_text() == "years of work"
    assert (fresh_dir / "figures").is_dir()


# --- the site specification -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locks", "guests", "grants", "ttl", "message"),
    [
        pytest.param(["Lock 1"], [], [], 300, "invalid lock id 'Lock 1'", id="space-upper"),
        pytest.param([""], [], [], 300, "invalid lock id ''", id="empty"),
        pytest.param(["a" * 33], [], [], 300, f"invalid lock id '{'a' * 33}'", id="33-chars"),
        pytest.param(["lock1\n"], [], [], 300, "invalid lock id 'lock1\\n'", id="newline"),
        pytest.param(["lock_01"], ["Guest!"], [], 300, "invalid guest id 'Guest!'", id="guest"),
        pytest.param(["door"], ["door"], [], 300, "must all be different", id="lock=guest"),
        pytest.param(["door", "door"], [], [], 300, "must all be different", id="two-locks"),
        pytest.param(["backend"], [], [], 300, "reserved: backend", id="reserved-backend"),
        pytest.param(["lock_01"], ["broker"], [], 300, "reserved: broker", id="reserved-broker"),
        pytest.param(
            ["lock_01"], ["g1"], [("nobody", "lock_01")], 300, "unknown guest 'nobody'", id="g?"
        ),
        pytest.param(["lock_01"], ["g1"], [("g1", "shed")], 300, "unknown lock 'shed'", id="l?"),
        pytest.param([], ["g1"], [], 300, "at least one lock", id="no-locks"),
        pytest.param(["lock_01"], [], [], 0, "1..86400 seconds", id="ttl-0"),
        pytest.param(["lock_01"], [], [], -5, "1..86400 seconds", id="ttl-negative"),
        pytest.param(["lock_01"], [], [], MAX_KEY_TTL_S + 1, "1..86400", id="ttl-86401"),
    ],
)
def test_an_impossible_site_is_refused_before_anything_is_written(
    fresh_dir: Path,
    locks: list[str],
    guests: list[str],
    grants: list[tuple[str, str]],
    ttl: int,
    message: str,
) -> None:
    root = fresh_dir / "site"
    with pytest.raises(ValueError, match=re.escape(message)):
        provision_site(
            root,
            locks=locks,
            guests=guests,
            grants=grants,
            broker_host="127.0.0.1",
            broker_port=18883,
            session_ttl_s=ttl,
        )
    assert not root.exists()


def test_longest_id_and_longest_key_lifetime_are_accepted() -> None:
    validate_site_spec(["a" * 32], ["0-guest_x"], [("0-guest_x", "a" * 32)], MAX_KEY_TTL_S)
    validate_site_spec(["l"], [], [], 1)


def test_write_private_syncs_the_file_and_its_directory(monkeypatch) -> None:
    root = Path(tempfile.mkdtemp(prefix="smartlock-test-"))
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    try:
        write_private(root / "state.json", b"{}")
        assert synced == ["file", "dir"]
        assert (root / "state.json").read_bytes() == b"{}"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_write_private_leaves_no_temporary_file_when_it_fails(monkeypatch) -> None:
    root = Path(tempfile.mkdtemp(prefix="smartlock-test-"))

    def failing_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    try:
        (root / "state.json").write_bytes(b"old")
        with pytest.raises(OSError, match="No space"):
            write_private(root / "state.json", b"new")
        assert sorted(p.name for p in root.iterdir()) == ["state.json"]
        assert (root / "state.json").read_bytes() == b"old"
    finally:
        shutil.rmtree(root, ignore_errors=True)
