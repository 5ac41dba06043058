"""smartlock.site: provisioning a site directory, loading it back, adding or removing an identity
afterwards, enrolling a device's own key, and the Home Assistant user.

One site is provisioned per module (RSA key generation is slow) and only read by the tests;
tests that change a site work on a copy of it (``shutil.copytree``), and tests that provision
get a fresh directory of their own.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import ipaddress
import json
import os
import pwd
import re
import shutil
import stat
import tempfile
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from smartlock.broker import BROKER_USER, free_port, render_acl
from smartlock.core.errors import ConfigError
from smartlock.core.issuance import DEFAULT_KEY_TTL_S, MAX_KEY_TTL_S
from smartlock.site import (
    DEFAULT_COMMAND_WINDOW_S,
    DEFAULT_HEARTBEAT_S,
    RESERVED_IDS,
    SITE_VERSION,
    Site,
    add_identity,
    enroll_identity,
    provision_site,
    remove_identity,
    save_site,
    validate_site_spec,
    write_private,
)

LOCKS = ["lock_01", "lock_02"]
USERS = ["owner", "resident", "guest_01", "guest_02"]  # roles live in the store, not here
IDENTITIES = ["backend", *LOCKS, *USERS]
BROKER_SHARED_FILES = ["broker.key", "passwd", "acl", "mosquitto.conf"]
ZONE = "Europe/Paris"


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
        users=USERS,
        broker_host="127.0.0.1",
        broker_port=free_port(),
        session_ttl_s=600,
        heartbeat_s=15,
        timezone=ZONE,
    )
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_dir() -> Iterator[Path]:
    root = new_dir()
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def site_copy(site: Site, fresh_dir: Path) -> Site:
    """A copy of the module's site that the test may change (modes are copied too)."""
    shutil.copytree(site.root, fresh_dir / "site", symlinks=True)
    return Site.load(fresh_dir / "site")


def provision_small(
    root: Path, *, force: bool = False, locks: list[str] | None = None, **settings: Any
) -> Site:
    """The cheapest complete site: the backend and one lock (two RSA keys)."""
    return provision_site(
        root,
        locks=locks or ["lock_01"],
        users=[],
        broker_host="127.0.0.1",
        broker_port=18883,
        force=force,
        **settings,
    )


# --- file permissions -------------------------------------------------------------------------


def private_key_files(site: Site) -> list[Path]:
    return [
        site.root / "ca" / "ca.key",
        site.root / "backend" / "backend.key",
        *(site.root / "locks" / lock / "lock.key" for lock in LOCKS),
        *(site.root / "users" / user / "user.key" for user in USERS),
    ]


def test_every_private_key_is_readable_by_its_owner_only(site: Site) -> None:
    files = private_key_files(site)
    assert all(path.is_file() for path in files)
    assert {path: oct(mode(path)) for path in files} == dict.fromkeys(files, "0o600")


def test_private_key_paths_are_the_files_of_the_layout(site: Site) -> None:
    assert [site.private_key_path(x) for x in IDENTITIES] == private_key_files(site)[1:]
    assert site.public_key_path("backend") == site.root / "public" / "backend.pub"
    assert site.public_key_path("lock_01") == site.root / "public" / "locks" / "lock_01.pub"
    assert site.public_key_path("guest_01") == site.root / "public" / "users" / "guest_01.pub"


def test_every_password_file_is_readable_by_its_owner_only(site: Site) -> None:
    files = [site.identity_dir(identity) / "password" for identity in IDENTITIES]
    assert all(path.is_file() for path in files)
    assert {path: oct(mode(path)) for path in files} == dict.fromkeys(files, "0o600")


def test_identity_and_ca_directories_are_closed_to_group_and_others(site: Site) -> None:
    dirs = [site.root / "ca", *(site.identity_dir(identity) for identity in IDENTITIES)]
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


# --- the backend's secrets --------------------------------------------------------------------


