"""What every ``smartlock`` command shares: the site option, logging, errors, running a service."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from smartlock.core.errors import SmartlockError

if TYPE_CHECKING:
    from smartlock.site import Site

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
        for noisy in ("bumble", "smartlock.mqtt.paho", "asyncio", "alembic"):
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


def load_site(path: Path) -> Site:
    from smartlock.site import Site

    try:
        return Site.load(path)
    except SmartlockError as exc:
        raise fail(str(exc)) from None


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="SMARTLOCK_DB",
        help="Database URL (sqlite:///FILE or postgresql://USER@HOST/DB); "
        "default: the site's own (SQLite in the backend's directory).",
    ),
]
