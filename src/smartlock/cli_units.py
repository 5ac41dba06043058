"""``smartlock systemd-units``: (re)write a site's systemd units (see services_units.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from smartlock.cli_common import DEFAULT_SITE, SiteOption, fail, load_site
from smartlock.core.errors import SmartlockError

if TYPE_CHECKING:
    from smartlock.site import Site

UserOption = Annotated[
    str, typer.Option("--user", help="The user the backend, radio hub and locks run as.")
]


def write_site_units(
    site: Site, *, user: str, out: Path | None = None, http: str | None = None
) -> list[Path]:
    """Render and write the site's units; a clean ``error:`` line for anything that fails."""
    from smartlock.services_units import (
        UnitSpec,
        runtime_paths,
        smartlock_executable,
        write_units,
    )

    try:
        executable = smartlock_executable()
        spec = UnitSpec(
            site=site.root,
            executable=executable,
            locks=site.locks,
            user=user,
            http=http,
            runtime=runtime_paths(executable),
        )
        return write_units(spec, out.resolve() if out is not None else None)
    except SmartlockError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{exc.filename}: {exc.strerror}") from None


def register(app: typer.Typer) -> None:
    @app.command("systemd-units")
    def systemd_units(
        site: SiteOption = DEFAULT_SITE,
        user: UserOption = "smartlock",
        out: Annotated[
            Path | None,
            typer.Option("--out", help="Directory to write the units to (default SITE/systemd)."),
        ] = None,
        http: Annotated[
            str | None,
            typer.Option(
                metavar="HOST:PORT",
                help="Run the backend with the dashboard on this address (its --http).",
            ),
        ] = None,
    ) -> None:
        """Write systemd units for the site's broker, radio hub, backend and locks.

        Each unit's header says how to install it; the lock unit is a template
        (smartlock-lock@LOCK_ID)."""
        loaded = load_site(site)
        written = write_site_units(loaded, user=user, out=out, http=http)
        typer.echo(f"systemd units written to {written[0].parent}:")
        for path in written:
            typer.echo(f"  {path.name}")
        typer.echo(f"Install: see the comment at the top of {written[0]}")
