"""What an owner manages -- users, locks, passes -- in the store *and* the site, kept in step.

A user or lock has two halves: who they are and may do (the store: role, passes) and their key
pair and broker account (the site directory, the broker's password file and ACL).  Each
operation here changes the store first, then the site, then makes a running broker reload its
files (SIGHUP: no restart, no dropped session).  The CLI, the demo and the tests all go
through these functions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from smartlock import broker, crypto
from smartlock.adapters.store import Store, database
from smartlock.core.errors import ConfigError
from smartlock.core.invitation import InvitationCode
from smartlock.core.issuance import DEFAULT_KEY_TTL_S
from smartlock.core.passes import WeeklyHours
from smartlock.core.records import AuditRecord, Invitation, LockRecord, PassRecord, UserRecord
from smartlock.core.roles import Role
from smartlock.core.wire import check_identifier
from smartlock.site import (
    DEFAULT_HEARTBEAT_S,
    RESERVED_IDS,
    Site,
    add_identity,
    enroll_identity,
    provision_site,
    remove_identity,
)

DEFAULT_PASS_DAYS = 30
# ASCII digits only ('²'.isdigit() holds, int('²') fails), at most 12: more are out of range anyway,
# and int() refuses more than 4300.
_RELATIVE_FUTURE = re.compile(r"\+([0-9]{1,12})([mhd])")
MAX_PASS_USES = 0xFFFF  # a key carries the use limit in 16 bits


@contextmanager
def open_store(site: Site, db: str | None = None, *, create: bool = False) -> Iterator[Store]:
    """The site's store (``db`` overrides the URL in site.json), migrated to the newest schema.

    A SQLite file that does not exist is an error here (a mistyped ``--db`` must not quietly
    create an empty store); only ``smartlock init`` creates one.
    """
    url = site.database_url(db)
    if not create:
        _refuse_missing_sqlite_file(url)
    store = Store.open(url, audit_key=site.secret(site.audit_key_path))
    try:
        yield store
    finally:
        store.close()


def _now() -> int:
    return int(time.time())


def _refuse_missing_sqlite_file(url: str) -> None:
    parsed = database.parse_url(url)
    sqlite_file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if sqlite_file and not Path(sqlite_file).exists():
        raise ConfigError(
            f"no database at {parsed.database} (is --db right? 'smartlock init' creates it)"
        )


def _refuse_a_database_in_use(db: str) -> None:
    """``init --db URL`` must not write a second site into a database that holds one: the
    first site's audit log would be unverifiable without its key, which init would replace."""
    with Store.open(db, audit_key=bytes(32)) as store:
        users, locks = store.list_users(include_removed=True), store.list_locks()
    if users or locks:
        raise ConfigError(
            f"that database already holds a site ({len(users)} users, {len(locks)} locks); "
            "use an empty database (or PostgreSQL schema) for a new site"
        )


def create_site(
    root: Path,
    *,
    locks: list[str],
    owners: list[str],
    residents: Sequence[str] = (),
    guests: Sequence[str] = (),
    passes: list[tuple[str, str]] | None = None,
    pass_days: int = DEFAULT_PASS_DAYS,
    db: str | None = None,
    now: int | None = None,
    broker_host: str = "127.0.0.1",
    broker_port: int,
    session_ttl_s: int = DEFAULT_KEY_TTL_S,
    heartbeat_s: int = DEFAULT_HEARTBEAT_S,
    timezone: str = "UTC",
    force: bool = False,
) -> Site:
    """Provision a site and its store: users with their roles, locks, and guest passes.

    ``passes`` are (guest, lock) pairs, valid from now for ``pass_days`` days, unlimited uses;
    by default every guest gets one on every lock.
    """
    now = _now() if now is None else now
    users = [*owners, *residents, *guests]
    if not owners:
        raise ConfigError("a site needs an owner (--owner)")
    if not 1 <= pass_days <= 3660:
        raise ConfigError("passes last 1..3660 days")
    pairs = passes if passes is not None else [(g, lk) for g in guests for lk in locks]
    for guest, lock_id in pairs:  # checked before anything is written
        if guest not in guests:
            raise ConfigError(f"pass for {guest!r}, who is not one of the guests (--guest)")
        if lock_id not in locks:
            raise ConfigError(f"pass on {lock_id!r}, which is not one of the locks (--lock)")
    if db is not None:  # an outside database: usable and empty, before anything is written
        _refuse_a_database_in_use(db)
    site = provision_site(
        root,
        locks=locks,
        users=users,
        store_url=db,
        broker_host=broker_host,
        broker_port=broker_port,
        session_ttl_s=session_ttl_s,
        heartbeat_s=heartbeat_s,
        timezone=timezone,
        force=force,
    )
    with open_store(site, create=True) as store:
        for lock_id in locks:
            store.add_lock(lock_id, now=now)
        for role, names in ((Role.OWNER, owners), (Role.RESIDENT, residents), (Role.GUEST, guests)):
            for name in names:
                store.add_user(name, role, now=now)
        for guest, lock_id in pairs:
            store.grant_pass(
                guest,
                lock_id,
                valid_from=now,
                valid_until=now + pass_days * 86400,
                max_uses=None,
                weekly_hours=None,
                now=now,
            )
    return site


