"""Release signing, on the machine that holds the release key (it can stay offline).

``release keygen`` makes the release key pair; ``release sign`` turns the lock agent's wheel into
a signed bundle (:mod:`smartlock.core.release`); ``release verify`` checks one as a lock would;
``release trust`` pins the public half in a site, for its locks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smartlock import crypto
from smartlock.cli_common import DEFAULT_SITE, SiteOption, fail, load_site
from smartlock.core.release import (
    DEFAULT_MODEL,
    UpdateRefused,
    make_bundle,
    open_bundle,
    parse_version,
    version_text,
)
from smartlock.site import write_private, write_public

release_app = typer.Typer(
    help="Sign lock agent updates with a release key kept apart from the backend's.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(release_app, name="release")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {what} {path}: {exc.strerror}") from None


def _version(text: str, option: str) -> tuple[int, int, int]:
    try:
        return parse_version(text)
    except ValueError as exc:
        raise fail(f"{option}: {exc}") from None


@release_app.command("keygen")
def keygen(
    directory: Annotated[Path, typer.Argument(help="Where release.key and release.pub go.")],
) -> None:
    """Make the release key pair: release.key (0600; keep it offline) and release.pub (what
    locks pin)."""
    private, public = directory / "release.key", directory / "release.pub"
    if private.exists():
        raise fail(f"{private} exists: a release key is made once (locks pin its public half)")
    key = crypto.generate_private_key()
    try:
        write_private(private, crypto.private_key_to_pem(key))
        write_public(public, crypto.public_key_to_pem(key.public_key()))
    except OSError as exc:
        raise fail(f"cannot write the release key into {directory}: {exc.strerror}") from None
    typer.echo(f"Release key: {private} (keep it offline)")
    typer.echo(
        f"Public key:  {public} (fingerprint {crypto.public_key_fingerprint(key.public_key())})"
    )


@release_app.command("sign")
def sign(
    wheel: Annotated[Path, typer.Argument(help="The lock agent's wheel (or any payload).")],
    key: Annotated[Path, typer.Option(help="The release private key (release keygen).")],
    version: Annotated[str, typer.Option(help="This release's version, X.Y.Z.")],
    min_version: Annotated[
        str, typer.Option(help="The oldest agent version that may install it.")
    ] = "0.0.0",
    model: Annotated[
        list[str] | None, typer.Option(help="A lock model it is for (repeatable).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="The bundle to write.")] = None,
) -> None:
    """Make a signed update bundle: manifest (version, hash, minimum version, models) + wheel."""
    try:
        release_key = crypto.load_private_key(_read(key, "the release key"))
    except crypto.CryptoError as exc:
        raise fail(f"{key}: {exc}") from None
    target = out or wheel.with_name(f"smartlock-agent-{version}.slu")
    try:
        bundle = make_bundle(
            _read(wheel, "the payload"),
            release_key=release_key,
            version=_version(version, "--version"),
            min_version=_version(min_version, "--min-version"),
            models=tuple(model or [DEFAULT_MODEL]),
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        target.write_bytes(bundle)
    except OSError as exc:
        raise fail(f"cannot write {target}: {exc.strerror}") from None
    typer.echo(f"Signed {wheel.name} as version {version}: {target} ({len(bundle)} bytes)")


@release_app.command("verify")
def verify(
    bundle: Annotated[Path, typer.Argument(help="The bundle to check.")],
    public: Annotated[Path, typer.Option("--pub", help="The pinned release public key.")],
    installed: Annotated[
        str, typer.Option(help="The highest version ever installed on the lock.")
    ] = "0.0.0",
    model: Annotated[str, typer.Option(help="The lock's model.")] = DEFAULT_MODEL,
) -> None:
    """Check a bundle exactly as a lock does before installing it (exit 1 if refused)."""
    try:
        release_public = crypto.load_public_key(_read(public, "the release public key"))
    except crypto.CryptoError as exc:
        raise fail(f"{public}: {exc}") from None
    data = _read(bundle, "the bundle")
    highest = _version(installed, "--installed")
    try:
        opened = open_bundle(
            data,
            release_public=release_public,
            running=highest,
            highest_installed=highest,
            model=model,
        )
    except UpdateRefused as refused:
        typer.secho(f"refused ({refused.reason}): {refused}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    manifest = opened.manifest
    typer.echo(
        f"OK: {manifest.name} {version_text(manifest.version)} for {', '.join(manifest.models)}, "
        f"needs {version_text(manifest.min_version)}+, {manifest.size} bytes, "
        f"sha256 {manifest.sha256[:16]}…"
    )


@release_app.command("trust")
def trust(
    public: Annotated[Path, typer.Argument(help="The release public key (release.pub).")],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Pin a different release key than the one pinned (locks then refuse bundles "
            "signed by the old one).",
        ),
    ] = False,
    site: SiteOption = DEFAULT_SITE,
) -> None:
    """Pin the release public key in the site: the locks accept only bundles it signed, and
    'update push' offers only those."""
    loaded = load_site(site)
    data = _read(public, "the release public key")
    try:
        key = crypto.load_public_key(data)
    except crypto.CryptoError as exc:
        raise fail(f"{public}: {exc}") from None
    target = loaded.release_public_path
    fingerprint = crypto.public_key_fingerprint(key)
    if target.exists():
        try:
            pinned = crypto.public_key_fingerprint(crypto.load_public_key(target.read_bytes()))
        except (OSError, crypto.CryptoError):
            pinned = ""
        if pinned == fingerprint:
            typer.echo(f"Release key {fingerprint} is already pinned in {loaded.root}")
            return
        if not replace:
            raise fail(
                f"a different release key ({pinned or 'unreadable'}) is pinned in {target}; "
                "add --replace to pin this one instead"
            )
    try:
        write_public(target, crypto.public_key_to_pem(key))
    except OSError as exc:
        raise fail(f"cannot write {target}: {exc.strerror}") from None
    typer.echo(f"Pinned release key {fingerprint}: {target}")
