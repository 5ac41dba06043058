"""Running ``smartlock`` commands in this process, as a user types them (typer's CliRunner), and
the shape every refused command must have."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from smartlock.cli import app
from smartlock.site import Site

runner = CliRunner()


def invoke(site: Site | Path, *args: str) -> Result:
    """Run ``smartlock ARGS --site SITE`` (the site option last, as users type it)."""
    root = site.root if isinstance(site, Site) else site
    return runner.invoke(app, [*args, "--site", str(root)])


def assert_clean_error(result: Result, *fragments: str, one_line: bool = False) -> None:
    """Exit code 2, 'error: ...' on stderr naming every fragment (on one line when asked),
    nothing on stdout, no traceback anywhere."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stderr.startswith("error: "), result.stderr
    if one_line:
        assert result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