def _check_new_identity(site: Site, name: str, what: str) -> None:
    """Refuse a name the site cannot take, before anything is written anywhere."""
    try:
        check_identifier(name, what)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if name in RESERVED_IDS:
        raise ConfigError(f"{name!r} is a reserved name")
    taken = site.locks if what == "user name" else site.users
    if name in taken:
        kind = "lock" if what == "user name" else "user"
        raise ConfigError(f"{name!r} is already a {kind} of this site")


def audit_admin(store: Store, who: str, lock_id: str, action: str, detail: str) -> None:
    """Management actions go to the audit log too: who was added, which pass revoked, ..."""
    store.append_audit(
        AuditRecord(
            at_ms=int(time.time() * 1000),
            who=who,
            role="",
            lock_id=lock_id,
            channel="admin",
            action=action,
            result="info",
            reason=detail,
        )
    )


def add_user(
    site: Site, name: str, role: Role, *, db: str | None = None
) -> tuple[Site, UserRecord, bool]:
    """Add ``name`` with ``role``: store, key pair, broker account.  Returns whether a running
    broker reloaded."""
    _check_new_identity(site, name, "user name")
    with open_store(site, db) as store:
        record = store.add_user(name, role, now=_now())
        if name not in site.users:
            try:
                site = add_identity(site, name, lock=False)
            except BaseException:  # no user in the store without a key pair and an account
                store.remove_user(name, now=_now())
                raise
        audit_admin(store, name, "", "user_add", role.value)
    return site, record, broker.reload_broker(site)


def remove_user(site: Site, name: str, *, db: str | None = None) -> tuple[Site, list[int], bool]:
    """Remove ``name``: their passes are revoked (locks learn it), their account deleted.

    The last owner cannot be removed: nobody could manage the site any more.
    """
    with open_store(site, db) as store:
        user = store.get_user(name)
        owners = [u for u in store.list_users() if u.role is Role.OWNER]
        if user is not None and user.active and user.role is Role.OWNER and len(owners) == 1:
            raise ConfigError(f"{name} is the site's last owner; add another owner first")
        revoked = store.remove_user(name, now=_now())
        audit_admin(store, name, "", "user_remove", f"passes revoked: {len(revoked)}")
    if name in site.users:
        site = remove_identity(site, name)
    return site, revoked, broker.reload_broker(site)


def add_lock(site: Site, lock_id: str, *, db: str | None = None) -> tuple[Site, LockRecord, bool]:
    _check_new_identity(site, lock_id, "lock id")
    with open_store(site, db) as store:
        existing = store.get_lock(lock_id)
        if existing is not None and lock_id not in site.locks:
            record = existing  # a previous 'lock add' stopped half-way: finish it
        else:
            record = store.add_lock(lock_id, now=_now())
        if lock_id not in site.locks:
            site = add_identity(site, lock_id, lock=True)
        audit_admin(store, "", lock_id, "lock_add", "")
    return site, record, broker.reload_broker(site)