def test_backend_secrets_are_private_distinct_32_byte_keys(site: Site) -> None:
    paths = [site.root / "backend" / "audit.key", site.root / "backend" / "command.key"]
    assert [site.audit_key_path, site.command_master_key_path] == paths
    assert {path: oct(mode(path)) for path in paths} == dict.fromkeys(paths, "0o600")
    audit, command = (site.secret(path) for path in paths)
    assert len(audit) == len(command) == 32
    assert audit != command


@pytest.mark.parametrize(
    ("content", "message"), [(b"short", "expected 32 bytes"), (None, "missing")]
)
def test_a_damaged_or_missing_secret_is_a_config_error(
    site_copy: Site, content: bytes | None, message: str
) -> None:
    if content is None:
        site_copy.audit_key_path.unlink()
    else:
        site_copy.audit_key_path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as raised:
        site_copy.secret(site_copy.audit_key_path)
    assert "audit.key" in str(raised.value)


# --- the broker's password file -----------------------------------------------------------------


def passwd_entries(site: Site) -> dict[str, str]:
    lines = (site.broker_dir / "passwd").read_text().splitlines()
    entries = dict(line.split(":", 1) for line in lines)
    assert len(entries) == len(lines), "a user appears twice in the password file"
    return entries


def test_password_file_has_one_line_per_broker_user(site: Site) -> None:
    lines = (site.broker_dir / "passwd").read_text().splitlines()
    assert sorted(line.split(":", 1)[0] for line in lines) == sorted(IDENTITIES)


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


def assert_every_hash_verifies_its_own_password(site: Site, identities: list[str]) -> None:
    entries = passwd_entries(site)
    assert sorted(entries) == sorted(identities)
    for identity in identities:
        assert _mosquitto_hash_matches(entries[identity], site.credentials(identity).password), (
            identity
        )


def test_each_password_hash_verifies_the_identitys_own_password(site: Site) -> None:
    assert_every_hash_verifies_its_own_password(site, IDENTITIES)
    # and not another identity's password: the hashes are bound to the right identity
    entries = passwd_entries(site)
    assert not _mosquitto_hash_matches(entries["lock_01"], site.credentials("lock_02").password)
    assert not _mosquitto_hash_matches(entries["owner"], site.credentials("guest_01").password)


def test_credentials_are_the_password_file_of_each_identity(site: Site) -> None:
    for identity in IDENTITIES:
        stored = (site.identity_dir(identity) / "password").read_text()
        assert site.credentials(identity).username == identity
        assert site.credentials(identity).password == stored.strip()
    assert len({site.credentials(x).password for x in IDENTITIES}) == len(IDENTITIES)


def test_credentials_never_show_the_password_in_their_repr(site: Site) -> None:
    credentials = site.credentials("guest_01")
    assert credentials.password not in repr(credentials)


# --- keys and certificates ------------------------------------------------------------------


def test_each_public_key_file_belongs_to_the_identitys_private_key(site: Site) -> None:
    for identity in IDENTITIES:
        assert site.public_key(identity).public_numbers() == (
            site.private_key(identity).public_key().public_numbers()
        ), identity
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


# --- site.json and loading ----------------------------------------------------------------------


def test_site_json_is_version_2_with_users_and_no_grants(site: Site) -> None:
    data = json.loads((site.root / "site.json").read_text())
    assert data["version"] == SITE_VERSION == 2
    assert data["locks"] == LOCKS
    assert data["users"] == USERS
    assert "guests" not in data
    assert "grants" not in data  # passes live in the store
    assert {key: data[key] for key in ("session_ttl_s", "heartbeat_s", "timezone")} == {
        "session_ttl_s": 600,
        "heartbeat_s": 15,
        "timezone": ZONE,
    }


