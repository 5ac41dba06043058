"""A site: the directory that holds one installation's keys, credentials and broker config.

``smartlock init SITE_DIR`` provisions it (:func:`provision_site`); every other command reads it
(:meth:`Site.load`).  Layout::

    site.json                 what the site is: broker address, locks, users, key lifetime, ...
    ca.crt                    the site CA (public): clients pin it to verify the broker
    ca/ca.key                 the CA's private key (0600)
    public/                   public keys: backend.pub, locks/<id>.pub, users/<id>.pub
    backend/                  backend.key, password, audit.key, command.key (0600), store.db
    locks/<id>/               lock.key, password, state.json (the lock's durable state)
    users/<id>/               user.key, password (owners, residents and guests alike)
    broker/                   mosquitto.conf, passwd (hashed), acl, broker.crt/.key, data/
    radio/                    the virtual radio hub's HCI sockets

Who a user *is* (owner, resident, guest) and what they may do lives in the backend's store
(:mod:`smartlock.adapters.store`); the site holds only the key material and broker accounts.
In a real deployment each component's directory lives on its own device; one tree keeps the
demo and the tests simple.  Private keys and passwords are 0600; the files Mosquitto reads after
it drops privileges are 0640 to its group (see :mod:`smartlock.broker`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import secrets
import shutil
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from smartlock import crypto
from smartlock.core.errors import ConfigError
from smartlock.core.issuance import DEFAULT_KEY_TTL_S, MAX_KEY_TTL_S
from smartlock.core.wire import check_identifier

KeyT = TypeVar("KeyT")
SITE_FILE = "site.json"
SITE_VERSION = 2
DEFAULT_HEARTBEAT_S = 60
DEFAULT_COMMAND_WINDOW_S = 30
BACKEND_USER = "backend"
RESERVED_IDS = frozenset({BACKEND_USER, "broker", "radio", "public", "ca", "homeassistant"})


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Site:
    root: Path
    name: str
    broker_host: str
    broker_port: int
    locks: tuple[str, ...]
    users: tuple[str, ...]  # everyone with a broker account and a key pair but locks and backend
    session_ttl_s: int = DEFAULT_KEY_TTL_S
    heartbeat_s: int = DEFAULT_HEARTBEAT_S
    command_window_s: int = DEFAULT_COMMAND_WINDOW_S  # a remote command older/newer is refused
    timezone: str = "UTC"  # weekly hours of passes are read in this zone
    store_url: str | None = None  # None: SQLite in backend/store.db
    max_failures: int = 3  # more failed attempts than this within failure_window_s: lockout
    failure_window_s: int = 300
    lockout_s: int = 300
    home_assistant_user: str | None = None  # the user Home Assistant signs in as (MQTT discovery)

    # --- paths -----------------------------------------------------------------------------

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca" / "ca.key"

    @property
    def next_ca_key(self) -> Path:
        """The key of the CA a started ``smartlock rotate ca`` moves to (until ``--finish``)."""
        return self.root / "ca" / "next.key"

    @property
    def next_ca_cert(self) -> Path:
        """The certificate of that CA; ca.crt holds it next to the current one meanwhile."""
        return self.root / "ca" / "next.crt"

    @property
    def broker_dir(self) -> Path:
        return self.root / "broker"

    @property
    def radio_dir(self) -> Path:
        return self.root / "radio"

    def identity_dir(self, identity: str) -> Path:
        if identity == BACKEND_USER:
            return self.root / "backend"
        if identity in self.locks:
            return self.root / "locks" / identity
        if identity in self.users:
            return self.root / "users" / identity
        raise ConfigError(f"no lock or user {identity!r} in site {self.root}")

    def private_key_path(self, identity: str) -> Path:
        kind = (
            "backend" if identity == BACKEND_USER else "lock" if identity in self.locks else "user"
        )
        return self.identity_dir(identity) / f"{kind}.key"

    def public_key_path(self, identity: str) -> Path:
        if identity == BACKEND_USER:
            return self.root / "public" / "backend.pub"
        kind = "locks" if identity in self.locks else "users"
        self.identity_dir(identity)  # raises for unknown ids
        return self.root / "public" / kind / f"{identity}.pub"

    def previous_private_key_path(self, identity: str) -> Path:
        """The key pair a key rotation replaced, kept until it is finished (the overlap)."""
        path = self.private_key_path(identity)
        return path.with_name(path.name + ".previous")

    def previous_public_key_path(self, identity: str) -> Path:
        path = self.public_key_path(identity)
        return path.with_name(path.name + ".previous")

    @property
    def retired_backend_key_path(self) -> Path:
        """The backend key a finished rotation retired: the backend tells devices to drop it."""
        return self.root / "public" / "backend.pub.retired"

    def radio_socket(self, identity: str) -> Path:
        return self.radio_dir / f"{identity}.sock"

    @property
    def release_public_path(self) -> Path:
        """The release key's public half the locks pin (``smartlock release trust``)."""
        return self.root / "public" / "release.pub"

    @property
    def updates_dir(self) -> Path:
        """Pushed update bundles, by bundle id (``smartlock update push``)."""
        return self.root / "updates"

    def bundle_path(self, bundle_id: str) -> Path:
        return self.updates_dir / f"{bundle_id}.slu"

    @property
    def audit_key_path(self) -> Path:
        return self.root / "backend" / "audit.key"

    @property
    def command_master_key_path(self) -> Path:
        return self.root / "backend" / "command.key"

    def database_url(self, override: str | None = None) -> str:
        """``override`` (``--db``), else site.json's ``store_url``, else SQLite in backend/."""
        return override or self.store_url or f"sqlite:///{self.root / 'backend' / 'store.db'}"

    def secret(self, path: Path) -> bytes:
        """A 32-byte secret file of the backend (audit chain key, command master key)."""
        data = _read_bytes(path)
        if len(data) != 32:
            raise ConfigError(f"{path} is damaged: expected 32 bytes")
        return data

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        try:
            return zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown time zone {self.timezone!r} (e.g. Europe/Paris)") from None

    def virtual_radio(self, identity: str) -> str:
        """The transport string of ``identity``'s controller on the site's virtual radio hub."""
        return f"unix:{self.radio_socket(identity)}"

    # --- reading ---------------------------------------------------------------------------

    def credentials(self, identity: str) -> Credentials:
        return Credentials(identity, _read_text(self.identity_dir(identity) / "password").strip())

    def private_key(self, identity: str) -> crypto.PrivateKey:
        return _load_key(self.private_key_path(identity), crypto.load_private_key)

    def public_key(self, identity: str) -> crypto.PublicKey:
        return _load_key(self.public_key_path(identity), crypto.load_public_key)

    @classmethod
    def load(cls, root: Path) -> Site:
        root = root.resolve()
        path = root / SITE_FILE
        if not path.is_file():
            raise ConfigError(
                f"{root} is not a smartlock site (no {SITE_FILE}); create one with "
                f"'smartlock init {root}'"
            )
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            if data.get("version") != SITE_VERSION:
                raise ConfigError(
                    f"{path}: unsupported site version {data.get('version')!r} (this smartlock "
                    f"reads version {SITE_VERSION}; create the site again with 'smartlock init')"
                )
            site = cls(
                root=root,
                name=str(data["name"]),
                broker_host=str(data["broker"]["host"]),
                broker_port=int(data["broker"]["port"]),
                locks=tuple(check_identifier(x, "lock id") for x in data["locks"]),
                users=tuple(check_identifier(x, "user name") for x in data["users"]),
                session_ttl_s=int(data.get("session_ttl_s", DEFAULT_KEY_TTL_S)),
                heartbeat_s=int(data.get("heartbeat_s", DEFAULT_HEARTBEAT_S)),
                command_window_s=int(data.get("command_window_s", DEFAULT_COMMAND_WINDOW_S)),
                timezone=str(data.get("timezone", "UTC")),
                store_url=None if data.get("store_url") is None else str(data["store_url"]),
                max_failures=int(data.get("max_failures", 3)),
                failure_window_s=int(data.get("failure_window_s", 300)),
                lockout_s=int(data.get("lockout_s", 300)),
                home_assistant_user=_optional_user(data.get("home_assistant_user")),
            )
            validate_site_spec(list(site.locks), list(site.users), site.session_ttl_s)
            site.zone  # noqa: B018 -- raises for an unknown time zone
            if site.home_assistant_user not in (None, *site.users):
                raise ValueError(f"home_assistant_user {site.home_assistant_user!r} is no user")
            if not 0 < site.broker_port <= 65535:
                raise ValueError(f"broker port must be 1..65535, not {site.broker_port}")
            for name, value, low in (
                ("heartbeat_s", site.heartbeat_s, 1),
                ("command_window_s", site.command_window_s, 1),
                ("max_failures", site.max_failures, 1),
                ("failure_window_s", site.failure_window_s, 1),
                ("lockout_s", site.lockout_s, 1),
            ):
                if not low <= value <= 86_400:
                    raise ValueError(f"{name} must be {low}..86400, not {value}")
        except (
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            OverflowError,  # int() of Infinity
            RecursionError,  # JSON nested too deep
        ) as exc:
            raise ConfigError(f"{path} is damaged: {type(exc).__name__}: {exc}") from None
        return site

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": SITE_VERSION,
                "name": self.name,
                "broker": {"host": self.broker_host, "port": self.broker_port},
                "locks": list(self.locks),
                "users": list(self.users),
                "session_ttl_s": self.session_ttl_s,
                "heartbeat_s": self.heartbeat_s,
                "command_window_s": self.command_window_s,
                "timezone": self.timezone,
                "store_url": self.store_url,
                "max_failures": self.max_failures,
                "failure_window_s": self.failure_window_s,
                "lockout_s": self.lockout_s,
                "home_assistant_user": self.home_assistant_user,
            },
            indent=2,
        )


