"""``smartlock doctor``: checks that a site is sound, each as a small function returning a
:class:`Check`.

Every check reads; none repairs.  A failed check says what is wrong and, in ``fix``, the command
or action that puts it right.  The time is a parameter (``now``, Unix seconds), so each check can
be tested alone at any moment.  The rules checked come from the README: the site directory's
modes (*Running the parts by hand*), the broker (:mod:`smartlock.broker`), the store's migrations
(*The store*), revocation (*Revocation*), heartbeats (*Health*) and the audit chain
(*Audit log*).

Two things doctor never does: log in to the broker (it allows one session per user name, so a
login with a service's credentials would kick that service off; a verified TLS handshake is
enough to prove the broker is there), and upgrade the store (it reads the schema's revision).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import pwd
import shlex
import socket
import ssl
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from smartlock.broker import BROKER_USER, broker_hostnames, client_tls_context, next_ca
from smartlock.core.errors import ConfigError
from smartlock.site import BACKEND_USER, Site

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from smartlock.adapters.store import LockHealth, LockRecord, Store
    from smartlock.core.records import LockUpdate

EXPIRY_WARNING_DAYS = 30
"""A certificate that expires within this many days fails: time enough to replace it."""
BROKER_TIMEOUT_S = 3.0
NAMED_PATHS = 3
"""How many offending paths a failed permission check names (the fix names all of them)."""
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
BROKER_FILE_MODE = 0o640  # Mosquitto reads these after dropping root (see smartlock.broker)
BROKER_FILES = ("broker.key", "broker.crt", "passwd", "acl", "mosquitto.conf")


@dataclass(frozen=True)
class Check:
    """One line of the report: ``fix`` is empty when ``ok``."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def _failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


def _quoted(paths: Iterable[Path]) -> str:
    return " ".join(shlex.quote(str(path)) for path in paths)


def _site_arg(site: Site) -> str:
    return f"--site {shlex.quote(str(site.root))}"


# --- permissions -------------------------------------------------------------------------------


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _existing(paths: Iterable[Path]) -> list[tuple[Path, os.stat_result]]:
    """``paths`` that exist, with their status (a missing file is not a permission problem)."""
    found = []
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            found.append((path, path.stat()))
    return found


def _count(number: int, noun: str) -> str:
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{number} {noun if number == 1 else plural}"


def _some(problems: Sequence[str]) -> str:
    """The first few problems, and how many more there are."""
    shown = "; ".join(problems[:NAMED_PATHS])
    more = len(problems) - NAMED_PATHS
    return f"{shown}; and {more} more" if more > 0 else shown


def _relative(site: Site, path: Path) -> str:
    try:
        return str(path.relative_to(site.root))
    except ValueError:
        return str(path)


def _check_private(
    name: str, site: Site, paths: Iterable[Path], *, mode: int, uid: int | None = None
) -> Check:
    """Every existing path in ``paths`` has exactly ``mode`` and belongs to ``uid`` (default:
    the user running doctor -- except root, who may read any service user's files: under
    systemd each service owns its own directory, and only the modes are checked then)."""
    any_owner = uid is None and os.geteuid() == 0
    uid = os.geteuid() if uid is None else uid
    owner = "its service user" if any_owner else _user_name(uid)
    found = _existing(paths)
    wrong_mode = [(p, st) for p, st in found if stat.S_IMODE(st.st_mode) != mode]
    wrong_owner = [] if any_owner else [(p, st) for p, st in found if st.st_uid != uid]
    kind = "directory" if mode == PRIVATE_DIR_MODE else "file"
    if not found:
        return _passed(name, f"no {kind} to check")
    if not wrong_mode and not wrong_owner:
        return _passed(name, f"{_count(len(found), kind)}, {mode:04o}, owned by {owner}")
    problems = [
        f"{_relative(site, p)} is {stat.S_IMODE(st.st_mode):04o}, not {mode:04o}"
        for p, st in wrong_mode
    ] + [
        f"{_relative(site, p)} is owned by {_user_name(st.st_uid)}, not {owner}"
        for p, st in wrong_owner
    ]
    fixes = []
    if wrong_owner:
        fixes.append(f"chown {owner} {_quoted(p for p, _ in wrong_owner)}")
    if wrong_mode:
        fixes.append(f"chmod {mode:o} {_quoted(p for p, _ in wrong_mode)}")
    return _failed(name, _some(problems), " && ".join(fixes))