def reset_lock(site: Site, lock_id: str, *, db: str | None = None) -> LockRecord:
    """A new command key epoch for ``lock_id`` (the backend hands the lock its new key)."""
    with open_store(site, db) as store:
        record = store.reset_lock(lock_id)
        audit_admin(store, "", lock_id, "lock_reset", f"command key epoch {record.command_epoch}")
        return record


def parse_when(text: str, zone: dt.tzinfo, *, now: int) -> int:
    """``now``, ``+2h`` / ``+30m`` / ``+7d``, or an ISO date-time (site time zone if naive)."""
    text = text.strip()
    if text == "now":
        return now
    relative = _RELATIVE_FUTURE.fullmatch(text)
    if relative:
        unit = {"m": 60, "h": 3600, "d": 86400}[relative[2]]
        return _within_range(text, now + int(relative[1]) * unit)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"cannot read the time {text!r}: use 'now', '+2h', '+30m', '+7d' or '2026-12-24T18:00'"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return _within_range(text, int(moment.timestamp()))


LATEST_TIME = 2**32 - 1  # messages carry times as u32 seconds (early 2106)


def _within_range(text: str, moment: int) -> int:
    if not 0 <= moment <= LATEST_TIME:
        raise ConfigError(f"the time {text!r} is out of range (1970 to 2106)")
    return moment


def grant_pass(
    site: Site,
    guest: str,
    lock_id: str,
    *,
    valid_from: str = "now",
    valid_until: str = f"+{DEFAULT_PASS_DAYS}d",
    max_uses: int | None = None,
    weekly_hours: str | None = None,
    db: str | None = None,
) -> PassRecord:
    with open_store(site, db) as store:
        return grant_pass_in(
            store,
            site,
            guest,
            lock_id,
            valid_from=valid_from,
            valid_until=valid_until,
            max_uses=max_uses,
            weekly_hours=weekly_hours,
        )


def grant_pass_in(
    store: Store,
    site: Site,
    guest: str,
    lock_id: str,
    *,
    valid_from: str = "now",
    valid_until: str = f"+{DEFAULT_PASS_DAYS}d",
    max_uses: int | None = None,
    weekly_hours: str | None = None,
    by: str = "",
) -> PassRecord:
    """Grant a pass in an open store (the CLI and the dashboard); bad input: ConfigError or
    StoreError with a message for the person who typed it."""
    now = _now()
    start = parse_when(valid_from, site.zone, now=now)
    end = parse_when(valid_until, site.zone, now=now)
    hours = None
    if weekly_hours is not None:
        try:
            hours = str(WeeklyHours.parse(weekly_hours))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if max_uses is not None and not 1 <= max_uses <= MAX_PASS_USES:
        raise ConfigError(f"--uses must be 1..{MAX_PASS_USES}")
    record = store.grant_pass(
        guest,
        lock_id,
        valid_from=start,
        valid_until=end,
        max_uses=max_uses,
        weekly_hours=hours,
        now=now,
    )
    audit_admin(store, guest, lock_id, "pass_grant", f"pass {record.pass_id}{_by(by)}")
    return record


def revoke_pass(site: Site, pass_id: int, *, db: str | None = None) -> PassRecord:
    with open_store(site, db) as store:
        return revoke_pass_in(store, pass_id)


def revoke_pass_in(store: Store, pass_id: int, *, by: str = "") -> PassRecord:
    record = store.revoke_pass(pass_id, now=_now())
    audit_admin(store, record.guest, record.lock_id, "pass_revoke", f"pass {pass_id}{_by(by)}")
    return record


INVITATION_TTL_S = 24 * 3600
MAX_INVITATION_URL = 512  # with the site name (a directory name, <= 255), the text stays < 2048


