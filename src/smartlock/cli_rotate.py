"""Rotating keys and certificates while everything keeps running (``smartlock rotate ...``).

Only the broker's certificate so far: clients trust the site CA, not the certificate itself,
so a new one signed by the same CA is accepted at once, and Mosquitto reloads it on SIGHUP
without dropping a connection.  The backend's, the locks' and the CA's own keys have no
rotation command yet (README, "Operating").
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from smartlock.cli_admin import user_errors
from smartlock.cli_common import DEFAULT_SITE, SiteOption, load_site

rotate_app = typer.Typer(
    help="Replace keys and certificates without downtime.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(rotate_app, name="rotate")


@rotate_app.command("broker-cert")
def rotate_broker_cert(
    days: Annotated[int, typer.Option(min=1, max=3650, help="How long the new one lasts.")] = 825,
    site: SiteOption = DEFAULT_SITE,
) -> None:
    """A new broker certificate from the site CA; a running broker switches to it at once and
    no connection drops (the CA, which clients trust, stays the same)."""
    from smartlock.broker import rotate_broker_certificate

    loaded = load_site(site)
    with user_errors():
        cert, reloaded = rotate_broker_certificate(loaded, now=dt.datetime.now(dt.UTC), days=days)
    until = cert.not_valid_after_utc.isoformat(timespec="seconds")
    typer.echo(f"New broker certificate (serial {cert.serial_number:x}) valid until {until}")
    typer.echo(
        "The running broker switched to it; no connection dropped."
        if reloaded
        else "No broker of this site is running: it uses the new certificate when it starts."
    )