def _identities(site: Site) -> tuple[str, ...]:
    return (BACKEND_USER, *site.locks, *site.users)


def check_private_keys(site: Site, *, uid: int | None = None) -> Check:
    """The backend's, the locks' and the users' private keys: 0600, the doctor user's."""
    paths = [site.private_key_path(identity) for identity in _identities(site)]
    return _check_private("private keys", site, paths, mode=PRIVATE_FILE_MODE, uid=uid)


def check_passwords(site: Site, *, uid: int | None = None) -> Check:
    """Every broker password in clear (each identity's ``password``): 0600."""
    paths = [site.identity_dir(identity) / "password" for identity in _identities(site)]
    return _check_private("passwords", site, paths, mode=PRIVATE_FILE_MODE, uid=uid)


def check_backend_secrets(site: Site, *, uid: int | None = None) -> Check:
    """The audit chain's key and the command master key: 0600."""
    paths = [site.audit_key_path, site.command_master_key_path]
    return _check_private("audit and command keys", site, paths, mode=PRIVATE_FILE_MODE, uid=uid)


def check_ca_key(site: Site, *, uid: int | None = None) -> Check:
    """The site CA's private key, and the next CA's during a CA rotation: 0600 (whoever reads
    one can impersonate the broker)."""
    paths = [site.ca_key, site.next_ca_key]
    return _check_private("CA key", site, paths, mode=PRIVATE_FILE_MODE, uid=uid)


def check_state_files(site: Site, *, uid: int | None = None) -> Check:
    """What the services keep on disk: each lock's state.json (it holds session keys), the
    backend's intrusion.json and, by default, the SQLite store with its WAL files: 0600."""
    paths = [site.identity_dir(lock_id) / "state.json" for lock_id in site.locks]
    backend = site.root / "backend"
    paths.append(backend / "intrusion.json")
    if site.store_url is None:
        paths += [backend / name for name in ("store.db", "store.db-wal", "store.db-shm")]
    return _check_private("state files", site, paths, mode=PRIVATE_FILE_MODE, uid=uid)


def check_identity_directories(site: Site, *, uid: int | None = None) -> Check:
    """Each identity's directory and the CA's: 0700."""
    paths = [site.identity_dir(identity) for identity in _identities(site)]
    paths.append(site.root / "ca")
    return _check_private("identity directories", site, paths, mode=PRIVATE_DIR_MODE, uid=uid)


def _broker_gid() -> int | None:
    """The group Mosquitto reads its files as: ``mosquitto``'s when we are root, else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(BROKER_USER).pw_gid
    except KeyError:
        return None


def check_broker_files(site: Site, *, gid: int | None = None) -> Check:
    """What Mosquitto reads after dropping privileges (key, certificate, password file, ACL,
    config): 0640, and when run as root, in the broker user's group."""
    gid = _broker_gid() if gid is None else gid
    name = "broker files"
    found = _existing(site.broker_dir / file for file in BROKER_FILES)
    missing = [file for file in BROKER_FILES if not (site.broker_dir / file).exists()]
    problems = [f"broker/{file} is missing" for file in missing]
    wrong_mode = [(p, st) for p, st in found if stat.S_IMODE(st.st_mode) != BROKER_FILE_MODE]
    wrong_group = [(p, st) for p, st in found if gid is not None and st.st_gid != gid]
    problems += [
        f"{_relative(site, p)} is {stat.S_IMODE(st.st_mode):04o}, not {BROKER_FILE_MODE:04o}"
        for p, st in wrong_mode
    ] + [f"{_relative(site, p)} is not in group {BROKER_USER}" for p, _ in wrong_group]
    if not problems:
        group = f", group {BROKER_USER}" if gid is not None else ""
        return _passed(name, f"{_count(len(found), 'file')}, {BROKER_FILE_MODE:04o}{group}")
    if missing:
        fix = f"start the broker once (smartlock broker {_site_arg(site)}); if a file is still "
        fix += "missing, the site is incomplete: create it again with 'smartlock init'"
    else:
        fixes = [f"chgrp {BROKER_USER} {_quoted(p for p, _ in wrong_group)}"] if wrong_group else []
        if wrong_mode:
            fixes.append(f"chmod {BROKER_FILE_MODE:o} {_quoted(p for p, _ in wrong_mode)}")
        fix = " && ".join(fixes) + " (or restart 'smartlock broker', which sets them)"
    return _failed(name, _some(problems), fix)


