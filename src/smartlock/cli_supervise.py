"""``smartlock lock supervise``: run the lock agent under its update supervisor
(:mod:`smartlock.services.lock_supervisor`)."""

from __future__ import annotations

import asyncio
import math
import signal
import sys
from typing import Annotated

import typer

from smartlock.cli_common import (
    DEFAULT_SITE,
    SiteOption,
    VerboseOption,
    fail,
    load_site,
    setup_logging,
)
from smartlock.core.errors import SmartlockError

MAX_GRACE_S = 3600.0


def register(lock_app: typer.Typer) -> None:
    lock_app.command(
        "supervise",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(supervise)


def supervise(
    ctx: typer.Context,
    lock_id: Annotated[str, typer.Option("--id", help="Which lock of the site this is.")],
    site: SiteOption = DEFAULT_SITE,
    grace_period: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="How long an update on trial has to report healthy before the lock goes back "
            "to the previous slot (more than 0, at most 3600).",
        ),
    ] = 60.0,
    verbose: VerboseOption = False,
) -> None:
    """Run the lock agent from the active software slot, and restart it when it stops.

    An installed update is started on trial: when the new version does not report healthy
    within the grace period, the lock goes back to the previous slot by itself.  Options after
    these are passed to 'lock run' unchanged, e.g. 'smartlock lock supervise --id lock_01
    --radio usb:0'."""
    from smartlock import __version__
    from smartlock.adapters.slot_files import SlotFiles
    from smartlock.core.release import parse_version
    from smartlock.services.lock_supervisor import LockSupervisor

    if not (math.isfinite(grace_period) and 0 < grace_period <= MAX_GRACE_S):
        raise fail(f"--grace-period must be more than 0 and at most {MAX_GRACE_S:g} seconds")
    setup_logging(verbose)
    loaded = load_site(site)
    try:
        files = SlotFiles.for_lock(loaded, lock_id)
    except SmartlockError as exc:
        raise fail(str(exc)) from None
    child_argv = [
        sys.executable,
        "-m",
        "smartlock",
        "lock",
        "run",
        "--id",
        lock_id,
        "--site",
        str(loaded.root),
        *(["--verbose"] if verbose else []),
        *ctx.args,
    ]
    supervisor = LockSupervisor(
        files=files,
        child_argv=child_argv,
        grace_s=grace_period,
        factory_version=parse_version(__version__),
    )

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, supervisor.request_stop)
        return await supervisor.run()

    try:
        code = asyncio.run(main())
    except SmartlockError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)