def test_load_returns_the_site_that_provisioning_wrote(site: Site) -> None:
    loaded = Site.load(site.root)
    assert loaded == site
    assert loaded.locks == tuple(LOCKS)
    assert loaded.users == tuple(USERS)
    assert (loaded.session_ttl_s, loaded.heartbeat_s, loaded.timezone) == (600, 15, ZONE)
    assert loaded.zone == zoneinfo.ZoneInfo(ZONE)
    assert loaded.store_url is None
    assert (loaded.command_window_s, loaded.max_failures) == (DEFAULT_COMMAND_WINDOW_S, 3)
    assert (loaded.failure_window_s, loaded.lockout_s) == (300, 300)


def test_settings_missing_from_site_json_take_their_defaults(site: Site, fresh_dir: Path) -> None:
    data = json.loads(site.to_json())
    optional = ("session_ttl_s", "heartbeat_s", "command_window_s", "timezone", "store_url")
    for key in (*optional, "max_failures", "failure_window_s", "lockout_s"):
        del data[key]
    (fresh_dir / "site.json").write_text(json.dumps(data))
    loaded = Site.load(fresh_dir)
    assert loaded == Site(
        root=fresh_dir.resolve(),
        name=site.name,
        broker_host=site.broker_host,
        broker_port=site.broker_port,
        locks=site.locks,
        users=site.users,
    )
    assert (loaded.session_ttl_s, loaded.heartbeat_s) == (DEFAULT_KEY_TTL_S, DEFAULT_HEARTBEAT_S)
    assert (loaded.timezone, loaded.store_url) == ("UTC", None)


def test_database_url_is_the_override_else_site_json_else_sqlite_in_the_backend(
    site: Site,
) -> None:
    assert site.database_url() == f"sqlite:///{site.root / 'backend' / 'store.db'}"
    elsewhere = dataclasses.replace(site, store_url="postgresql://lock@db/site")
    assert elsewhere.database_url() == "postgresql://lock@db/site"
    assert elsewhere.database_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_load_of_a_missing_directory_explains_what_a_site_is(fresh_dir: Path) -> None:
    missing = fresh_dir / "nowhere"
    with pytest.raises(ConfigError, match="not a smartlock site") as raised:
        Site.load(missing)
    assert "smartlock init" in str(raised.value)
    assert "Traceback" not in str(raised.value)