def check_public_files(site: Site) -> Check:
    """The site directory, site.json, the CA certificate and the public keys (and their
    directories): not writable by others, who could otherwise swap a key or the CA."""
    public = site.root / "public"
    paths = [site.root, site.root / "site.json", site.ca_cert, public]
    if public.is_dir():
        paths += sorted(public.rglob("*"))
    found = _existing(paths)
    writable = [(p, st) for p, st in found if st.st_mode & stat.S_IWOTH]
    if not writable:
        return _passed("public files", f"{len(found)} files and directories, none world-writable")
    problems = [
        f"{_relative(site, p) if p != site.root else 'the site directory'} is world-writable "
        f"({stat.S_IMODE(st.st_mode):04o})"
        for p, st in writable
    ]
    return _failed("public files", _some(problems), f"chmod o-w {_quoted(p for p, _ in writable)}")


def permission_checks(site: Site) -> list[Check]:
    return [
        check_private_keys(site),
        check_passwords(site),
        check_backend_secrets(site),
        check_ca_key(site),
        check_state_files(site),
        check_identity_directories(site),
        check_broker_files(site),
        check_public_files(site),
    ]


# --- certificates ------------------------------------------------------------------------------


def _load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file (ca.crt holds two during a CA rotation)."""
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing") from None
    except PermissionError:
        raise ConfigError(f"cannot read {path}: permission denied") from None
    except ValueError:
        raise ConfigError(f"{path} is not a PEM certificate") from None


def _load_certificate(path: Path) -> x509.Certificate:
    return _load_certificates(path)[0]


def _moment(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, dt.UTC)


def _validity(cert: x509.Certificate, now: float) -> tuple[bool, str]:
    """Whether ``cert`` is valid for more than :data:`EXPIRY_WARNING_DAYS` days, and why not."""
    moment = _moment(now)
    until = cert.not_valid_after_utc
    when = until.strftime("%Y-%m-%d %H:%M UTC")
    if moment < cert.not_valid_before_utc:
        since = cert.not_valid_before_utc.strftime("%Y-%m-%d %H:%M UTC")
        return False, f"not valid before {since} (is this machine's clock right?)"
    if until <= moment:
        return False, f"EXPIRED on {when}"
    days_left = (until - moment) / dt.timedelta(days=1)
    if days_left < EXPIRY_WARNING_DAYS:
        return False, f"expires in {days_left:.0f} days, on {when}"
    return True, f"valid until {when} ({days_left:.0f} days)"


def _rotate_ca(site: Site) -> str:
    return (
        f"smartlock rotate ca {_site_arg(site)}; give devices that keep their own ca.crt "
        f"(enrolled guests) the new one; then smartlock rotate ca --finish {_site_arg(site)}"
    )


def check_ca_certificate(site: Site, *, now: float) -> Check:
    """Every CA certificate in ca.crt parses and is valid for more than 30 days.

    ca.crt holds two during a CA rotation (:func:`smartlock.broker.start_ca_rotation`): the
    current CA's and the next one's.  A started rotation passes with a note; it fails only when
    the next CA cannot be read (it could not be finished)."""
    name = "CA certificate"
    try:
        certs = _load_certificates(site.ca_cert)
    except ConfigError as exc:
        return _failed(
            name,
            str(exc),
            "restore ca.crt from a backup (any client's copy is the same file): without it no "
            "client can verify the broker",
        )
    try:
        incoming = next_ca(site)
    except ConfigError as exc:
        return _failed(
            name,
            f"a CA rotation is started, but its new CA cannot be used: {exc}",
            f"restore ca/next.key from a backup; if it is lost, remove {site.next_ca_cert} and "
            f"start again: {_rotate_ca(site)}",
        )
    next_cert = None if incoming is None else x509.load_pem_x509_certificate(incoming.cert_pem)
    validities = [(cert, *_validity(cert, now)) for cert in certs]
    if len(certs) == 1:
        _, ok, validity = validities[0]
        details = [validity]
    else:
        ok = all(valid for _, valid, _ in validities)
        details = [
            f"{'next' if cert == next_cert else 'current'} CA {validity}"
            for cert, _, validity in validities
        ]
    if incoming is not None:
        note = (
            f"a CA rotation is started: once every device that keeps its own ca.crt has the "
            f"new one, smartlock rotate ca --finish {_site_arg(site)}"
        )
        details.append(note)
        finish = f"smartlock rotate ca --finish {_site_arg(site)}"
        if any(not valid and cert == next_cert for cert, valid, _ in validities):
            fix = f"{finish}, then rotate again to a CA that lasts longer: {_rotate_ca(site)}"
        else:
            fix = f"{finish} (a CA rotation is started)"
    else:
        fix = f"{_rotate_ca(site)} (before the CA expires)"
        if site.next_ca_cert.exists():
            details.append(
                "ca/next.crt is left by a 'smartlock rotate ca' that did not complete: run it "
                "again to start the rotation"
            )
    detail = "; ".join(details)
    return _passed(name, detail) if ok else _failed(name, detail, fix)


def _hostnames(cert: x509.Certificate) -> list[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(value) for value in names.get_values_for_type(x509.DNSName)] + [
        str(value) for value in names.get_values_for_type(x509.IPAddress)
    ]


def _issuer(cert: x509.Certificate, cas: Sequence[x509.Certificate]) -> int | None:
    """The index of the CA in ``cas`` that signed ``cert``, or None."""
    for index, ca in enumerate(cas):
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return index
    return None


def check_broker_certificate(site: Site, *, now: float) -> Check:
    """broker/broker.crt parses, a CA of ca.crt signed it (there are two during a CA rotation),
    it names the site's broker host and it is valid for more than 30 days."""
    name = "broker certificate"
    hosts = ", ".join(broker_hostnames(site))
    recreate = f"smartlock rotate broker-cert {_site_arg(site)} (a new one for {hosts})"
    try:
        cert = _load_certificate(site.broker_dir / "broker.crt")
        cas = _load_certificates(site.ca_cert)
    except ConfigError as exc:
        return _failed(name, str(exc), recreate)
    issuer = _issuer(cert, cas)
    if issuer is None:
        return _failed(name, "not signed by the site CA (ca.crt)", recreate)
    names = _hostnames(cert)
    if site.broker_host not in names:
        return _failed(
            name, f"made for {', '.join(names) or 'no host'}, not for {site.broker_host}", recreate
        )
    ok, validity = _validity(cert, now)
    if not ok:
        return _failed(name, validity, recreate)
    signer = "the site CA" if len(cas) == 1 else f"CA {issuer + 1} of the {len(cas)} in ca.crt"
    return _passed(name, f"signed by {signer}, for {', '.join(names)}; {validity}")


