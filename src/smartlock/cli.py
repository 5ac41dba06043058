"""``smartlock``: a thin Typer front over the library.  Every command reads a site directory
(``--site``, default ``$SMARTLOCK_SITE`` or ``./site``); ``smartlock init`` makes one."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Annotated

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
from smartlock.core.errors import SmartlockError
from smartlock.core.issuance import DEFAULT_KEY_TTL_S
from smartlock.core.messages import Action

app = typer.Typer(
    help="smartlock: a secure smart-lock access system (backend, lock agent, guest app) over a "
    "hardened Mosquitto and BLE.  Start with 'smartlock demo --once'.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
guest_app = typer.Typer(
    help="The app of guests, residents and owners: get a session key and open a lock over BLE.",
    no_args_is_help=True,
)
app.add_typer(guest_app, name="guest")
lock_app = typer.Typer(
    help="Run a lock agent ('lock run --id ID'), or manage the site's locks.",
    no_args_is_help=True,
)
app.add_typer(lock_app, name="lock")


@app.command()
def init(
    site_dir: Annotated[
        Path, typer.Argument(help="Directory to create the site in (must be empty or absent).")
    ],
    lock: Annotated[
        list[str] | None, typer.Option("--lock", help="A lock id (repeatable).")
    ] = None,
    owner: Annotated[
        list[str] | None, typer.Option("--owner", help="An owner's user name (repeatable).")
    ] = None,
    resident: Annotated[
        list[str] | None, typer.Option("--resident", help="A resident (repeatable).")
    ] = None,
    guest: Annotated[
        list[str] | None, typer.Option("--guest", help="A guest (repeatable).")
    ] = None,
    grant: Annotated[
        list[str] | None,
        typer.Option(
            "--pass",
            help="GUEST:LOCK pass to create (repeatable; default: every guest on every lock), "
            "valid from now for --pass-days days.",
        ),
    ] = None,
    pass_days: Annotated[int, typer.Option(help="How long the initial passes last.")] = 30,
    host: Annotated[
        str, typer.Option(help="Host name or IP the broker listens on and is verified as.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Broker TLS port (0: pick a free one).")] = 0,
    key_ttl: Annotated[
        int, typer.Option(help="Session key lifetime in seconds.")
    ] = DEFAULT_KEY_TTL_S,
    heartbeat: Annotated[
        int, typer.Option(help="Seconds between a lock's heartbeats (offline after two missed).")
    ] = 60,
    timezone: Annotated[
        str, typer.Option(help="Time zone of the passes' weekly hours, e.g. Europe/Paris.")
    ] = "UTC",
    max_failures: Annotated[
        int,
        typer.Option(help="Failed attempts tolerated within --failure-window; one more locks out."),
    ] = 3,
    failure_window: Annotated[
        int, typer.Option(help="Seconds over which failed attempts are counted.")
    ] = 300,
    lockout: Annotated[int, typer.Option(help="Seconds a lockout lasts.")] = 300,
    command_window: Annotated[
        int,
        typer.Option(
            help="Seconds a remote command stays valid around the lock's clock (clock skew)."
        ),
    ] = 30,
    db: DbOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing site in SITE_DIR.")
    ] = False,
    systemd: Annotated[
        bool,
        typer.Option(
            "--systemd",
            help="Also write systemd units for the site's services into SITE_DIR/systemd "
            "(see 'smartlock systemd-units').",
        ),
    ] = False,
) -> None:
    """Provision a site: CA and broker certificate, key pairs, broker accounts and the store.

    Every lock and user gets a key pair and a hashed broker password, the ACL gives each only
    its own topics, and the store gets the users (owner / resident / guest), locks and passes."""
    from smartlock.admin import create_site, with_settings
    from smartlock.broker import free_port

    locks = lock or ["lock_01"]
    owners = owner or ["owner"]
    guests = guest if guest is not None else ["guest_01"]
    pairs: list[tuple[str, str]] | None = None
    if grant is not None:
        pairs = []
        for item in grant:
            guest_id, sep, lock_id = item.partition(":")
            if not sep:
                raise fail(f"--pass {item!r}: expected GUEST:LOCK")
            pairs.append((guest_id, lock_id))
    if not 0 <= port <= 65535:
        raise fail("--port must be 0..65535")
    if min(max_failures, failure_window, lockout, command_window) < 1:
        raise fail(
            "--max-failures, --failure-window, --lockout and --command-window must be at least 1"
        )
    if systemd:  # before anything is written: the units need the smartlock executable
        from smartlock.services_units import smartlock_executable

        try:
            smartlock_executable()
        except SmartlockError as exc:
            raise fail(str(exc)) from None
    created_here = not site_dir.exists()
    try:
        site = create_site(
            site_dir,
            locks=locks,
            owners=owners,
            residents=resident or [],
            guests=guests,
            passes=pairs,
            pass_days=pass_days,
            db=db,
            broker_host=host,
            broker_port=port or free_port(host),
            session_ttl_s=key_ttl,
            heartbeat_s=heartbeat,
            timezone=timezone,
            force=force,
        )
        site = with_settings(
            site,
            max_failures=max_failures,
            failure_window_s=failure_window,
            lockout_s=lockout,
            command_window_s=command_window,
        )
    except (SmartlockError, ValueError, OSError) as exc:
        if created_here:  # leave nothing half-made behind
            shutil.rmtree(site_dir, ignore_errors=True)
        message = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) else str(exc)
        raise fail(message) from None
    typer.echo(f"Site created in {site.root}")
    typer.echo(f"  broker     {site.broker_host}:{site.broker_port} (TLS, CA {site.ca_cert})")
    typer.echo(f"  store      {site.database_url().split('://')[0]}")
    typer.echo(f"  locks      {', '.join(site.locks)}")
    typer.echo(f"  owners     {', '.join(owners)}")
    typer.echo(f"  residents  {', '.join(resident or []) or 'none'}")
    typer.echo(f"  guests     {', '.join(guests) or 'none'}")
    typer.echo(
        f"  intrusion  more than {max_failures} failures in {failure_window} s: "
        f"lockout for {lockout} s"
    )
    typer.echo(f"Next: smartlock broker --site {site.root}")
    if systemd:
        from smartlock.cli_units import write_site_units

        units = write_site_units(site, user="smartlock")
        typer.echo(f"systemd units in {units[0].parent} (install: see the top of each)")


@app.command()
def broker(site: SiteOption = DEFAULT_SITE, verbose: VerboseOption = False) -> None:
    """Run the site's Mosquitto (TLS only, ACL, hashed passwords) in the foreground."""
    from smartlock.broker import BrokerProcess

    setup_logging(verbose)
    loaded = load_site(site)
    log = logging.getLogger("smartlock.broker")

    async def serve() -> None:
        process = BrokerProcess(loaded)
        process.on_log_line = lambda line: log.info("%s", line)  # type: ignore[method-assign]
        async with process:
            log.info("Broker listening on %s:%d (TLS)", loaded.broker_host, process.port)
            assert process.process
            code = await process.process.wait()
            raise SmartlockError(f"mosquitto exited with code {code}")

    run(serve())


