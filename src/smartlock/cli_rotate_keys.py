"""``smartlock rotate lock-key LOCK [--finish]`` and ``smartlock rotate backend-key [--finish]``
(see :mod:`smartlock.key_rotation`)."""

from __future__ import annotations

from typing import Annotated

import typer

from smartlock.cli_admin import user_errors
from smartlock.cli_common import DEFAULT_SITE, DbOption, SiteOption, load_site


def register(rotate_app: typer.Typer) -> None:
    rotate_app.command("lock-key")(rotate_lock_key)
    rotate_app.command("backend-key")(rotate_backend_key)


def rotate_lock_key(
    lock: Annotated[str, typer.Argument(help="The lock whose RSA key pair is replaced.")],
    finish: Annotated[
        bool,
        typer.Option(
            "--finish", help="End the overlap: delete the previous key pair (run it later)."
        ),
    ] = False,
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """A new RSA key pair for LOCK while everything runs: the lock and the backend switch to it
    at their next use, and until --finish the previous key is still accepted (session keys
    already on their way, events the lock kept while offline). Finish once the lock has been
    online for a session-key lifetime."""
    from smartlock.admin import audit_admin, open_store
    from smartlock.key_rotation import finish_lock_key_rotation, start_lock_key_rotation

    loaded = load_site(site)
    with user_errors():
        if finish:
            finish_lock_key_rotation(loaded, lock)
            detail = "previous key deleted"
        else:
            previous, new = start_lock_key_rotation(loaded, lock)
            detail = f"{previous} -> {new}"
        with open_store(loaded, db) as store:
            audit_admin(store, "", lock, "lock_key_rotate", detail)
    if finish:
        typer.echo(f"Rotation of {lock}'s key finished: the previous key pair is deleted.")
        return
    typer.echo(f"New key pair for {lock}: {new} (was {previous}).")
    typer.echo(
        "The lock and the backend use it from their next message; the previous key is still "
        f"accepted until 'smartlock rotate lock-key {lock} --finish'."
    )


def rotate_backend_key(
    finish: Annotated[
        bool,
        typer.Option(
            "--finish",
            help="End the overlap: devices are told to drop the previous key, which is deleted.",
        ),
    ] = False,
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """A new signing key for the backend while everything runs: the backend signs with it from
    its next tick and tells every lock and user device, signed with the key they trust, to trust
    it; until --finish the previous key is still trusted. Finish once every enrolled device has
    been online (they learn the new key when they connect)."""
    from smartlock.admin import audit_admin, open_store
    from smartlock.key_rotation import finish_backend_key_rotation, start_backend_key_rotation

    loaded = load_site(site)
    with user_errors():
        if finish:
            retired = finish_backend_key_rotation(loaded)
            detail = f"{retired} retired"
        else:
            previous, new = start_backend_key_rotation(loaded)
            detail = f"{previous} -> {new}"
        with open_store(loaded, db) as store:
            audit_admin(store, "", "", "backend_key_rotate", detail)
    if finish:
        typer.echo(
            f"Rotation of the backend's key finished: {retired} is retired; the running backend "
            "tells every device to drop it."
        )
        return
    typer.echo(f"New backend key {new} (was {previous}).")
    typer.echo(
        "The running backend signs with it from its next tick and tells every lock and user "
        "device to trust it; the previous key is still trusted until "
        "'smartlock rotate backend-key --finish'."
    )