# --- broker --------------------------------------------------------------------------------------


def check_broker(site: Site, *, timeout_s: float = BROKER_TIMEOUT_S) -> Check:
    """The broker answers at the site's host and port with a TLS handshake verified against the
    site CA and the host name.  No MQTT login (see the module's docstring)."""
    name = "broker"
    address = f"{site.broker_host}:{site.broker_port}"
    start = f"smartlock broker {_site_arg(site)}"
    try:
        context = client_tls_context(site)
    except (OSError, ssl.SSLError) as exc:
        return _failed(
            name,
            f"cannot read the site CA {site.ca_cert}: {exc}",
            "restore ca.crt (see the CA certificate check)",
        )
    try:
        with (
            socket.create_connection((site.broker_host, site.broker_port), timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=site.broker_host) as tls,
        ):
            version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return _failed(
            name,
            f"{address} answers, but its certificate does not verify: {exc.verify_message}",
            f"is another server on that port? Stop it, check the broker certificate, and "
            f"restart '{start}'",
        )
    except (ssl.SSLError, ConnectionResetError) as exc:
        return _failed(
            name,
            f"{address} answers but does not speak TLS ({exc})",
            f"is another server on that port? Stop it and start '{start}'",
        )
    except TimeoutError:
        return _failed(name, f"{address} did not answer within {timeout_s:g} s", start)
    except OSError as exc:
        return _failed(name, f"not reachable at {address}: {exc.strerror or exc}", start)
    return _passed(name, f"TLS handshake with {address} verified ({version}); no login made")


