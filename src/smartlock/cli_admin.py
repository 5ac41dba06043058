"""Management commands: users, passes, locks, the audit log, status, alerts, remote commands.

A thin front over :mod:`smartlock.admin` (users, locks, passes: store, site and broker kept in
step), the store's read side (lists, the audit log and its verification, lock health) and
:mod:`smartlock.services.remote` (alerts, remote lock / unlock).  Every user mistake ends as one
``error: ...`` line and exit code 2; times are shown in the site's time zone.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import json
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from smartlock.cli_common import (
    DEFAULT_SITE,
    DbOption,
    SiteOption,
    VerboseOption,
    fail,
    load_site,
    run,
    setup_logging,
)
from smartlock.core.errors import ConfigError, SmartlockError, explain
from smartlock.core.messages import Action
from smartlock.core.records import PASS_ID_MAX
from smartlock.core.roles import Role

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from smartlock.adapters.store import AuditEntry, LockHealth, LockRecord, PassRecord
    from smartlock.core.alerts import Alert
    from smartlock.core.records import LockUpdate
    from smartlock.site import Site

_RELATIVE_PAST = re.compile(r"-([0-9]{1,12})([mhd])")  # more digits: out of range anyway
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}
UNBOUNDED_WIDTH = 10_000  # columns a table may take when it goes to a pipe or a file
# Integers the store can be asked about: larger ones overflow the database's column or LIMIT.
AUDIT_LIMIT_MAX = 2**63 - 1  # LIMIT is a signed 64-bit integer; a larger limit limits nothing
AUDIT_COLUMNS = (
    "seq", "time", "who", "role", "lock", "channel", "action", "result", "reason", "attempt",
)  # fmt: skip

user_app = typer.Typer(
    help="Add, list and remove the site's users (owners, residents, guests).",
    no_args_is_help=True,
)
pass_app = typer.Typer(
    help="Grant, list and revoke guests' passes (one lock, a time window, uses, weekly hours).",
    no_args_is_help=True,
)
audit_app = typer.Typer(invoke_without_command=True)
remote_app = typer.Typer(
    help="Lock or unlock a lock remotely, through the backend (owners and residents).",
    no_args_is_help=True,
)


def register(app: typer.Typer, lock_app: typer.Typer) -> None:
    """Add the management commands to ``app`` (and ``lock add|list|reset`` to ``lock_app``)."""
    app.add_typer(user_app, name="user")
    app.add_typer(pass_app, name="pass")
    app.add_typer(audit_app, name="audit")
    app.command("status")(status)
    app.command("watch")(watch)
    app.add_typer(remote_app, name="remote")
    lock_app.command("add")(lock_add)
    lock_app.command("list")(lock_list)
    lock_app.command("reset")(lock_reset)


# --- helpers -------------------------------------------------------------------------------------


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """A refusal of the library (unknown user, overlapping pass, bad time...) as ``error: ...``."""
    try:
        yield
    except (SmartlockError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None


def _now() -> int:
    return int(time.time())


def _iso(unix_seconds: float, zone: dt.tzinfo, *, ms: bool = False) -> str:
    moment = dt.datetime.fromtimestamp(unix_seconds, zone)
    return moment.isoformat(timespec="milliseconds" if ms else "seconds")


def _relative_past(text: str, now: int) -> int | None:
    """``-2h`` / ``-30m`` / ``-7d`` as Unix seconds before ``now``; None for any other text."""
    match = _RELATIVE_PAST.fullmatch(text.strip())
    if match is None:
        return None
    moment = now - int(match[1]) * _UNIT_S[match[2]]
    if moment < 0:
        raise ConfigError(f"the time {text!r} is out of range (1970 to 2106)")
    return moment


def parse_moment(text: str, zone: dt.tzinfo, *, now: int) -> int:
    """What :func:`smartlock.admin.parse_when` reads, and also ``-2h`` / ``-30m`` / ``-7d``."""
    from smartlock.admin import parse_when

    past = _relative_past(text, now)
    return past if past is not None else parse_when(text, zone, now=now)


def _absolute_when(text: str, zone: dt.tzinfo, now: int) -> str:
    """``text`` for :func:`smartlock.admin.grant_pass`, a relative past turned into ISO time."""
    past = _relative_past(text, now)
    return text if past is None else _iso(past, zone)


def _print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # a pipe or a file: whole rows, never cells folded at 80 columns
        unbounded = console.options.update_width(UNBOUNDED_WIDTH)
        console = Console(
            width=max(console.width, console.measure(table, options=unbounded).maximum)
        )
    console.print(table)


def _reload_note(reloaded: bool) -> str:
    if reloaded:
        return "The running broker reloaded its password file and ACL."
    return "No broker of this site is running: it reads the new password file and ACL at start."


def _inherited(ctx: typer.Context, name: str, value: Any) -> Any:
    """A subcommand's option, or its group's when only the group got it.

    ``smartlock audit --site X verify`` and ``smartlock audit verify --site X`` mean the same.

    An option counts as given when it came from the command line or the environment.
    """
    parent = ctx.parent
    source = ctx.get_parameter_source(name)
    if source is not None and source.name != "DEFAULT":
        return value
    parent_source = None if parent is None else parent.get_parameter_source(name)
    if parent is not None and parent_source is not None and parent_source.name != "DEFAULT":
        return parent.params[name]
    return value


# --- users ---------------------------------------------------------------------------------------


@user_app.command("add")
def user_add(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The new user's name (a-z, 0-9, _ and -).")
    ],
    role: Annotated[
        Role,
        typer.Option(
            "--role",
            case_sensitive=False,
            help="owner: everything; resident: any lock at any time; guest: only with a pass.",
        ),
    ],
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """Add a user with a role: a store record, a key pair and a broker account."""
    from smartlock.admin import add_user

    loaded = load_site(site)
    with user_errors():
        updated, record, reloaded = add_user(loaded, name, role, db=db)
    typer.echo(f"Added {record.role} {record.name}")
    typer.echo(f"  key pair and broker password in {updated.identity_dir(record.name)}")
    typer.echo(f"  broker account and ACL entries in {updated.broker_dir}")
    if record.role is Role.GUEST:
        typer.echo(f"  next: smartlock pass grant {record.name} LOCK --site {updated.root}")
    typer.echo(_reload_note(reloaded))


@user_app.command("list")
def user_list(
    include_removed: Annotated[
        bool, typer.Option("--all", help="Also list removed users.")
    ] = False,
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """List the users with their role and when they were added (and removed)."""
    from smartlock.admin import open_store

    loaded = load_site(site)
    with user_errors(), open_store(loaded, db) as store:
        users = store.list_users(include_removed=include_removed)
    if not users:
        typer.echo("no users")
        return
    zone = loaded.zone
    _print_table(
        "Users",
        ("name", "role", "created", "removed"),
        [
            (
                user.name,
                user.role.value,
                _iso(user.created_at, zone),
                "" if user.removed_at is None else _iso(user.removed_at, zone),
            )
            for user in users
        ],
    )


@user_app.command("remove")
def user_remove(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The user to remove.")],
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """Remove a user: revoke their passes, delete their key pair and broker account."""
    from smartlock.admin import remove_user

    loaded = load_site(site)
    with user_errors():
        _, revoked, reloaded = remove_user(loaded, name, db=db)
    typer.echo(f"Removed {name}")
    if revoked:
        typer.echo(f"  revoked passes: {', '.join(str(pass_id) for pass_id in revoked)}")
    else:
        typer.echo("  no passes to revoke")
    typer.echo("  key pair and broker account deleted")
    typer.echo(_reload_note(reloaded))


# --- passes --------------------------------------------------------------------------------------


def _pass_state(record: PassRecord, now: int) -> str:
    if record.revoked:
        return "revoked"
    if record.valid_until <= now:
        return "expired"
    if record.max_uses is not None and record.uses >= record.max_uses:
        return "used up"
    if record.valid_from > now:
        return "upcoming"
    return "active"


def _uses(record: PassRecord) -> str:
    return f"{record.uses}/{'unlimited' if record.max_uses is None else record.max_uses}"


@pass_app.command("grant")
def pass_grant(
    guest: Annotated[str, typer.Argument(metavar="GUEST", help="The guest who gets the pass.")],
    lock_id: Annotated[str, typer.Argument(metavar="LOCK", help="The lock it opens.")],
    valid_from: Annotated[
        str,
        typer.Option(
            "--from",
            help="Start: now, +2h, -30m, +7d, or an ISO date-time (site time zone if naive).",
        ),
    ] = "now",
    valid_until: Annotated[
        str, typer.Option("--until", help="End (excluded), written like --from.")
    ] = "+30d",
    uses: Annotated[
        int | None, typer.Option("--uses", help="At most this many openings (default: no limit).")
    ] = None,
    hours: Annotated[
        str | None,
        typer.Option(
            "--hours",
            help='Weekly hours in the site time zone, e.g. "mon-fri 08:00-18:00; sat 10:00-14:00" '
            "(default: any time).",
        ),
    ] = None,
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """Give a guest a pass to one lock for a time window, optionally limited in uses and hours."""
    from smartlock.admin import grant_pass

    loaded = load_site(site)
    now = _now()
    with user_errors():
        zone = loaded.zone
        record = grant_pass(
            loaded,
            guest,
            lock_id,
            valid_from=_absolute_when(valid_from, zone, now),
            valid_until=_absolute_when(valid_until, zone, now),
            max_uses=uses,
            weekly_hours=hours,
            db=db,
        )
    typer.echo(f"Pass {record.pass_id}: {record.guest} may open {record.lock_id}")
    typer.echo(f"  from   {_iso(record.valid_from, zone)}")
    typer.echo(f"  until  {_iso(record.valid_until, zone)}  ({loaded.timezone})")
    typer.echo(f"  uses   {'unlimited' if record.max_uses is None else record.max_uses}")
    typer.echo(f"  hours  {record.weekly_hours or 'any time'}")


@pass_app.command("list")
def pass_list(
    guest: Annotated[str | None, typer.Option("--guest", help="Only this guest's passes.")] = None,
    lock_id: Annotated[
        str | None, typer.Option("--lock", help="Only the passes to this lock.")
    ] = None,
    include_inactive: Annotated[
        bool, typer.Option("--all", help="Also list revoked and expired passes.")
    ] = False,
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """List passes with their window, uses, weekly hours and state."""
    from smartlock.admin import open_store

    loaded = load_site(site)
    now = _now()
    with user_errors(), open_store(loaded, db) as store:
        passes = store.list_passes(
            guest=guest, lock_id=lock_id, include_inactive=include_inactive, now=now
        )
    if not passes:
        typer.echo("no passes" if include_inactive else "no live passes (--all lists every pass)")
        return
    zone = loaded.zone
    _print_table(
        f"Passes (times in {loaded.timezone})",
        ("id", "guest", "lock", "from", "until", "uses/max", "hours", "state"),
        [
            (
                str(record.pass_id),
                record.guest,
                record.lock_id,
                _iso(record.valid_from, zone),
                _iso(record.valid_until, zone),
                _uses(record),
                record.weekly_hours or "any time",
                _pass_state(record, now),
            )
            for record in passes
        ],
    )


@pass_app.command("revoke")
def pass_revoke(
    pass_id: Annotated[
        int,
        typer.Argument(metavar="ID", min=1, max=PASS_ID_MAX, help="The pass id ('pass list')."),
    ],
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """Revoke a pass at once: the lock refuses keys issued under it from then on."""
    from smartlock.admin import open_store, revoke_pass

    loaded = load_site(site)
    with user_errors():
        record = revoke_pass(loaded, pass_id, db=db)
        with open_store(loaded, db) as store:
            lock = store.get_lock(record.lock_id)
    version = f" (revocation list v{lock.revocation_version})" if lock is not None else ""
    typer.echo(f"Revoked pass {record.pass_id} of {record.guest} on {record.lock_id}")
    typer.echo(
        f"{record.lock_id} learns it now if it is online{version}; otherwise when it reconnects, "
        "before it handles anything else."
    )


# --- locks ---------------------------------------------------------------------------------------


def lock_add(
    lock_id: Annotated[str, typer.Argument(metavar="ID", help="The new lock's id.")],
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """Add a lock: a store record, a key pair and a broker account."""
    from smartlock.admin import add_lock

    loaded = load_site(site)
    with user_errors():
        updated, record, reloaded = add_lock(loaded, lock_id, db=db)
    typer.echo(f"Added lock {record.lock_id}")
    typer.echo(f"  key pair and broker password in {updated.identity_dir(record.lock_id)}")
    typer.echo(f"  start it with: smartlock lock run --id {record.lock_id} --site {updated.root}")
    typer.echo(_reload_note(reloaded))


def lock_list(site: SiteOption = DEFAULT_SITE, db: DbOption = None) -> None:
    """List the locks with their command key epoch and revocation version."""
    from smartlock.admin import open_store

    loaded = load_site(site)
    with user_errors(), open_store(loaded, db) as store:
        locks = store.list_locks()
    if not locks:
        typer.echo("no locks")
        return
    zone = loaded.zone
    _print_table(
        "Locks",
        ("id", "added", "command epoch", "revocation version"),
        [
            (
                lock.lock_id,
                _iso(lock.added_at, zone),
                str(lock.command_epoch),
                str(lock.revocation_version),
            )
            for lock in locks
        ],
    )


def lock_reset(
    lock_id: Annotated[str, typer.Argument(metavar="ID", help="The lock to reset.")],
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """Give a lock a new command key (a new epoch), e.g. when the old one may have leaked."""
    from smartlock.admin import reset_lock

    loaded = load_site(site)
    with user_errors():
        record = reset_lock(loaded, lock_id, db=db)
    typer.echo(f"{record.lock_id}: new command key epoch {record.command_epoch}")
    typer.echo(
        "The backend derives the new command key and sends it to the lock, encrypted to the "
        "lock's key and retained, so an offline lock gets it when it reconnects. From then on "
        f"the lock refuses remote commands made under epoch {record.command_epoch - 1} or older."
    )


# --- audit ---------------------------------------------------------------------------------------


def _audit_row(entry: AuditEntry, zone: dt.tzinfo) -> dict[str, Any]:
    record = entry.record
    return {
        "seq": entry.seq,
        "time": _iso(record.at_ms / 1000, zone, ms=True),
        "who": record.who,
        "role": record.role,
        "lock": record.lock_id,
        "channel": record.channel,
        "action": record.action,
        "result": record.result,
        "reason": record.reason,
        "attempt": record.attempt,
    }


@audit_app.callback()
def audit(
    ctx: typer.Context,
    lock_id: Annotated[str | None, typer.Option("--lock", help="Only this lock's entries.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's entries.")] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only entries from WHEN on: -2h, -30m, -7d, now, or an ISO date-time "
            "(site time zone if naive).",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Only the newest N matching entries.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV: a header, then rows.")] = False,
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """Show the audit log (every attempt and event), or verify it with 'audit verify'.

    Columns: seq, time (site time zone), who, role, lock, channel, action, result, reason and
    attempt (failures of that subject within the intrusion window, this one included).
    """
    if ctx.invoked_subcommand is not None:
        return
    from smartlock.admin import open_store

    if as_json and as_csv:
        raise fail("choose one of --json and --csv")
    if limit is not None and limit < 1:
        raise fail("--limit must be at least 1")
    limit = None if limit is None else min(limit, AUDIT_LIMIT_MAX)
    loaded = load_site(site)
    with user_errors():
        zone = loaded.zone
        since_ms = None if since is None else parse_moment(since, zone, now=_now()) * 1000
        with open_store(loaded, db) as store:
            entries = store.audit_entries(lock_id=lock_id, who=user, since_ms=since_ms, limit=limit)
    rows = [_audit_row(entry, zone) for entry in entries]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif as_csv:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=AUDIT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        typer.echo(buffer.getvalue(), nl=False)
    elif not rows:
        typer.echo("no audit entries match")
    else:
        _print_table(
            f"Audit log (times in {loaded.timezone})",
            AUDIT_COLUMNS,
            [[str(row[column]) for column in AUDIT_COLUMNS] for row in rows],
        )


@audit_app.command("verify")
def audit_verify(ctx: typer.Context, site: SiteOption = DEFAULT_SITE, db: DbOption = None) -> None:
    """Check the audit log's chain of MACs: exit 0 when intact, 1 at the first altered entry."""
    from smartlock.admin import open_store

    loaded = load_site(_inherited(ctx, "site", site))
    with user_errors(), open_store(loaded, _inherited(ctx, "db", db)) as store:
        broken = store.verify_audit()
        newest = store.audit_entries(limit=1)
    if broken is not None:
        typer.secho(f"audit log TAMPERED: first broken entry #{broken}", fg=typer.colors.RED)
        raise typer.Exit(1)
    typer.echo(f"audit log intact: {newest[0].seq if newest else 0} entries")