def test_a_version_1_site_is_refused_with_advice_to_create_it_again(fresh_dir: Path) -> None:
    version_1 = {  # the layout before access control: guests and grants in site.json
        "version": 1,
        "name": "site",
        "broker": {"host": "127.0.0.1", "port": 8883},
        "locks": ["lock_01"],
        "guests": ["guest_01"],
        "grants": [["guest_01", "lock_01"]],
        "session_ttl_s": 300,
    }
    (fresh_dir / "site.json").write_text(json.dumps(version_1))
    with pytest.raises(ConfigError, match="unsupported site version 1") as raised:
        Site.load(fresh_dir)
    assert "create the site again with 'smartlock init'" in str(raised.value)
    assert "\n" not in str(raised.value)


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
            lambda d: d.update(version=3), r"unsupported site version 3", id="wrong-version"
        ),
        pytest.param(lambda d: d.pop("version"), r"unsupported site version None", id="no-version"),
        pytest.param(
            lambda d: d.pop("broker"), r"site\.json is damaged: KeyError: 'broker'", id="no-broker"
        ),
        pytest.param(
            lambda d: d.pop("users"), r"site\.json is damaged: KeyError: 'users'", id="no-users"
        ),
        pytest.param(
            lambda d: d.update(locks=["Bad Lock"]),
            r"site\.json is damaged: ValueError: invalid lock id 'Bad Lock'",
            id="bad-lock-id",
        ),
        pytest.param(
            lambda d: d.update(users=["Bad User"]),
            r"site\.json is damaged: ValueError: invalid user name 'Bad User'",
            id="bad-user-name",
        ),
        pytest.param(
            lambda d: d.update(users=["backend"]),
            r"site\.json is damaged: ValueError: these names are reserved: backend",
            id="reserved-user",
        ),
        pytest.param(
            lambda d: d.update(users=["lock_01"]), r"must all be different", id="user-is-a-lock"
        ),
        pytest.param(
            lambda d: d.update(session_ttl_s=MAX_KEY_TTL_S + 1), r"1\.\.86400", id="ttl-too-long"
        ),
        pytest.param(
            lambda d: d["broker"].update(port="eighty"),
            r"site\.json is damaged: ValueError",
            id="port-not-a-number",
        ),
        pytest.param(
            lambda d: d.update(timezone="Mars/Olympus"),
            r"unknown time zone 'Mars/Olympus'",
            id="unknown-time-zone",
        ),
        pytest.param(
            lambda d: d.update(timezone="../../etc/passwd"),
            r"unknown time zone '../../etc/passwd'",
            id="time-zone-path",
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


@pytest.mark.parametrize("reader", ["credentials", "private_key", "public_key", "identity_dir"])
def test_reading_an_unknown_identity_is_a_config_error(site: Site, reader: str) -> None:
    with pytest.raises(ConfigError, match="no lock or user 'lock_99'"):
        getattr(site, reader)("lock_99")


def test_missing_key_file_is_a_config_error_not_a_file_error(site_copy: Site) -> None:
    site_copy.private_key_path("lock_01").unlink()
    with pytest.raises(ConfigError, match=r"missing .*lock\.key"):
        site_copy.private_key("lock_01")
    site_copy.private_key_path("guest_01").unlink()
    with pytest.raises(ConfigError, match=r"missing .*users/guest_01/user\.key"):
        site_copy.private_key("guest_01")


def test_save_site_writes_changed_settings_that_load_reads_back(site_copy: Site) -> None:
    changed = dataclasses.replace(site_copy, heartbeat_s=5, max_failures=7, store_url="sqlite:///x")
    save_site(changed)
    assert Site.load(site_copy.root) == changed


# --- adding and removing identities afterwards -----------------------------------------------


def assert_access_files_match(site: Site, identities: list[str]) -> None:
    """The password file and ACL on disk are those of ``site``, naming exactly ``identities``."""
    assert_every_hash_verifies_its_own_password(site, identities)
    assert (site.broker_dir / "acl").read_text() == render_acl(site)
    assert mode(site.broker_dir / "passwd") == mode(site.broker_dir / "acl") == 0o640


def test_add_identity_gives_a_new_user_keys_and_a_broker_account(site_copy: Site) -> None:
    updated = add_identity(site_copy, "carol", lock=False)
    assert updated.users == (*USERS, "carol")
    assert updated.locks == tuple(LOCKS)
    assert Site.load(site_copy.root) == updated  # site.json lists carol
    key = updated.private_key_path("carol")
    assert key == site_copy.root / "users" / "carol" / "user.key"
    assert oct(mode(key)) == oct(mode(key.parent / "password")) == "0o600"
    assert oct(mode(key.parent)) == "0o700"
    assert updated.public_key("carol").public_numbers() == (
        updated.private_key("carol").public_key().public_numbers()
    )
    assert_access_files_match(updated, [*IDENTITIES, "carol"])
    assert "user carol" in (site_copy.broker_dir / "acl").read_text()


def test_add_identity_of_a_lock_lists_it_among_the_locks(site_copy: Site) -> None:
    updated = add_identity(site_copy, "shed", lock=True)
    assert updated.locks == (*LOCKS, "shed")
    assert updated.users == tuple(USERS)
    assert Site.load(site_copy.root) == updated
    assert updated.private_key_path("shed") == site_copy.root / "locks" / "shed" / "lock.key"
    assert updated.public_key_path("shed") == site_copy.root / "public" / "locks" / "shed.pub"
    assert updated.private_key("shed")  # readable, a real key
    assert_access_files_match(updated, [*IDENTITIES, "shed"])


@pytest.mark.parametrize(
    ("name", "lock"),
    [
        pytest.param("guest_01", False, id="existing-user"),
        pytest.param("lock_01", False, id="user-named-like-a-lock"),
        pytest.param("owner", True, id="lock-named-like-a-user"),
        pytest.param("backend", False, id="reserved-backend"),
        pytest.param("homeassistant", True, id="reserved-homeassistant"),
    ],
)
def test_add_identity_of_a_taken_name_is_a_config_error_and_changes_nothing(
    site_copy: Site, name: str, lock: bool
) -> None:
    files = [
        site_copy.root / "site.json",
        site_copy.broker_dir / "passwd",
        site_copy.broker_dir / "acl",
    ]
    before = [path.read_bytes() for path in files]
    with pytest.raises(ConfigError, match=f"'{name}' is already taken"):
        add_identity(site_copy, name, lock=lock)
    assert [path.read_bytes() for path in files] == before


def test_add_identity_with_an_invalid_name_names_it_and_changes_nothing(site_copy: Site) -> None:
    before = (site_copy.root / "site.json").read_bytes()
    with pytest.raises(ConfigError, match="invalid user name 'Carol!'"):
        add_identity(site_copy, "Carol!", lock=False)
    with pytest.raises(ConfigError, match="invalid lock id 'a/b'"):
        add_identity(site_copy, "a/b", lock=True)
    assert (site_copy.root / "site.json").read_bytes() == before
    assert not (site_copy.root / "users" / "Carol!").exists()


def test_remove_identity_deletes_the_users_keys_and_broker_account(site_copy: Site) -> None:
    user_dir = site_copy.identity_dir("guest_02")
    public = site_copy.public_key_path("guest_02")
    updated = remove_identity(site_copy, "guest_02")
    assert updated.users == ("owner", "resident", "guest_01")
    assert Site.load(site_copy.root) == updated
    assert not user_dir.exists()
    assert not public.exists()
    remaining = [x for x in IDENTITIES if x != "guest_02"]
    assert_access_files_match(updated, remaining)
    assert "guest_02" not in (site_copy.broker_dir / "acl").read_text()
    assert "guest_02" not in (site_copy.broker_dir / "passwd").read_text()
    with pytest.raises(ConfigError, match="no lock or user 'guest_02'"):
        updated.credentials("guest_02")


@pytest.mark.parametrize("name", ["nobody", "lock_01", "backend"])
def test_remove_identity_of_anything_but_a_user_is_a_config_error(
    site_copy: Site, name: str
) -> None:
    before = (site_copy.root / "site.json").read_bytes()
    with pytest.raises(ConfigError, match=f"no user '{name}'"):
        remove_identity(site_copy, name)
    assert (site_copy.root / "site.json").read_bytes() == before
    assert name == "nobody" or site_copy.identity_dir(name).is_dir()


# --- provisioning over an existing directory ---------------------------------------------------


def test_provisioning_into_a_non_empty_directory_needs_force(fresh_dir: Path) -> None:
    (fresh_dir / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="--force"):
        provision_small(fresh_dir)
    assert sorted(p.name for p in fresh_dir.iterdir()) == ["notes.txt"]


def test_force_replaces_an_existing_site_with_a_new_one(site_copy: Site) -> None:
    root = site_copy.root
    old_ca = site_copy.ca_cert.read_bytes()
    old_lock_key = site_copy.private_key_path("lock_01").read_bytes()
    old_audit_key = site_copy.audit_key_path.read_bytes()
    (root / "stale.txt").write_text("left over")

    with pytest.raises(ConfigError, match="--force"):
        provision_small(root, locks=["front_door"])
    assert site_copy.ca_cert.read_bytes() == old_ca  # refused without touching anything

    second = provision_small(root, force=True, locks=["front_door"])
    assert second.ca_cert.read_bytes() != old_ca
    assert second.audit_key_path.read_bytes() != old_audit_key
    assert not (root / "stale.txt").exists()
    assert not (root / "locks" / "lock_01").exists()
    assert not (root / "users").exists()  # the new site has no users
    assert second.private_key_path("front_door").read_bytes() != old_lock_key
    loaded = Site.load(root)
    assert (loaded.locks, loaded.users, loaded.timezone) == (("front_door",), (), "UTC")


def test_force_refuses_to_wipe_a_directory_that_holds_no_site(fresh_dir: Path) -> None:
    (fresh_dir / "thesis.tex").write_text("years of work")
    (fresh_dir / "figures").mkdir()
    with pytest.raises(ConfigError, match="no site; refusing to delete"):
        provision_small(fresh_dir, force=True)
    assert (fresh_dir / "thesis.tex").read_text() == "years of work"
    assert (fresh_dir / "figures").is_dir()


def test_an_unknown_time_zone_is_refused_before_anything_is_written(fresh_dir: Path) -> None:
    root = fresh_dir / "site"
    with pytest.raises(ConfigError, match=r"unknown time zone 'Mars/Olympus' \(e\.g\."):
        provision_small(root, timezone="Mars/Olympus")
    assert not root.exists()


def test_force_with_an_unknown_time_zone_keeps_the_existing_site(site_copy: Site) -> None:
    with pytest.raises(ConfigError, match="unknown time zone"):
        provision_small(site_copy.root, force=True, timezone="Mars/Olympus")
    assert Site.load(site_copy.root) == site_copy


# --- the site specification -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param({"locks": ["Lock 1"]}, "invalid lock id 'Lock 1'", id="space-upper"),
        pytest.param({"locks": [""]}, "invalid lock id ''", id="empty"),
        pytest.param({"locks": ["a" * 33]}, f"invalid lock id '{'a' * 33}'", id="33-chars"),
        pytest.param({"locks": ["lock1\n"]}, "invalid lock id 'lock1\\n'", id="newline"),
        pytest.param({"users": ["Guest!"]}, "invalid user name 'Guest!'", id="user"),
        pytest.param({"locks": ["door"], "users": ["door"]}, "must all be different", id="l=u"),
        pytest.param({"locks": ["door", "door"]}, "must all be different", id="two-locks"),
        pytest.param({"users": ["ann", "ann"]}, "must all be different", id="two-users"),
        pytest.param({"locks": ["backend"]}, "reserved: backend", id="reserved-backend"),
        pytest.param({"users": ["broker"]}, "reserved: broker", id="reserved-broker"),
        pytest.param({"users": ["radio", "ca"]}, "reserved: ca, radio", id="reserved-dirs"),
        pytest.param({"users": ["homeassistant"]}, "reserved: homeassistant", id="reserved-ha"),
        pytest.param({"locks": [], "users": ["g1"]}, "at least one lock", id="no-locks"),
        pytest.param({"session_ttl_s": 0}, "1..86400 seconds", id="ttl-0"),
        pytest.param({"session_ttl_s": -5}, "1..86400 seconds", id="ttl-negative"),
        pytest.param({"session_ttl_s": MAX_KEY_TTL_S + 1}, "1..86400", id="ttl-86401"),
        pytest.param({"heartbeat_s": 0}, "at least 1 second", id="heartbeat-0"),
    ],
)
def test_an_impossible_site_is_refused_before_anything_is_written(
    fresh_dir: Path, spec: dict[str, Any], message: str
) -> None:
    root = fresh_dir / "site"
    arguments: dict[str, Any] = {"locks": ["lock_01"], "users": [], **spec}
    with pytest.raises(ValueError, match=re.escape(message)):
        provision_site(root, broker_host="127.0.0.1", broker_port=18883, **arguments)
    assert not root.exists()