# --- store ---------------------------------------------------------------------------------------


def _first_line(exc: BaseException, password: str | None) -> str:
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    line = lines[0].strip() if lines else type(cause).__name__
    return line.replace(password, "***") if password else line


@contextlib.contextmanager
def open_engine(site: Site, db: str | None = None) -> Iterator[Engine]:
    """An engine on the site's database with smartlock's settings, never migrated and never
    creating a SQLite file; ConfigError when it cannot be opened."""
    from smartlock.adapters.store import database

    url = database.parse_url(site.database_url(db))
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        raise ConfigError(f"no database at {url.database}")
    engine = database.create(url)
    try:
        yield engine
    finally:
        engine.dispose()


def schema_revisions(engine: Engine) -> tuple[tuple[str, ...], tuple[str, ...], set[str]]:
    """The database's Alembic revisions, the newest ones smartlock knows, and all it knows.

    Read only: Alembic's migration context reads ``alembic_version`` (absent: no revision)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from smartlock.adapters.store import database

    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
        script = ScriptDirectory.from_config(database.alembic_config(connection))
    known = {revision.revision for revision in script.walk_revisions()}
    return tuple(current), tuple(script.get_heads()), known


def check_store(site: Site, db: str | None = None) -> Check:
    """The store opens and its schema is at the newest revision (doctor does not upgrade it)."""
    from sqlalchemy.exc import SQLAlchemyError

    from smartlock.adapters.store import database

    name = "store"
    with_db = " (with the same --db)" if db else ""
    try:
        url = database.parse_url(site.database_url(db))
        with open_engine(site, db) as engine:
            current, heads, known = schema_revisions(engine)
    except ConfigError as exc:
        return _failed(
            name, str(exc), f"is --db right? 'smartlock init' creates the store{with_db}"
        )
    except SQLAlchemyError as exc:
        return _failed(
            name,
            f"cannot open {database.safe_url(url)}: {_first_line(exc, url.password)}",
            "is the database server running and the URL (--db or site.json) right?",
        )
    kind = url.get_backend_name()
    if not current:
        return _failed(
            name,
            f"{database.safe_url(url)} holds no smartlock schema",
            f"is --db right? 'smartlock init' creates the store{with_db}",
        )
    unknown = [revision for revision in current if revision not in known]
    if unknown:
        return _failed(
            name,
            f"schema revision {', '.join(unknown)} is unknown: a newer smartlock wrote it",
            "upgrade smartlock to the version that wrote this store",
        )
    if set(current) != set(heads):
        return _failed(
            name,
            f"{kind}, schema at revision {', '.join(current)}; the newest is {', '.join(heads)}",
            f"back up the store, then open it once with this smartlock: "
            f"'smartlock status {_site_arg(site)}'{with_db} upgrades it",
        )
    return _passed(name, f"{kind}, schema at the newest revision ({', '.join(heads)})")


# --- locks ---------------------------------------------------------------------------------------


def _lock_run(site: Site, lock_id: str) -> str:
    return f"smartlock lock run --id {lock_id} {_site_arg(site)}"


def check_revocations(
    site: Site, locks: Sequence[LockRecord], health: Mapping[str, LockHealth | None]
) -> Check:
    """Every lock has applied (and reported in its heartbeat) the revocation list version the
    store holds for it.  A lock behind may still accept a revoked pass's key."""
    name = "revocations"
    behind = []
    for lock in locks:
        reported = health.get(lock.lock_id)
        if reported is None:
            behind.append(
                (lock.lock_id, f"{lock.lock_id} never reported (store v{lock.revocation_version})")
            )
        elif reported.revocation_version_applied < lock.revocation_version:
            behind.append(
                (
                    lock.lock_id,
                    f"{lock.lock_id} applied v{reported.revocation_version_applied}, "
                    f"the store has v{lock.revocation_version}",
                )
            )
    if not behind:
        versions = ", ".join(f"{lock.lock_id} v{lock.revocation_version}" for lock in locks)
        return _passed(name, f"every lock applied its list ({versions or 'no locks'})")
    fix = (
        f"bring {'the lock' if len(behind) == 1 else 'each lock'} online "
        f"({'; '.join(_lock_run(site, lock_id) for lock_id, _ in behind)}): the backend "
        "republishes the list, the lock applies it before anything else and its next "
        "heartbeat reports it"
    )
    return _failed(name, "; ".join(why for _, why in behind), fix)