# --- status --------------------------------------------------------------------------------------


def _update_status(update: LockUpdate | None) -> str:
    """The pushed update's last step, e.g. "1.1.0 installed" or "1.2.0 refused (not_newer)"."""
    if update is None or not update.step or (update.step == "running" and not update.bundle_id):
        return ""
    text = f"{update.step_version} {update.step}"
    if update.reason:
        text += f" ({update.reason})"
    if update.bundle_id and update.step_version != update.version:
        text += f"; {update.version} pushed"
    return text


def _lock_status(
    lock: LockRecord, health: LockHealth | None, site: Site, now: int, update: LockUpdate | None
) -> dict[str, Any]:
    applied = None if health is None else health.revocation_version_applied
    heartbeat = None if health is None else health.last_heartbeat
    age = None if heartbeat is None else max(0, now - heartbeat)
    silent_limit = 2 * site.heartbeat_s + 1  # the backend marks a lock offline after this
    return {
        "lock": lock.lock_id,
        "state": "unknown" if health is None else "online" if health.online else "offline",
        "last_heartbeat": None if heartbeat is None else _iso(heartbeat, site.zone),
        "heartbeat_age_s": age,
        "stale": bool(health and health.online and age is not None and age > silent_limit),
        "bolt": "unknown" if health is None else health.bolt_state,
        "revocation_version_applied": applied,
        "revocation_version": lock.revocation_version,
        "revocations": (
            "unknown" if applied is None
            else "pending" if applied < lock.revocation_version
            else "applied"
        ),
        "software": (update.running_version if update else "") or None,
        "update": _update_status(update) or None,
    }  # fmt: skip


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """Show each lock's health: online or offline, last heartbeat, bolt, revocations applied,
    the software version it runs and the last step of a pushed update."""
    from smartlock.admin import open_store

    loaded = load_site(site)
    now = _now()
    with user_errors(), open_store(loaded, db) as store:
        rows = [
            _lock_status(
                lock,
                store.lock_health(lock.lock_id),
                loaded,
                now,
                store.lock_update(lock.lock_id),
            )
            for lock in store.list_locks()
        ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no locks")
        return
    _print_table(
        f"Locks (times in {loaded.timezone})",
        (
            "lock",
            "state",
            "last heartbeat",
            "age",
            "bolt",
            "revocations (lock/store)",
            "software",
            "update",
        ),
        [
            (
                row["lock"],
                row["state"],
                row["last_heartbeat"] or "never",
                "" if row["heartbeat_age_s"] is None else f"{row['heartbeat_age_s']} s",
                row["bolt"],
                f"{row['revocation_version_applied'] or '-'}/{row['revocation_version']}"
                + (" pending" if row["revocations"] == "pending" else ""),
                row["software"] or "?",
                row["update"] or "",
            )
            for row in rows
        ],
    )
    for row in rows:
        if row["stale"]:
            typer.echo(
                f"{row['lock']}: marked online but silent for {row['heartbeat_age_s']} s: "
                "is the backend running?"
            )


# --- alerts and remote commands ------------------------------------------------------------------


UserIdOption = Annotated[str, typer.Option("--id", help="Which owner or resident you are.")]


def _check_user(site: Site, user: str) -> None:
    if user not in site.users:
        raise fail(f"no user {user!r} in site {site.root} (users: {', '.join(site.users)})")


def _check_receives_alerts(site: Site, user: str) -> None:
    """Only owners and residents are sent alerts: a guest would wait forever for nothing.

    Checked where the store is at hand (the backend's machine); elsewhere the broker's ACL
    still lets the user read only their own (empty) alert topic.
    """
    from smartlock.admin import open_store

    try:
        with open_store(site) as store:
            record = store.get_user(user)
    except SmartlockError:
        return
    if record is not None and not record.role.receives_alerts:
        raise fail(f"{user} is a {record.role.value}: only owners and residents receive alerts")


def watch(
    user: UserIdOption,
    count: Annotated[
        int | None, typer.Option("--count", help="Exit (0) after this many alerts.")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout", help="Give up after this many seconds (exit 1 if too few alerts came)."
        ),
    ] = None,
    site: SiteOption = DEFAULT_SITE,
    verbose: VerboseOption = False,
) -> None:
    """Print the backend's signed alerts (intrusions, locks offline / online) as they arrive."""
    from smartlock.services.remote import watch_alerts

    setup_logging(verbose)
    loaded = load_site(site)
    _check_user(loaded, user)
    _check_receives_alerts(loaded, user)
    if count is not None and count < 1:
        raise fail("--count must be at least 1")
    if timeout is not None and timeout <= 0:
        raise fail("--timeout must be a positive number of seconds")
    zone = loaded.zone

    async def receive() -> tuple[int, bool]:
        """The number of alerts printed, and whether the time ran out."""
        received = 0
        try:
            async with (
                contextlib.aclosing(
                    cast("AsyncGenerator[Alert, None]", watch_alerts(loaded, user))
                ) as alerts,
                asyncio.timeout(timeout),
            ):
                async for alert in alerts:
                    received += 1
                    typer.echo(
                        f"{_iso(alert.at, zone)}  {alert.kind}  {alert.lock_id or '-'}  "
                        f"{alert.subject}: {alert.detail}"
                    )
                    if count is not None and received >= count:
                        break
        except TimeoutError:
            return received, True
        return received, False

    received, timed_out = run(receive())
    if count is not None and received >= count:
        return
    if not timed_out:
        raise fail(f"the alert stream ended after {received} alerts", code=1)
    if received == 0:
        raise fail(f"no alert within {timeout:g} s", code=1)
    if count is not None:
        raise fail(f"only {received} of {count} alerts within {timeout:g} s", code=1)


