"""``smartlock update push``: offer a signed lock agent update to the site's locks.

The bundle is checked against the release key pinned in the site (``release trust``), copied
into the site's ``updates/`` directory and recorded for each lock in the store; the running
backend then offers it over MQTT (:mod:`smartlock.services.update_publisher`) and each lock
decides for itself (signature again, model, versions) and reports every step, which
``smartlock status`` shows and the audit log keeps.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from smartlock import crypto
from smartlock.cli_common import DEFAULT_SITE, DbOption, SiteOption, fail, load_site
from smartlock.core.release import UpdateRefused, verify_bundle, version_text
from smartlock.core.update_transfer import bundle_id, split_bundle
from smartlock.site import write_public

update_app = typer.Typer(
    help="Offer signed updates of the lock agent to the locks (see 'smartlock release').",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(update_app, name="update")


@update_app.command("push")
def push(
    bundle: Annotated[Path, typer.Argument(help="A bundle made by 'smartlock release sign'.")],
    lock: Annotated[
        list[str] | None,
        typer.Option("--lock", help="A lock to offer it to (repeatable; default: every lock)."),
    ] = None,
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """Offer BUNDLE to the locks: the backend sends it over MQTT in chunks (resumable), each lock
    verifies it, installs it into its spare slot, runs it on trial and goes back by itself if
    it does not report healthy within a minute. Follow it with 'smartlock status'."""
    from smartlock.admin import audit_admin, open_store
    from smartlock.cli_admin import user_errors

    loaded = load_site(site)
    pinned = loaded.release_public_path
    if not pinned.exists():
        raise fail(
            f"no release key is pinned in {loaded.root}: run 'smartlock release trust "
            "release.pub' first (the locks accept only bundles it signed)"
        )
    try:
        release_public = crypto.load_public_key(pinned.read_bytes())
        data = bundle.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {exc.filename}: {exc.strerror}") from None
    except crypto.CryptoError as exc:
        raise fail(f"{pinned}: {exc}") from None
    try:
        verified = verify_bundle(data, release_public=release_public)
    except UpdateRefused as refused:
        raise fail(f"{bundle} refused ({refused.reason}): {refused}") from None
    targets = list(dict.fromkeys(lock or loaded.locks))
    unknown = [name for name in targets if name not in loaded.locks]
    if unknown:
        raise fail(f"no lock {', '.join(unknown)} in site {loaded.root} (locks: "
                   f"{', '.join(loaded.locks)})")  # fmt: skip
    if not targets:
        raise fail(f"site {loaded.root} has no lock to update")
    name = bundle_id(data)
    offer, _ = split_bundle(data)
    version = version_text(verified.manifest.version)
    with user_errors():
        write_public(loaded.bundle_path(name), data)
        with open_store(loaded, db) as store:
            store.push_update(targets, bundle_id=name, version=version, by="", now=int(time.time()))
            for target in targets:
                audit_admin(store, "", target, "update_push", f"{version} bundle {name}")
    typer.echo(
        f"Pushed update {version} ({offer.size} bytes in {offer.chunk_count} chunks, bundle "
        f"{name}) to {', '.join(targets)}."
    )
    typer.echo(
        "The running backend offers it within a second; each lock reports its steps: "
        "'smartlock status' shows them, the audit log keeps them."
    )
