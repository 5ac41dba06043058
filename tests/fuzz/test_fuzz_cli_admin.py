"""Fuzzes the owner's command line (smartlock.cli_admin): ``parse_moment``, and the ``smartlock``
Typer app run through ``CliRunner`` with fuzzed option values for commands that parse input and
touch only the site's store (``pass grant``, ``audit``, ``pass revoke``).

Rules: ``parse_moment`` gives a Unix time a message can carry or raises ``ConfigError``, nothing
else (``-N`` with ``m``, ``h`` or ``d`` is that long before ``now``); a command ends with exit code
0, or 2 and one ``error: ...`` line (or Click's usage error), never with an exception or a
traceback.  A command costs a store's opening, so those tests take a tenth of the fuzz profile's
examples; the parsers behind them get the full budget here and in test_fuzz_admin / _passes.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from fuzz_support import NOW, costly_examples, when_texts
from hypothesis import example, given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from smartlock.admin import LATEST_TIME, create_site
from smartlock.cli import app
from smartlock.cli_admin import parse_moment
from smartlock.core.errors import ConfigError
from smartlock.site import Site

PARIS = ZoneInfo("Europe/Paris")
UNIT_S = {"m": 60, "h": 3600, "d": 86400}
RELATIVE_PAST = re.compile(r"-([0-9]+)([mhd])")
runner = CliRunner()
# The site is named on the command line; the caller's environment must not name another.
CLEAN_ENV: dict[str, str | None] = {"SMARTLOCK_SITE": None, "SMARTLOCK_DB": None}


@given(when_texts)
# Regressions: a relative past before 1970 came back as a negative time, and more than 4300
# digits raised ValueError instead of ConfigError.
@example(text="-99999999d")
@example(text="-" + "9" * 5000 + "d")
def test_parse_moment_gives_a_time_a_message_can_carry_or_a_config_error(text: str) -> None:
    try:
        moment = parse_moment(text, PARIS, now=int(NOW))
    except ConfigError:
        return
    assert type(moment) is int
    assert 0 <= moment <= LATEST_TIME
    past = RELATIVE_PAST.fullmatch(text.strip())
    if past:
        assert moment == int(NOW) - int(past[1]) * UNIT_S[past[2]]


# --- the command line -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """owner and guest_01, who has no pass yet, on lock_01; no broker runs."""
    return create_site(
        tmp_path_factory.mktemp("cli") / "site",
        locks=["lock_01"],
        owners=["owner"],
        guests=["guest_01"],
        passes=[],
        broker_port=18883,
        timezone="Europe/Paris",
    )


def invoke(site: Site, *args: str, positional: tuple[str, ...] = ()) -> Result:
    """``smartlock ARGS --site SITE -- POSITIONAL`` (after '--', '-5' is an argument)."""
    return runner.invoke(app, [*args, "--site", str(site.root), "--", *positional], env=CLEAN_ENV)


def assert_clean_exit(result: Result) -> None:
    """Exit 0, or exit 2 with a one-line error or a usage error; never an exception."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.stderr.startswith("error: ") or "Usage:" in result.stderr, result.stderr


def _option(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """``--name=VALUE`` (one argument, so a value starting with '-' stays a value), or nothing."""
    return st.just([]) | values.map(lambda value: [f"--{name}={value}"])


uses = st.integers().map(str) | st.sampled_from(["", "0", "1", "65535", "65536", "1e3", "-1"])
hours = st.text(max_size=30) | st.sampled_from(["mon-fri 08:00-18:00", "sat 10:00-24:00"])


@costly_examples()
@given(
    _option("from", when_texts),
    _option("until", when_texts),
    _option("uses", uses),
    _option("hours", hours),
    st.sampled_from(["guest_01", "owner", "nobody", ""]),
)
# Regression: a relative past too far back crashed the command with OverflowError.
@example(
    valid_from=["--from=-999999999999999d"],
    valid_until=[],
    max_uses=[],
    weekly_hours=[],
    guest="guest_01",
)
def test_pass_grant_with_any_options_ends_cleanly(
    site: Site,
    valid_from: list[str],
    valid_until: list[str],
    max_uses: list[str],
    weekly_hours: list[str],
    guest: str,
) -> None:
    result = invoke(
        site, "pass", "grant", guest, "lock_01", *valid_from, *valid_until, *max_uses, *weekly_hours
    )
    assert_clean_exit(result)
    if result.exit_code == 0:
        assert result.stdout.startswith("Pass ")


@costly_examples()
@given(
    _option("since", when_texts),
    _option("limit", uses),
    _option("user", st.text(max_size=10)),
    st.sampled_from([[], ["--json"], ["--csv"], ["--json", "--csv"]]),
)
# Regression: a limit beyond 64 bits crashed the command with OverflowError from SQLite.
@example(since=[], limit=["--limit=9223372036854775808"], user=[], output=[])
def test_audit_with_any_options_ends_cleanly(
    site: Site, since: list[str], limit: list[str], user: list[str], output: list[str]
) -> None:
    assert_clean_exit(invoke(site, "audit", *since, *limit, *user, *output))


def test_the_fuzzed_commands_can_succeed(site: Site) -> None:
    """The properties above are not vacuous: with valid options both commands succeed."""
    start = dt.datetime.now(PARIS) + dt.timedelta(days=400)
    granted = invoke(
        site,
        "pass",
        "grant",
        "guest_01",
        "lock_01",
        f"--from={start:%Y-%m-%dT%H:%M}",
        f"--until={start + dt.timedelta(days=1):%Y-%m-%dT%H:%M}",
        "--uses=3",
        "--hours=mon-fri 08:00-18:00",
    )
    assert granted.exit_code == 0, granted.output
    assert granted.stdout.startswith("Pass ")
    audit = invoke(site, "audit", "--since=-1d", "--json")
    assert audit.exit_code == 0, audit.output
    assert '"pass_grant"' in audit.stdout


@costly_examples()
@given(st.integers().map(str) | st.text(max_size=12))
# Regression: an id beyond the store's integers crashed the command with OverflowError.
@example(pass_id="99999999999999999999")
@example(pass_id="-9223372036854775809")
def test_pass_revoke_with_any_id_ends_cleanly(site: Site, pass_id: str) -> None:
    assert_clean_exit(invoke(site, "pass", "revoke", positional=(pass_id,)))