def _optional_user(value: object) -> str | None:
    return None if value is None else check_identifier(str(value), "user name")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"missing {path}: is the site complete? ('smartlock init')") from None
    except PermissionError:
        raise ConfigError(f"cannot read {path}: permission denied") from None


def _load_key(path: Path, load: Callable[[bytes], KeyT]) -> KeyT:
    try:
        return load(_read_bytes(path))
    except crypto.CryptoError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _read_text(path: Path) -> str:
    return _read_bytes(path).decode("utf-8")


# --- provisioning ------------------------------------------------------------------------------


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably, never readable by others.

    The bytes go to a fresh 0600 temporary file (``O_EXCL | O_NOFOLLOW``), are fsynced, renamed
    over ``path``, and the directory is fsynced: after a crash or a power cut the file holds
    either the old or the new content, never a mix and never an older version than returned.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb", closefd=True) as handle:
            handle.write(data)  # a buffered file writes everything or raises
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(path: Path) -> None:
    """Make the entries of ``path`` (a rename, a new file) durable."""
    directory = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_public(path: Path, data: bytes) -> None:
    """Write a public file atomically (a reader sees the old or the new key, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.chmod(0o644)
    os.replace(partial, path)


def validate_site_spec(locks: list[str], users: list[str], session_ttl_s: int) -> None:
    """Raise ValueError with a user-facing message for a site that cannot be provisioned."""
    if not locks:
        raise ValueError("a site needs at least one lock")
    ids = [check_identifier(x, "lock id") for x in locks] + [
        check_identifier(x, "user name") for x in users
    ]
    if len(set(ids)) != len(ids):
        raise ValueError("lock ids and user names must all be different")
    if RESERVED_IDS & set(ids):
        raise ValueError(f"these names are reserved: {', '.join(sorted(RESERVED_IDS & set(ids)))}")
    if not 0 < session_ttl_s <= MAX_KEY_TTL_S:
        raise ValueError(f"session key lifetime must be 1..{MAX_KEY_TTL_S} seconds")


def _make_identity(site: Site, identity: str) -> str:
    """Key pair and broker password for ``identity`` (already listed in ``site``)."""
    key = crypto.generate_private_key()
    identity_dir = site.identity_dir(identity)
    identity_dir.mkdir(parents=True, exist_ok=True)
    identity_dir.chmod(0o700)
    write_private(site.private_key_path(identity), crypto.private_key_to_pem(key))
    write_public(site.public_key_path(identity), crypto.public_key_to_pem(key.public_key()))
    password = secrets.token_urlsafe(32)
    write_private(identity_dir / "password", password.encode() + b"\n")
    return password


def _all_passwords(site: Site) -> dict[str, str]:
    return {
        identity: site.credentials(identity).password
        for identity in (BACKEND_USER, *site.locks, *site.users)
    }


def save_site(site: Site) -> None:
    """Write site.json (atomically).  Readable by others unless its database URL holds a
    password (better kept out of it: PGPASSFILE or SMARTLOCK_DB)."""
    secret = site.store_url is not None and _url_has_password(site.store_url)
    write_private(
        site.root / SITE_FILE, site.to_json().encode() + b"\n", mode=0o600 if secret else 0o644
    )


def _url_has_password(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password is not None
    except ValueError:
        return True  # unreadable: assume the worst


def add_identity(site: Site, identity: str, *, lock: bool) -> Site:
    """Give a new lock or user its key pair and broker account; returns the updated site.

    The broker's password file and ACL are rewritten; a running broker picks them up with
    :func:`smartlock.broker.reload_broker` (no restart, no lost sessions).
    """
    from smartlock import broker

    what = "lock id" if lock else "user name"
    try:
        check_identifier(identity, what)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if identity in (*site.locks, *site.users) or identity in RESERVED_IDS:
        raise ConfigError(f"{identity!r} is already taken in site {site.root}")
    updated = dataclasses.replace(
        site,
        locks=(*site.locks, identity) if lock else site.locks,
        users=site.users if lock else (*site.users, identity),
    )
    _make_identity(updated, identity)
    broker.write_access_files(updated, _all_passwords(updated))
    save_site(updated)
    return updated


def set_home_assistant_user(site: Site, user: str | None) -> Site:
    """Name the user Home Assistant signs in as (None: no Home Assistant); rewrites the ACL."""
    from smartlock import broker

    if user is not None and user not in site.users:
        raise ConfigError(f"no user {user!r} in site {site.root}")
    updated = dataclasses.replace(site, home_assistant_user=user)
    broker.write_access_files(updated, _all_passwords(updated))
    save_site(updated)
    return updated


def enroll_identity(site: Site, identity: str, public_key_pem: bytes) -> str:
    """Give an existing user the public key its own device made, and a fresh broker password.

    The key pair the site made for the user (if any) is deleted: from now on the private key
    exists only on the user's device.  Returns the new password; the broker's files are
    rewritten (reload the broker with :func:`smartlock.broker.reload_broker`).
    """
    from smartlock import broker

    if identity not in site.users:
        raise ConfigError(f"no user {identity!r} in site {site.root}")
    try:
        public = crypto.load_public_key(public_key_pem)
    except crypto.CryptoError as exc:
        raise ConfigError(f"the device's public key is unusable: {exc}") from None
    identity_dir = site.identity_dir(identity)
    identity_dir.mkdir(parents=True, exist_ok=True)
    identity_dir.chmod(0o700)
    password = secrets.token_urlsafe(32)
    write_public(site.public_key_path(identity), crypto.public_key_to_pem(public))
    write_private(identity_dir / "password", password.encode() + b"\n")
    site.private_key_path(identity).unlink(missing_ok=True)
    broker.write_access_files(site, _all_passwords(site))
    return password


def remove_identity(site: Site, identity: str) -> Site:
    """Delete a user's key pair and broker account; returns the updated site."""
    from smartlock import broker

    if identity not in site.users:
        raise ConfigError(f"no user {identity!r} in site {site.root}")
    identity_dir = site.identity_dir(identity)
    public = site.public_key_path(identity)
    updated = dataclasses.replace(
        site,
        users=tuple(u for u in site.users if u != identity),
        home_assistant_user=None
        if site.home_assistant_user == identity
        else site.home_assistant_user,
    )
    broker.write_access_files(updated, _all_passwords(updated))
    save_site(updated)
    shutil.rmtree(identity_dir, ignore_errors=True)
    public.unlink(missing_ok=True)
    return updated


