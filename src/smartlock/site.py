"""A site: the directory that holds one installation's keys, credentials and broker config.

``smartlock init SITE_DIR`` provisions it (:func:`provision_site`); every other command reads it
(:meth:`Site.load`).  Layout::

    site.json                 what the site is: broker address, locks, guests, grants, key lifetime
    ca.crt                    the site CA (public): clients pin it to verify the broker
    ca/ca.key                 the CA's private key (0600)
    public/                   public keys: backend.pub, locks/<id>.pub, guests/<id>.pub
    backend/                  backend.key (0600), password (0600)
    locks/<id>/               lock.key, password, state.json (the lock's durable state)
    guests/<id>/              guest.key, password
    broker/                   mosquitto.conf, passwd (hashed), acl, broker.crt/.key, data/
    radio/                    the virtual radio hub's HCI sockets

In a real deployment each component's directory lives on its own device; one tree keeps the
demo and the tests simple.  Private keys and passwords are 0600; the files Mosquitto reads after
it drops privileges are 0640 to its group (see :mod:`smartlock.broker`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
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
SITE_VERSION = 1
BACKEND_USER = "backend"
RESERVED_IDS = frozenset({BACKEND_USER, "broker", "radio", "public", "ca"})


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
    guests: tuple[str, ...]
    grants: tuple[tuple[str, str], ...]  # (guest, lock)
    session_ttl_s: int = DEFAULT_KEY_TTL_S

    # --- paths -----------------------------------------------------------------------------

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

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
        if identity in self.guests:
            return self.root / "guests" / identity
        raise ConfigError(f"no lock or guest {identity!r} in site {self.root}")

    def private_key_path(self, identity: str) -> Path:
        role = (
            "backend" if identity == BACKEND_USER else "lock" if identity in self.locks else "guest"
        )
        return self.identity_dir(identity) / f"{role}.key"

    def public_key_path(self, identity: str) -> Path:
        if identity == BACKEND_USER:
            return self.root / "public" / "backend.pub"
        kind = "locks" if identity in self.locks else "guests"
        self.identity_dir(identity)  # raises for unknown ids
        return self.root / "public" / kind / f"{identity}.pub"

    def radio_socket(self, identity: str) -> Path:
        return self.radio_dir / f"{identity}.sock"

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
                raise ConfigError(f"{path}: unsupported site version {data.get('version')!r}")
            site = cls(
                root=root,
                name=str(data["name"]),
                broker_host=str(data["broker"]["host"]),
                broker_port=int(data["broker"]["port"]),
                locks=tuple(check_identifier(x, "lock id") for x in data["locks"]),
                guests=tuple(check_identifier(x, "guest id") for x in data["guests"]),
                grants=tuple((str(g), str(lk)) for g, lk in data["grants"]),
                session_ttl_s=int(data.get("session_ttl_s", DEFAULT_KEY_TTL_S)),
            )
            validate_site_spec(
                list(site.locks), list(site.guests), list(site.grants), site.session_ttl_s
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path} is damaged: {type(exc).__name__}: {exc}") from None
        return site

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": SITE_VERSION,
                "name": self.name,
                "broker": {"host": self.broker_host, "port": self.broker_port},
                "locks": list(self.locks),
                "guests": list(self.guests),
                "grants": [list(g) for g in self.grants],
                "session_ttl_s": self.session_ttl_s,
            },
            indent=2,
        )


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
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o644)


def validate_site_spec(
    locks: list[str], guests: list[str], grants: list[tuple[str, str]], session_ttl_s: int
) -> None:
    """Raise ValueError with a user-facing message for a site that cannot be provisioned."""
    if not locks:
        raise ValueError("a site needs at least one lock")
    ids = [check_identifier(x, "lock id") for x in locks] + [
        check_identifier(x, "guest id") for x in guests
    ]
    if len(set(ids)) != len(ids):
        raise ValueError("lock and guest ids must all be different")
    if RESERVED_IDS & set(ids):
        raise ValueError(f"these names are reserved: {', '.join(sorted(RESERVED_IDS & set(ids)))}")
    for guest, lock in grants:
        if guest not in guests:
            raise ValueError(f"grant names unknown guest {guest!r}")
        if lock not in locks:
            raise ValueError(f"grant names unknown lock {lock!r}")
    if not 0 < session_ttl_s <= MAX_KEY_TTL_S:
        raise ValueError(f"session key lifetime must be 1..{MAX_KEY_TTL_S} seconds")


def provision_site(
    root: Path,
    *,
    locks: list[str],
    guests: list[str],
    grants: list[tuple[str, str]],
    broker_host: str,
    broker_port: int,
    session_ttl_s: int = DEFAULT_KEY_TTL_S,
    force: bool = False,
    now: dt.datetime | None = None,
) -> Site:
    """Create a complete site in ``root`` (keys, certificates, credentials, broker config)."""
    from smartlock import broker  # the broker module renders from a Site; import late

    validate_site_spec(locks, guests, grants, session_ttl_s)
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
        guests=tuple(guests),
        grants=tuple(grants),
        session_ttl_s=session_ttl_s,
    )

    ca = crypto.make_certificate_authority(site.name, now=now)
    write_private(root / "ca" / "ca.key", ca.key_pem)
    (root / "ca").chmod(0o700)
    write_public(site.ca_cert, ca.cert_pem)

    passwords: dict[str, str] = {}
    for identity in (BACKEND_USER, *locks, *guests):
        key = crypto.generate_private_key()
        identity_dir = site.identity_dir(identity)
        identity_dir.mkdir(parents=True, exist_ok=True)
        identity_dir.chmod(0o700)
        write_private(site.private_key_path(identity), crypto.private_key_to_pem(key))
        write_public(site.public_key_path(identity), crypto.public_key_to_pem(key.public_key()))
        passwords[identity] = secrets.token_urlsafe(32)
        write_private(identity_dir / "password", passwords[identity].encode() + b"\n")

    hostnames = list(dict.fromkeys([broker_host, "localhost", "127.0.0.1"]))
    server = crypto.make_server_certificate(ca, hostnames, now=now)
    broker.write_broker_files(site, server, passwords)
    write_private(root / SITE_FILE, site.to_json().encode() + b"\n", mode=0o644)
    return site
