"""Rotating keys and certificates while everything keeps running (``smartlock rotate ...``).

* ``broker-cert``: clients trust the site CA, not the certificate itself, so a new one signed by
  the same CA is accepted at once, and Mosquitto reloads it on SIGHUP without dropping a
  connection.
* ``ca``, in two steps with an overlap: ``rotate ca`` makes the next CA and makes ca.crt trust
  it next to the current one; ``rotate ca --finish``, once every device that keeps its own copy
  of ca.crt has the new one, gives the broker a certificate from the next CA and makes it the
  only one ca.crt trusts (:func:`smartlock.broker.start_ca_rotation`).

``lock-key`` and ``backend-key`` are in :mod:`smartlock.cli_rotate_keys` (README,
"Operating").
"""

from __future__ import annotations

import datetime as dt
import shlex
from typing import TYPE_CHECKING, Annotated

import typer

from smartlock.cli_admin import user_errors
from smartlock.cli_common import DEFAULT_SITE, SiteOption, fail, load_site

if TYPE_CHECKING:
    from smartlock.site import Site

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


@rotate_app.command("ca")
def rotate_ca(
    finish: Annotated[
        bool, typer.Option("--finish", help="Switch to the new CA (after 'rotate ca').")
    ] = False,
    days: Annotated[
        int | None,
        typer.Option(min=1, max=3650, help="How long the new CA lasts (default 3650)."),
    ] = None,
    site: SiteOption = DEFAULT_SITE,
) -> None:
    """A new site CA with an overlap: first trusted next to the current one (ca.crt holds both),
    then, with --finish, the only one (the broker gets a certificate from it; nobody drops)."""
    loaded = load_site(site)
    if finish:
        if days is not None:
            raise fail("--days is for starting a rotation; --finish takes none")
        _finish_ca_rotation(loaded)
    else:
        _start_ca_rotation(loaded, days)


def _start_ca_rotation(site: Site, days: int | None) -> None:
    from smartlock.broker import CA_DAYS, start_ca_rotation

    with user_errors():
        cert = start_ca_rotation(site, now=dt.datetime.now(dt.UTC), days=days or CA_DAYS)
    until = cert.not_valid_after_utc.isoformat(timespec="seconds")
    typer.echo(f"New site CA (serial {cert.serial_number:x}) valid until {until}.")
    typer.echo(
        f"{site.ca_cert} now holds the current CA and the new one: every client that connects "
        "from now on accepts both, and the broker keeps its certificate from the current CA, "
        "so nothing changes for anyone."
    )
    typer.echo(
        "Devices that keep their own copy of ca.crt (enrolled guests) need the new bundle "
        f"before you finish: {site.ca_cert}"
    )
    typer.echo("Invitations made before now carry the old ca.crt's SHA-256: make new ones.")
    typer.echo(f"Then: smartlock rotate ca --finish --site {shlex.quote(str(site.root))}")


def _finish_ca_rotation(site: Site) -> None:
    from smartlock.broker import finish_ca_rotation

    with user_errors():
        ca, broker_cert, reloaded = finish_ca_rotation(site, now=dt.datetime.now(dt.UTC))
    typer.echo(
        f"The new CA (serial {ca.serial_number:x}) is the site CA now; the old CA's key is "
        f"removed and {site.ca_cert} holds the new CA alone."
    )
    until = broker_cert.not_valid_after_utc.isoformat(timespec="seconds")
    typer.echo(
        f"New broker certificate (serial {broker_cert.serial_number:x}) from it, "
        f"valid until {until}."
    )
    typer.echo(
        "The running broker switched to it; no connection dropped. New connections verify "
        "against the new CA only."
        if reloaded
        else "No broker of this site is running: it uses the new certificate when it starts."
    )
    typer.echo(
        "A backend that serves the dashboard over HTTPS reads the broker certificate when it "
        "starts: restart it."
    )