UPDATE_PENDING_S = 3600  # a pushed update not settled within an hour is reported


def check_updates(site: Site, updates: Sequence[LockUpdate], *, now: float) -> Check:
    """Every pushed update was applied: a lock still on it after an hour (offline? not
    supervised?), or one that refused it or rolled it back, is reported with what to do."""
    name = "updates"
    problems: list[tuple[str, str]] = []
    pending = []
    for update in updates:
        if not update.bundle_id:
            continue
        lock = update.lock_id
        if update.settled:
            if update.step == "refused":
                problems.append(
                    (
                        f"{lock} refused {update.version} ({update.reason})",
                        "push a bundle the lock accepts: signed by the pinned release key, for "
                        "its model, above every version it ever installed",
                    )
                )
            elif update.step == "rolled_back":
                problems.append(
                    (
                        f"{lock} rolled {update.version} back ({update.reason}); it runs "
                        f"{update.running_version or 'the previous version'}",
                        "fix the release and push it as a higher version (a rolled-back "
                        "version is never installed again)",
                    )
                )
            continue
        age = int(now - update.pushed_at)
        where = f"{lock}: {update.version} {update.step} for {age} s"
        if age > UPDATE_PENDING_S:
            problems.append(
                (
                    where,
                    f"bring it online supervised (smartlock lock supervise --id {lock} "
                    f"--site {shlex.quote(str(site.root))}): an agent without a supervisor "
                    "refuses updates",
                )
            )
        else:
            pending.append(where)
    if problems:
        return _failed(
            name, "; ".join(why for why, _ in problems), "; ".join(fix for _, fix in problems)
        )
    if pending:
        return _passed(name, "under way: " + "; ".join(pending))
    applied = [u for u in updates if u.bundle_id]
    if not applied:
        return _passed(name, "no update pushed")
    return _passed(
        name, "applied: " + ", ".join(f"{u.lock_id} {u.running_version}" for u in applied)
    )


def check_lock_health(site: Site, lock_id: str, health: LockHealth | None, *, now: float) -> Check:
    """The lock is online with a heartbeat within two intervals (plus the backend's second of
    grace) of ``now``."""
    name = f"lock {lock_id}"
    run = _lock_run(site, lock_id)
    if health is None or health.last_heartbeat is None:
        return _failed(name, "never heard from: no heartbeat recorded", run)
    age = now - health.last_heartbeat
    ago = f"last heartbeat {max(0, age):.0f} s ago"
    if not health.online:
        return _failed(
            name, f"OFFLINE since {_moment(health.changed_at):%Y-%m-%d %H:%M:%S} UTC; {ago}", run
        )
    limit = 2 * site.heartbeat_s + 1
    if age > limit:
        return _failed(
            name,
            f"marked online, but silent for {age:.0f} s (heartbeat every {site.heartbeat_s} s)",
            f"the backend records heartbeats: start it if it is not running "
            f"(smartlock backend {_site_arg(site)}); otherwise restart the lock ({run})",
        )
    return _passed(name, f"online, {ago}")