def provision_site(
    root: Path,
    *,
    locks: list[str],
    users: list[str],
    broker_host: str,
    broker_port: int,
    session_ttl_s: int = DEFAULT_KEY_TTL_S,
    heartbeat_s: int = DEFAULT_HEARTBEAT_S,
    timezone: str = "UTC",
    store_url: str | None = None,
    force: bool = False,
    now: dt.datetime | None = None,
) -> Site:
    """Create a complete site in ``root`` (keys, certificates, credentials, broker config).

    Roles and passes are not here: they go into the store (``smartlock init`` does both).
    """
    from smartlock import broker  # the broker module renders from a Site; import late

    validate_site_spec(locks, users, session_ttl_s)
    if heartbeat_s < 1:
        raise ValueError("the heartbeat interval must be at least 1 second")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"unknown time zone {timezone!r} (e.g. Europe/Paris)") from None
    root = root.resolve()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} exists and is not a directory")
    if root.exists() and any(root.iterdir()):
        if not force:
            raise ConfigError(f"{root} is not empty; pass --force to replace the site in it")
        if not (root / SITE_FILE).exists():
            raise ConfigError(f"{root} holds files but no site; refusing to delete them")
        for child in root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    now = now or dt.datetime.now(dt.UTC)
    site = Site(
        root=root,
        name=root.name,
        broker_host=broker_host,
        broker_port=broker_port,
        locks=tuple(locks),
        users=tuple(users),
        session_ttl_s=session_ttl_s,
        heartbeat_s=heartbeat_s,
        timezone=timezone,
        store_url=store_url,
    )
    site.zone  # noqa: B018 -- raises for an unknown time zone

    ca = crypto.make_certificate_authority(site.name, now=now)
    write_private(root / "ca" / "ca.key", ca.key_pem)
    (root / "ca").chmod(0o700)
    write_public(site.ca_cert, ca.cert_pem)

    passwords = {
        identity: _make_identity(site, identity) for identity in (BACKEND_USER, *locks, *users)
    }
    write_private(site.audit_key_path, crypto.random_bytes(32))
    write_private(site.command_master_key_path, crypto.random_bytes(32))

    server = crypto.make_server_certificate(ca, broker.broker_hostnames(site), now=now)
    broker.write_broker_files(site, server, passwords)
    save_site(site)
    return site
