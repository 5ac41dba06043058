"""``smartlock doctor``: check a site and print one line per check (see :mod:`smartlock.doctor`).

Only rendering lives here.  The exit code is 0 when every check passed and 1 when any failed;
2 stays for usage errors (no site, a bad option), printed as one ``error: ...`` line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from smartlock.cli_common import DEFAULT_SITE, DbOption, SiteOption, fail, load_site
from smartlock.core.errors import SmartlockError

if TYPE_CHECKING:
    from smartlock.doctor import Check

OK_MARK = "✓"
FAIL_MARK = "✗"


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def render(checks: Sequence[Check]) -> None:
    """``✓ name: detail``, or ``✗ name: detail`` and an indented ``fix:`` line; colour only on
    a terminal (click drops the styles in a pipe)."""
    for check in checks:
        if check.ok:
            mark = typer.style(OK_MARK, fg=typer.colors.GREEN, bold=True)
            typer.echo(f"{mark} {check.name}: {check.detail}")
        else:
            mark = typer.style(FAIL_MARK, fg=typer.colors.RED, bold=True)
            typer.echo(f"{mark} {typer.style(check.name, bold=True)}: {check.detail}")
            typer.echo(f"    fix: {check.fix}")
    failed = sum(not check.ok for check in checks)
    if failed:
        typer.secho(f"{failed} of {len(checks)} checks failed", fg=typer.colors.RED)
    else:
        typer.secho(f"all {len(checks)} checks passed", fg=typer.colors.GREEN)


def doctor(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of {name, ok, detail, fix}.")
    ] = False,
    site: SiteOption = DEFAULT_SITE,
    db: DbOption = None,
) -> None:
    """Check the site: file permissions, certificates, the broker (a TLS handshake, no login),
    the store's schema, the locks' revocations, health and clocks, and the audit chain.

    Exit code 0 when every check passed, 1 when any failed.  Nothing is changed."""
    from smartlock.adapters.store.database import parse_url
    from smartlock.doctor import run_checks

    loaded = load_site(site)
    try:
        parse_url(loaded.database_url(db))  # an unusable URL is the user's mistake: exit 2
        checks = run_checks(loaded, db=db, now=time.time())
    except (SmartlockError, OSError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps([check.as_dict() for check in checks], indent=2, ensure_ascii=False))
    else:
        render(checks)
    raise typer.Exit(0 if all(check.ok for check in checks) else 1)