def invite_in(
    store: Store, site: Site, pass_id: int, *, url: str, by: str = "", ttl_s: int = INVITATION_TTL_S
) -> tuple[InvitationCode, Invitation]:
    """A one-time invitation for the guest of a pass: the code to show (QR or text) and its
    record.  The store keeps only the code's SHA-256."""
    if not 60 <= ttl_s <= 30 * 86400:
        raise ConfigError("an invitation lasts 1 minute to 30 days")
    if len(url) > MAX_INVITATION_URL:
        raise ConfigError(
            f"the dashboard URL is too long for an invitation (max {MAX_INVITATION_URL})"
        )
    now = _now()
    code = secrets.token_urlsafe(16)
    invitation = store.create_invitation(
        crypto.token_digest(code), pass_id, created_by=by, now=now, expires_at=now + ttl_s
    )
    text = InvitationCode(
        site=site.name,
        guest=invitation.guest,
        url=url.rstrip("/"),
        code=code,
        ca_sha256=hashlib.sha256(site.ca_cert.read_bytes()).hexdigest(),
    )
    audit_admin(store, invitation.guest, invitation.lock_id, "invite", f"pass {pass_id}{_by(by)}")
    return text, invitation


def _by(actor: str) -> str:
    return f" by {actor}" if actor else ""


def with_settings(site: Site, **changes: object) -> Site:
    """The site with some settings changed (heartbeat, lockout, ...), saved to site.json."""
    from smartlock.site import save_site

    updated = dataclasses.replace(site, **changes)  # type: ignore[arg-type]
    save_site(updated)
    return updated


def set_web_password(site: Site, name: str, password: str, *, db: str | None = None) -> None:
    """Give an owner, resident or guest a dashboard password (signs out its sessions)."""
    if len(password) < 12:
        raise ConfigError("a dashboard password needs at least 12 characters")
    if len(password) > 1024:
        raise ConfigError("a dashboard password is at most 1024 characters")
    with open_store(site, db) as store:
        store.set_web_password(name, crypto.hash_password(password), now=_now())
        audit_admin(store, name, "", "web_password", "dashboard password set")


def enroll_guest(site: Site, invitation: Invitation, public_key_pem: bytes) -> tuple[Site, str]:
    """The guest's own public key and a fresh broker password, from a redeemed invitation;
    returns the site as read again and the password (for the guest's device only)."""
    site = Site.load(site.root)  # users may have been added since the backend started
    password = enroll_identity(site, invitation.guest, public_key_pem)
    broker.reload_broker(site)
    return site, password


@dataclasses.dataclass(frozen=True)
class TotpEnrollment:
    """What an owner's authenticator app and safe place receive, shown once: the secret (also
    inside the URI) and the recovery codes, each usable once."""

    secret: str = dataclasses.field(repr=False)
    uri: str = dataclasses.field(repr=False)
    recovery_codes: tuple[str, ...] = dataclasses.field(repr=False)


def set_web_totp(site: Site, name: str, *, db: str | None = None) -> TotpEnrollment:
    """Turn on (or renew) an owner's TOTP second factor for the dashboard: a new secret, stored
    sealed, and new recovery codes, stored as their SHA-256; signs out the owner's sessions."""
    from smartlock.core import second_factor

    with open_store(site, db) as store:
        user = store.get_user(name)
        if user is None or not user.active:
            raise ConfigError(f"unknown user {name}")
        if user.role is not Role.OWNER:
            raise ConfigError(
                f"{name} is a {user.role.value}: only owners can have a second factor"
            )
        secret = crypto.new_totp_secret()
        codes = second_factor.make_recovery_codes(crypto.random_bytes)
        store.set_web_totp(name, secret, [crypto.token_digest(code) for code in codes], now=_now())
        audit_admin(store, name, "", "web_totp", "second factor set; sessions signed out")
    return TotpEnrollment(
        secret=secret,
        uri=crypto.totp_provisioning_uri(secret, account=name, issuer=f"smartlock {site.name}"),
        recovery_codes=tuple(second_factor.format_recovery_code(code) for code in codes),
    )


def remove_web_totp(site: Site, name: str, *, db: str | None = None) -> None:
    """Turn a user's second factor off: the password alone signs in again."""
    with open_store(site, db) as store:
        if not store.remove_web_totp(name):
            raise ConfigError(f"{name} has no second factor")
        audit_admin(store, name, "", "web_totp", "second factor removed")
