"""``smartlock``: a thin Typer front over the library.  Every command reads a site directory
(``--site``, default ``$SMARTLOCK_SITE`` or ``./site``); ``smartlock init`` makes one."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

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
    help="The guest's app: get a session key and open a lock over BLE.", no_args_is_help=True
)
app.add_typer(guest_app, name="guest")

SiteOption = Annotated[
    Path,
    typer.Option(
        "--site",
        envvar="SMARTLOCK_SITE",
        help="The site directory made by 'smartlock init'.",
        show_default=True,
    ),
]
DEFAULT_SITE = Path("site")
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Also log debug details.")]


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    if not verbose:  # the libraries' chatter is not the user's business
        for noisy in ("bumble", "smartlock.mqtt.paho", "asyncio"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a service until it ends or SIGINT/SIGTERM; a SmartlockError becomes a clear message."""

    async def main() -> Any:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        return await coro

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        logging.getLogger("smartlock").info("Stopped")
        raise typer.Exit(0) from None
    except (SmartlockError, BaseExceptionGroup) as exc:
        error = _first_smartlock_error(exc)
        if error is None:
            raise
        raise fail(str(error)) from None


def _first_smartlock_error(exc: BaseException) -> SmartlockError | None:
    """The user-facing error inside ``exc`` (TaskGroups wrap errors in exception groups)."""
    if isinstance(exc, SmartlockError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_smartlock_error(inner)
            if found is not None:
                return found
    return None


def load_site(path: Path) -> Any:
    from smartlock.site import Site

    try:
        return Site.load(path)
    except SmartlockError as exc:
        raise fail(str(exc)) from None


@app.command()
def init(
    site_dir: Annotated[
        Path, typer.Argument(help="Directory to create the site in (must be empty or absent).")
    ],
    lock: Annotated[
        list[str] | None, typer.Option("--lock", help="A lock id (repeatable).")
    ] = None,
    guest: Annotated[
        list[str] | None, typer.Option("--guest", help="A guest id (repeatable).")
    ] = None,
    grant: Annotated[
        list[str] | None,
        typer.Option(
            "--grant",
            help="GUEST:LOCK pair allowed to get keys (repeatable; default: all on all).",
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Host name or IP the broker listens on and is verified as.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Broker TLS port (0: pick a free one).")] = 0,
    key_ttl: Annotated[
        int, typer.Option(help="Session key lifetime in seconds.")
    ] = DEFAULT_KEY_TTL_S,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing site in SITE_DIR.")
    ] = False,
) -> None:
    """Provision a site: CA and broker certificate, RSA key pairs, hashed broker passwords, ACL."""
    from smartlock.broker import free_port
    from smartlock.site import provision_site

    locks = lock or ["lock_01"]
    guests = guest or ["guest_01"]
    pairs: list[tuple[str, str]] = []
    for item in grant or [f"{g}:{lk}" for g in guests for lk in locks]:
        guest_id, sep, lock_id = item.partition(":")
        if not sep:
            raise fail(f"--grant {item!r}: expected GUEST:LOCK")
        pairs.append((guest_id, lock_id))
    if not 0 <= port <= 65535:
        raise fail("--port must be 0..65535")
    try:
        site = provision_site(
            site_dir,
            locks=locks,
            guests=guests,
            grants=pairs,
            broker_host=host,
            broker_port=port or free_port(host),
            session_ttl_s=key_ttl,
            force=force,
        )
    except (SmartlockError, ValueError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"Site created in {site.root}")
    typer.echo(f"  broker   {site.broker_host}:{site.broker_port} (TLS, CA {site.ca_cert})")
    typer.echo(f"  locks    {', '.join(site.locks)}")
    typer.echo(f"  guests   {', '.join(site.guests)}")
    typer.echo(f"  grants   {', '.join(f'{g}->{lk}' for g, lk in site.grants) or 'none'}")
    typer.echo(f"Next: smartlock broker --site {site.root}")


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
    names = [*loaded.locks, *loaded.guests]
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
def backend(site: SiteOption = DEFAULT_SITE, verbose: VerboseOption = False) -> None:
    """Run the backend: issue session keys to granted guests and relay the locks' events."""
    from smartlock.services.backend import Backend

    setup_logging(verbose)
    loaded = load_site(site)

    async def serve() -> None:
        await Backend(loaded).run()

    run(serve())


@app.command("lock")
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
    verbose: VerboseOption = False,
) -> None:
    """Run a lock agent: keys over MQTT, tokens over BLE, the bolt through the actuator."""
    from smartlock.adapters.actuator import open_actuator
    from smartlock.services.lock_agent import LockAgent

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
        )
    except (SmartlockError, ValueError) as exc:
        raise fail(str(exc)) from None
    run(agent.run())


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
        if len(loaded.guests) != 1:
            raise fail(
                f"this site has several guests ({', '.join(loaded.guests)}): pick one with --id"
            )
        guest_id = loaded.guests[0]
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
    typer.Option("--id", help="Which guest of the site you are (default: the only one)."),
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


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