def test_every_reserved_name_is_refused_as_a_user_name() -> None:
    for name in sorted(RESERVED_IDS):
        with pytest.raises(ValueError, match=f"reserved: {name}"):
            validate_site_spec(["lock_01"], [name], 300)


def test_longest_id_and_longest_key_lifetime_are_accepted() -> None:
    validate_site_spec(["a" * 32], ["0-guest_x"], MAX_KEY_TTL_S)
    validate_site_spec(["l"], [], 1)


def test_write_private_syncs_the_file_and_its_directory(monkeypatch: pytest.MonkeyPatch) -> None:
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


def test_write_private_leaves_no_temporary_file_when_it_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
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


def test_a_site_json_holding_a_database_password_is_readable_by_its_owner_only(
    site_copy: Site,
) -> None:
    with_password = dataclasses.replace(site_copy, store_url="postgresql://app:s3cret@db/locks")
    save_site(with_password)
    assert stat.S_IMODE((site_copy.root / "site.json").stat().st_mode) == 0o600
    save_site(dataclasses.replace(site_copy, store_url="postgresql://app@db/locks"))
    assert stat.S_IMODE((site_copy.root / "site.json").stat().st_mode) == 0o644


# --- the Home Assistant user --------------------------------------------------------------------


def test_a_site_names_no_home_assistant_user_by_default(site: Site) -> None:
    assert site.home_assistant_user is None
    assert json.loads((site.root / "site.json").read_text())["home_assistant_user"] is None