def check_clocks(
    site: Site, locks: Sequence[LockRecord], health: Mapping[str, LockHealth | None], *, now: float
) -> Check:
    """No lock's clock runs ahead of ``now`` by more than the command window.

    The last heartbeat carries the lock's own time.  Only a clock running *ahead* shows: the
    backend drops heartbeats older than two intervals, so a lock whose clock is far behind looks
    silent (offline) instead, and an ahead clock is underestimated by the heartbeat's age."""
    name = "clocks"
    window = site.command_window_s
    if not any(h is not None and h.last_heartbeat is not None for h in health.values()):
        return _passed(name, "no heartbeat yet to compare with this machine's clock")
    ahead = []
    for lock in locks:
        reported = health.get(lock.lock_id)
        if reported is not None and reported.last_heartbeat is not None:
            skew = reported.last_heartbeat - now
            if skew > window:
                ahead.append(f"{lock.lock_id}'s clock is at least {skew:.0f} s ahead")
    note = "only a clock running ahead can be seen from the heartbeats"
    if not ahead:
        return _passed(name, f"no lock's clock is more than {window} s ahead ({note})")
    return _failed(
        name,
        f"{'; '.join(ahead)}: more than the command window ({window} s), so remote commands "
        f"are refused as stale ({note})",
        "synchronise the lock's clock with NTP (e.g. 'timedatectl set-ntp true' on the lock)",
    )


def check_audit(store: Store) -> Check:
    """The audit log's chain of MACs verifies (:meth:`Store.verify_audit`)."""
    name = "audit log"
    broken = store.verify_audit()
    if broken is None:
        newest = store.audit_entries(limit=1)
        return _passed(name, f"intact, {newest[0].seq if newest else 0} entries")
    return _failed(
        name,
        f"TAMPERED: first broken entry #{broken}",
        "the log was altered and cannot be repaired: keep a copy of the database as evidence, "
        "look at the entries around it ('smartlock audit') and at who could write the database",
    )


# --- all of them -----------------------------------------------------------------------------


def store_checks(site: Site, *, db: str | None = None, now: float) -> list[Check]:
    """The store's schema, then (when it is at the newest revision) revocations, each lock's
    health, the locks' clocks and the audit chain, read from it."""
    from sqlalchemy.exc import SQLAlchemyError

    from smartlock.adapters.store import Store

    schema = check_store(site, db)
    if not schema.ok:
        skipped = (
            "revocations",
            "updates",
            *(f"lock {lock}" for lock in site.locks),
            "clocks",
            "audit log",
        )
        return [schema] + [
            _failed(name, "not checked: the store is not usable", "fix the store first")
            for name in skipped
        ]
    checks = [schema]
    try:
        audit_key: bytes | None = site.secret(site.audit_key_path)
    except ConfigError as exc:
        audit_key, missing_key = None, str(exc)
    try:
        with open_engine(site, db) as engine:
            # Reading locks and health never uses the audit key; check_audit needs the real one.
            store = Store(engine, audit_key=audit_key or bytes(32))
            locks = store.list_locks()
            health = {lock.lock_id: store.lock_health(lock.lock_id) for lock in locks}
            checks.append(check_revocations(site, locks, health))
            checks.append(check_updates(site, store.lock_updates(), now=now))
            checks += [
                check_lock_health(site, lock.lock_id, health[lock.lock_id], now=now)
                for lock in locks
            ]
            checks.append(check_clocks(site, locks, health, now=now))
            if audit_key is None:
                checks.append(
                    _failed(
                        "audit log",
                        f"cannot verify: {missing_key}",
                        "restore backend/audit.key from a backup",
                    )
                )
            else:
                checks.append(check_audit(store))
    except (SQLAlchemyError, ConfigError) as exc:
        checks.append(
            _failed(
                "store reads",
                f"reading the store failed: {_first_line(exc, None)}",
                "is the database server still running? Run doctor again",
            )
        )
    return checks


def run_checks(site: Site, *, db: str | None = None, now: float) -> list[Check]:
    """Every check, in the order of the report."""
    return [
        *permission_checks(site),
        check_ca_certificate(site, now=now),
        check_broker_certificate(site, now=now),
        check_broker(site),
        *store_checks(site, db=db, now=now),
    ]