@app.command("radio-hub")
def radio_hub(
    site: SiteOption = DEFAULT_SITE,
    extra: Annotated[
        list[str] | None,
        typer.Option("--extra", help="An extra controller name (repeatable), e.g. for a sniffer."),
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Run the virtual BLE radio: one controller per lock and guest, on unix sockets in the site."""
    from smartlock.adapters.radio.hub import serve_radio_hub
    from smartlock.core.wire import check_identifier

    setup_logging(verbose)
    loaded = load_site(site)
    names = [*loaded.locks, *loaded.users]
    try:
        names += [check_identifier(x, "controller name") for x in extra or []]
    except ValueError as exc:
        raise fail(str(exc)) from None
    log = logging.getLogger("smartlock.radio")

    async def serve() -> None:
        ready = asyncio.Event()
        hub = asyncio.create_task(
            serve_radio_hub({n: loaded.radio_socket(n) for n in names}, ready)
        )
        await ready.wait()
        log.info(
            "Radio hub ready: %s", ", ".join(f"{n}=unix:{loaded.radio_socket(n)}" for n in names)
        )
        await hub

    run(serve())


@app.command()
def backend(
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
    http: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="Also serve the web dashboard and /api here, e.g. 127.0.0.1:8080.  A loopback "
            "address is served over plain HTTP; any other over HTTPS with the site's broker "
            "certificate.",
        ),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            help="The dashboard's address as guests' devices reach it (written into "
            "invitations).  Default: the --http address."
        ),
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Run the backend: it decides key requests and remote commands and keeps the audit log.

    Every decision comes from the store; it also watches the locks' heartbeats and alerts owners
    and residents.  With --http it serves the dashboard too (sign in with a password set by
    'smartlock user password NAME')."""
    from smartlock.services.backend import serve_backend

    setup_logging(verbose)
    loaded = load_site(site)
    run(serve_backend(loaded, db=db, http=http, public_url=public_url))


@lock_app.command("run")
def lock_command(
    lock_id: Annotated[str, typer.Option("--id", help="Which lock of the site this is.")],
    site: SiteOption = DEFAULT_SITE,
    radio: Annotated[
        str | None,
        typer.Option(
            help="BLE transport: usb:0, hci-socket:0, serial:..., unix:... "
            "(default: the site's virtual radio hub)."
        ),
    ] = None,
    actuator: Annotated[
        str, typer.Option(help="'log' or 'gpio:PIN' (a relay through gpiozero).")
    ] = "log",
    relock_after: Annotated[float, typer.Option(help="Seconds before the bolt locks again.")] = 5.0,
    duplicate_window: Annotated[
        float,
        typer.Option(
            help="Seconds within which a repeated advertisement is ignored, not a replay."
        ),
    ] = 3.0,
    token_window: Annotated[
        float,
        typer.Option(
            help="Seconds a token stays valid around the lock's clock (covers clock skew "
            "between backend and lock; smaller is safer with NTP)."
        ),
    ] = 30.0,
    broker_port: Annotated[
        int | None,
        typer.Option(
            help="Reach the site's broker host on this port instead of site.json's "
            "(e.g. through a port forward).",
            min=1,
            max=65535,
        ),
    ] = None,
    min_rssi: Annotated[
        int | None,
        typer.Option(
            help="Refuse tokens heard below this signal strength (dBm, e.g. -70): a relay "
            "must then transmit close to the door. Off by default; calibrate per door.",
        ),
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Run a lock agent: keys over MQTT, tokens over BLE, the bolt through the actuator."""
    from smartlock.adapters.actuator import open_actuator
    from smartlock.adapters.slot_files import RESTART_FOR_UPDATE
    from smartlock.core.proximity import check_floor
    from smartlock.services.lock_agent import LockAgent
    from smartlock.services.lock_updater import RestartForUpdate

    setup_logging(verbose)
    loaded = load_site(site)
    try:
        bolt = open_actuator(actuator)
        if relock_after <= 0:
            raise ValueError("--relock-after must be a positive number of seconds")
        if not 2 <= token_window <= 300:
            raise ValueError("--token-window must be between 2 and 300 seconds")
        if not 0 < duplicate_window <= 60:
            raise ValueError("--duplicate-window must be more than 0 and at most 60 seconds")
        agent = LockAgent(
            loaded,
            lock_id,
            radio=radio,
            actuator=bolt,
            relock_after_s=relock_after,
            duplicate_window_s=duplicate_window,
            token_window_s=token_window,
            broker_port=broker_port,
            min_rssi=None if min_rssi is None else check_floor(min_rssi),
        )
    except (SmartlockError, ValueError) as exc:
        raise fail(str(exc)) from None
    try:
        run(agent.run())
    except RestartForUpdate:
        # an update was installed: 'smartlock lock supervise' starts it on trial
        raise typer.Exit(RESTART_FOR_UPDATE) from None


def _open(
    lock_id: str,
    guest_id: str | None,
    site: Path,
    radio: str | None,
    timeout: float,
    as_json: bool,
    action: Action,
) -> None:
    from smartlock.services.guest_app import GuestApp

    setup_logging()
    loaded = load_site(site)
    if guest_id is None:
        if len(loaded.users) != 1:
            raise fail(
                f"this site has several users ({', '.join(loaded.users)}): pick one with --id"
            )
        guest_id = loaded.users[0]
    try:
        guest = GuestApp(loaded, guest_id, radio=radio)
    except SmartlockError as exc:
        raise fail(str(exc)) from None
    result = run(guest.open_door(lock_id, action=action, timeout_s=timeout))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": True,
                    "lock_id": result.lock_id,
                    "guest_id": result.guest_id,
                    "action": result.action.name.lower(),
                    "timings_ms": {
                        "key_request": round(result.key_request_ms, 2),
                        "ble_unlock": round(result.ble_ms, 2),
                        "total": round(result.total_ms, 2),
                    },
                    "tokens_advertised": result.tokens_advertised,
                    "advertising_interval_ms": result.advertising_interval_ms,
                    "wire_bytes": result.wire_bytes,
                }
            )
        )


GuestIdOption = Annotated[
    str | None,
    typer.Option("--id", help="Which user of the site you are (default: the only one)."),
]
RadioOption = Annotated[
    str | None, typer.Option(help="BLE transport (default: the site's virtual radio hub).")
]
TimeoutOption = Annotated[float, typer.Option(help="Give up after this many seconds.")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print timings and sizes as JSON on stdout.")
]


@guest_app.command("unlock")
def guest_unlock(
    lock_id: Annotated[str, typer.Argument(help="The lock to open.")],
    guest_id: GuestIdOption = None,
    site: SiteOption = DEFAULT_SITE,
    radio: RadioOption = None,
    timeout: TimeoutOption = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Ask for a session key and advertise fresh tokens until the lock confirms it unlocked."""
    _open(lock_id, guest_id, site, radio, timeout, as_json, Action.UNLOCK)


@guest_app.command("lock")
def guest_lock(
    lock_id: Annotated[str, typer.Argument(help="The lock to lock.")],
    guest_id: GuestIdOption = None,
    site: SiteOption = DEFAULT_SITE,
    radio: RadioOption = None,
    timeout: TimeoutOption = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Like 'unlock', but asks the lock to throw the bolt."""
    _open(lock_id, guest_id, site, radio, timeout, as_json, Action.LOCK)


@app.command()
def demo(
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Exit after one unlock; print a JSON summary as the last line."
        ),
    ] = False,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the temporary site directory afterwards.")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Everything in one command on a temporary site: broker, radio hub, backend, lock, guest."""
    from smartlock.services.demo import run_demo

    setup_logging(verbose)
    code = run(run_demo(once=once, keep=keep, verbose=verbose))
    raise typer.Exit(code)


from smartlock import cli_admin, cli_dashboard, cli_supervise  # noqa: E402 -- register their commands on ``app``

cli_admin.register(app, lock_app)
cli_supervise.register(lock_app)
cli_dashboard.register(app, cli_admin.user_app, cli_admin.pass_app, guest_app)
from smartlock import cli_release  # noqa: E402 -- release signing commands

cli_release.register(app)
from smartlock import cli_update  # noqa: E402 -- register its commands on ``app``

cli_update.register(app)
from smartlock import cli_doctor  # noqa: E402 -- register its command on ``app``

cli_doctor.register(app)
from smartlock import cli_units  # noqa: E402 -- register its command on ``app``

cli_units.register(app)
from smartlock import cli_rotate  # noqa: E402 -- register its command on ``app``

cli_rotate.register(app)
from smartlock import cli_rotate_keys  # noqa: E402 -- 'rotate lock-key' on the rotate group

cli_rotate_keys.register(cli_rotate.rotate_app)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