def test_the_home_assistant_user_round_trips_through_site_json(site_copy: Site) -> None:
    changed = dataclasses.replace(site_copy, home_assistant_user="resident")
    save_site(changed)
    assert json.loads((site_copy.root / "site.json").read_text())["home_assistant_user"] == (
        "resident"
    )
    assert Site.load(site_copy.root) == changed


def test_a_site_json_without_the_home_assistant_setting_has_none(
    site: Site, fresh_dir: Path
) -> None:
    _damage(site, fresh_dir, lambda d: d.pop("home_assistant_user"))
    assert Site.load(fresh_dir).home_assistant_user is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("nobody", r"home_assistant_user 'nobody' is no user", id="unknown-user"),
        pytest.param("lock_01", r"home_assistant_user 'lock_01' is no user", id="a-lock"),
        pytest.param("backend", r"home_assistant_user 'backend' is no user", id="the-backend"),
        pytest.param("Home Assistant", r"invalid user name 'Home Assistant'", id="invalid-name"),
        pytest.param(7, r"home_assistant_user '7' is no user", id="a-number"),
    ],
)
def test_a_home_assistant_user_that_is_not_a_user_of_the_site_is_refused(
    site: Site, fresh_dir: Path, value: object, message: str
) -> None:
    _damage(site, fresh_dir, lambda d: d.update(home_assistant_user=value))
    with pytest.raises(ConfigError, match=rf"site\.json is damaged: ValueError: {message}"):
        Site.load(fresh_dir)


