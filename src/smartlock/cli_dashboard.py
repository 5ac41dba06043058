"""Commands around the dashboard: passwords, second factors, invitations (QR codes), enrollment,
Home Assistant.

``user password``, ``user totp`` and ``pass invite`` run on the owner's machine beside the site;
``guest enroll`` runs on the guest's device, which needs nothing but the invitation.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer

from smartlock.cli_admin import user_errors
from smartlock.cli_common import DEFAULT_SITE, DbOption, SiteOption, fail, load_site
from smartlock.core.errors import SmartlockError
from smartlock.core.records import PASS_ID_MAX

ha_app = typer.Typer(
    help="Show the site's locks in Home Assistant (MQTT discovery) as one more user.",
    no_args_is_help=True,
)


def register(
    app: typer.Typer, user_app: typer.Typer, pass_app: typer.Typer, guest_app: typer.Typer
) -> None:
    user_app.command("password")(user_password)
    user_app.command("totp")(user_totp)
    pass_app.command("invite")(pass_invite)
    guest_app.command("enroll")(guest_enroll)
    app.add_typer(ha_app, name="homeassistant")


def user_password(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Who signs in to the dashboard.")],
    generate: Annotated[
        bool, typer.Option("--generate", help="Make a strong random password and print it once.")
    ] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """Set a user's dashboard password (scrypt-hashed; their open sessions are signed out).

    Without an option it asks twice, hidden.  At least 12 characters."""
    from smartlock.admin import set_web_password

    loaded = load_site(site)
    if generate and password_stdin:
        raise fail("choose --generate or --password-stdin, not both")
    if generate:
        password = secrets.token_urlsafe(15)
    elif password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with user_errors():
        set_web_password(loaded, name, password, db=db)
    typer.echo(f"Dashboard password set for {name}; their other sessions are signed out.")
    if generate:
        typer.echo(f"Password (shown once): {password}")


def user_totp(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The owner who signs in.")],
    disable: Annotated[
        bool, typer.Option("--disable", help="Turn the second factor off (password only).")
    ] = False,
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """Turn on an owner's second factor for the dashboard: an authenticator app's code (TOTP).

    Prints the app's QR code and URI and 10 recovery codes, shown once; a new one replaces the
    old and signs out the owner's sessions."""
    from smartlock.admin import remove_web_totp, set_web_totp

    loaded = load_site(site)
    if disable:
        with user_errors():
            remove_web_totp(loaded, name, db=db)
        typer.echo(f"Second factor off for {name}: the password alone signs in.")
        return
    with user_errors():
        enrollment = set_web_totp(loaded, name, db=db)
    typer.echo(f"Second factor on for {name}; their sessions are signed out.")
    terminal = sys.stdout.isatty()
    how = "scan the QR code, or open or paste the URI" if terminal else "open or paste the URI"
    typer.echo(f"Add it to an authenticator app ({how}):")
    typer.echo(f"  {enrollment.uri}")
    if terminal:
        import segno

        segno.make(enrollment.uri, error="m").terminal(compact=True)
    typer.echo("Recovery codes, each works once instead of the app's code (shown once: keep them")
    typer.echo("somewhere safe, away from this computer):")
    for code in enrollment.recovery_codes:
        typer.echo(f"  {code}")


def pass_invite(
    pass_id: Annotated[
        int, typer.Argument(metavar="ID", min=1, max=PASS_ID_MAX, help="The pass ('pass list').")
    ],
    url: Annotated[
        str,
        typer.Option(
            help="The dashboard as the guest's device reaches it (smartlock backend --http)."
        ),
    ] = "http://127.0.0.1:8080",
    png: Annotated[
        Path | None, typer.Option(help="Also write the QR code as a PNG image here.")
    ] = None,
    hours: Annotated[
        int, typer.Option(min=1, max=720, help="How long the invitation works (hours).")
    ] = 24,
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """Invite the pass's guest: a one-time code (text and QR) for 'smartlock guest enroll'."""
    import segno

    from smartlock.adapters.web.app import check_dashboard_url
    from smartlock.admin import invite_in, open_store

    loaded = load_site(site)
    try:
        check_dashboard_url(url, "--url")
    except SmartlockError as exc:
        raise fail(str(exc)) from None
    with user_errors(), open_store(loaded, db) as store:
        code, invitation = invite_in(store, loaded, pass_id, url=url, by="cli", ttl_s=hours * 3600)
    text = str(code)
    qr = segno.make(text, error="m")
    if png is not None:
        with user_errors():
            qr.save(str(png), kind="png", scale=6)
    typer.echo(f"Invitation for {invitation.guest} (pass {pass_id} on {invitation.lock_id}),")
    typer.echo(f"works once within {hours} h. The guest runs:")
    typer.echo(f"  smartlock guest enroll '{text}' --dir GUEST_DIR")
    if png is not None:
        typer.echo(f"QR code: {png}")
    elif sys.stdout.isatty():
        qr.terminal(compact=True)


def guest_enroll(
    invitation: Annotated[str, typer.Argument(metavar="INVITATION", help="The text 'SLI1.…'.")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Where this device keeps its key and account (new).")
    ] = Path("smartlock-guest"),
) -> None:
    """Join a site with an invitation: makes this device's key pair (it never leaves it) and
    receives the broker account.  Then: smartlock guest unlock LOCK --site DIR."""
    from smartlock.core.invitation import InvitationCode, InvitationError
    from smartlock.services.enrollment import enroll

    try:
        code = InvitationCode.parse(invitation)
    except InvitationError as exc:
        raise fail(str(exc)) from None
    with user_errors():
        enrolled = enroll(code, directory)
    typer.echo(f"Enrolled as {enrolled.guest} at site {enrolled.site.name}.")
    typer.echo(f"  your key pair and account: {enrolled.site.root}")
    for lock in enrolled.locks:
        typer.echo(f"  open with: smartlock guest unlock {lock} --site {enrolled.site.root}")


@ha_app.command("enable")
def ha_enable(
    user: Annotated[
        str,
        typer.Argument(metavar="USER", help="The owner or resident Home Assistant signs in as."),
    ],
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """Let Home Assistant see and command the locks as USER (restart the backend after)."""
    from smartlock import broker
    from smartlock.admin import open_store
    from smartlock.site import set_home_assistant_user

    loaded = load_site(site)
    with user_errors(), open_store(loaded, db) as store:
        record = store.get_user(user)
    if record is None or not record.active or not record.role.has_free_access:
        raise fail(f"{user} must be an owner or resident of this site (user add --role resident)")
    with user_errors():
        updated = set_home_assistant_user(loaded, user)
        reloaded = broker.reload_broker(updated)
    typer.echo(f"Home Assistant signs in to the broker as {user}")
    typer.echo(f"  password: {updated.identity_dir(user) / 'password'}")
    typer.echo(f"  broker: {updated.broker_host}:{updated.broker_port}, TLS, CA {updated.ca_cert}")
    typer.echo("Restart the backend: it then publishes homeassistant/lock/<id>/config per lock.")
    typer.echo("ACL reloaded." if reloaded else "The broker reads the new ACL when it starts.")