def _remote(
    action: Action, lock_id: str, user: str, site: Path, timeout: float, as_json: bool
) -> None:
    from smartlock.adapters.mqtt import BrokerUnavailable
    from smartlock.services.remote import CommandFailed, CommandOutcome, send_command

    setup_logging()
    loaded = load_site(site)
    _check_user(loaded, user)
    if lock_id not in loaded.locks:
        raise fail(f"no lock {lock_id!r} in site {loaded.root} (locks: {', '.join(loaded.locks)})")
    if timeout <= 0:
        raise fail("--timeout must be a positive number of seconds")

    async def send() -> CommandOutcome | str:
        try:
            return await send_command(loaded, user, lock_id, action, timeout_s=timeout)
        except (CommandFailed, BrokerUnavailable) as exc:
            return str(exc)

    outcome: CommandOutcome | str = run(send())
    if isinstance(outcome, str):
        result, reason, bolt, round_trip, size = "failed", outcome, "unknown", None, None
    else:
        reply = outcome.reply
        result, reason, bolt = reply.result, reply.reason, reply.bolt
        round_trip, size = round(outcome.round_trip_ms, 2), outcome.request_bytes
    verb = action.name.lower()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "result": result,
                    "reason": reason,
                    "bolt": bolt,
                    "round_trip_ms": round_trip,
                    "request_bytes": size,
                    "lock_id": lock_id,
                    "action": verb,
                }
            )
        )
    elif result == "done":
        typer.echo(f"done: {lock_id} {verb}ed (bolt {bolt}) in {round_trip:.1f} ms")
    else:
        typer.echo(f"{result}: {explain(reason)}")
    if result != "done":
        raise typer.Exit(1)


RemoteLockArgument = Annotated[str, typer.Argument(metavar="LOCK", help="The lock to command.")]
RemoteTimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Give up after this many seconds.")
]
RemoteJsonOption = Annotated[
    bool,
    typer.Option(
        "--json", help="Print one JSON line: result, reason, bolt, round_trip_ms, request_bytes."
    ),
]


@remote_app.command("unlock")
def remote_unlock(
    lock_id: RemoteLockArgument,
    user: UserIdOption,
    timeout: RemoteTimeoutOption = 10.0,
    as_json: RemoteJsonOption = False,
    site: SiteOption = DEFAULT_SITE,
) -> None:
    """Ask the backend to unlock a lock; exit 0 only when the lock confirmed it."""
    _remote(Action.UNLOCK, lock_id, user, site, timeout, as_json)


@remote_app.command("lock")
def remote_lock(
    lock_id: RemoteLockArgument,
    user: UserIdOption,
    timeout: RemoteTimeoutOption = 10.0,
    as_json: RemoteJsonOption = False,
    site: SiteOption = DEFAULT_SITE,
) -> None:
    """Ask the backend to lock a lock; exit 0 only when the lock confirmed it."""
    _remote(Action.LOCK, lock_id, user, site, timeout, as_json)