def test_removing_the_home_assistant_user_unsets_it(site_copy: Site) -> None:
    with_ha = dataclasses.replace(site_copy, home_assistant_user="resident")
    save_site(with_ha)
    updated = remove_identity(with_ha, "resident")
    assert updated.home_assistant_user is None
    assert Site.load(site_copy.root) == updated
    acl = (site_copy.broker_dir / "acl").read_text()
    assert "smartlock/ha/" not in acl
    assert "homeassistant/" not in acl
    assert_access_files_match(updated, [x for x in IDENTITIES if x != "resident"])


def test_removing_another_user_keeps_the_home_assistant_user(site_copy: Site) -> None:
    with_ha = dataclasses.replace(site_copy, home_assistant_user="resident")
    save_site(with_ha)
    updated = remove_identity(with_ha, "guest_02")
    assert updated.home_assistant_user == "resident"
    assert Site.load(site_copy.root).home_assistant_user == "resident"
    assert "topic write smartlock/ha/+/set" in (site_copy.broker_dir / "acl").read_text()


# --- enrolling a device's own key ---------------------------------------------------------------


@pytest.fixture(scope="module")
def device_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_enrolling_a_device_key_replaces_the_users_public_key_and_deletes_the_private_one(
    site_copy: Site, device_key: rsa.RSAPrivateKey
) -> None:
    private = site_copy.private_key_path("guest_01")
    assert private.exists()
    enroll_identity(site_copy, "guest_01", _public_pem(device_key))
    assert site_copy.public_key("guest_01").public_numbers() == (
        device_key.public_key().public_numbers()
    )
    assert not private.exists()  # the private key now lives only on the device
    assert mode(site_copy.public_key_path("guest_01")) == 0o644
    assert site_copy.private_key_path("guest_02").exists()  # the other users keep theirs


def test_enrolling_gives_a_new_broker_password_written_for_the_broker(
    site_copy: Site, device_key: rsa.RSAPrivateKey
) -> None:
    old = site_copy.credentials("guest_01").password
    others = {x: site_copy.credentials(x).password for x in IDENTITIES if x != "guest_01"}
    password = enroll_identity(site_copy, "guest_01", _public_pem(device_key))
    assert password != old
    assert len(password) >= 32
    assert site_copy.credentials("guest_01").password == password
    assert mode(site_copy.identity_dir("guest_01") / "password") == 0o600
    entries = passwd_entries(site_copy)
    assert _mosquitto_hash_matches(entries["guest_01"], password)
    assert not _mosquitto_hash_matches(entries["guest_01"], old)
    assert {x: site_copy.credentials(x).password for x in others} == others
    assert_access_files_match(site_copy, IDENTITIES)


def test_enrolling_twice_works_and_changes_the_password_again(
    site_copy: Site, device_key: rsa.RSAPrivateKey
) -> None:
    first = enroll_identity(site_copy, "guest_01", _public_pem(device_key))
    second = enroll_identity(site_copy, "guest_01", _public_pem(device_key))
    assert first != second
    assert _mosquitto_hash_matches(passwd_entries(site_copy)["guest_01"], second)


def test_enrolling_keeps_the_home_assistant_lines_in_the_acl(
    site_copy: Site, device_key: rsa.RSAPrivateKey
) -> None:
    with_ha = dataclasses.replace(site_copy, home_assistant_user="resident")
    save_site(with_ha)
    enroll_identity(with_ha, "resident", _public_pem(device_key))
    assert (site_copy.broker_dir / "acl").read_text() == render_acl(with_ha)
    assert "topic write smartlock/ha/+/set" in render_acl(with_ha)


BAD_KEYS = {
    "garbage": lambda: b"not a key",
    "empty": lambda: b"",
    "damaged-pem": lambda: b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    "ec-p256": lambda: _public_pem(ec.generate_private_key(ec.SECP256R1())),
    "rsa-1024": lambda: _public_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
}


@pytest.mark.parametrize("make_pem", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_an_unusable_device_key_is_a_config_error_and_changes_nothing(
    site_copy: Site, make_pem: Callable[[], bytes]
) -> None:
    files = [
        site_copy.public_key_path("guest_01"),
        site_copy.private_key_path("guest_01"),
        site_copy.identity_dir("guest_01") / "password",
        site_copy.broker_dir / "passwd",
        site_copy.broker_dir / "acl",
    ]
    before = [path.read_bytes() for path in files]
    with pytest.raises(ConfigError, match="the device's public key is unusable"):
        enroll_identity(site_copy, "guest_01", make_pem())
    assert [path.read_bytes() for path in files] == before


@pytest.mark.parametrize("name", ["nobody", "lock_01", "backend"])
def test_enrolling_anything_but_a_user_is_a_config_error(
    site_copy: Site, device_key: rsa.RSAPrivateKey, name: str
) -> None:
    before = (site_copy.broker_dir / "passwd").read_bytes()
    with pytest.raises(ConfigError, match=f"no user '{name}'"):
        enroll_identity(site_copy, name, _public_pem(device_key))
    assert (site_copy.broker_dir / "passwd").read_bytes() == before
