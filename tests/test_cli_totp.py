"""``smartlock user totp``: an owner's second factor for the dashboard.  It prints the
authenticator app's URI and 10 recovery codes once, keeps the secret sealed and the codes as
digests, refuses anyone but an owner with a one-line error, and ``--disable`` turns it off.

One site per module (keys take a second to make), copied for every test.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
from typer.testing import CliRunner, Result

from smartlock import crypto
from smartlock.admin import create_site, open_store
from smartlock.broker import free_port
from smartlock.cli import app
from smartlock.site import Site

runner = CliRunner()
CODE_LINE = re.compile(r"^  ([0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5})$", re.MULTILINE)


def invoke(site: Site, *args: str) -> Result:
    return runner.invoke(app, [*args, "--site", str(site.root)])


def assert_clean_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    for fragment in fragments:
        assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


@pytest.fixture(autouse=True)
def _no_site_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMARTLOCK_SITE", raising=False)
    monkeypatch.delenv("SMARTLOCK_DB", raising=False)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return create_site(
        tmp_path_factory.mktemp("template") / "home",
        locks=["lock_01"],
        owners=["owner"],
        residents=["resident"],
        guests=["guest_01"],
        broker_port=free_port(),
    )


@pytest.fixture
def site(template: Site, tmp_path: Path) -> Site:
    shutil.copytree(template.root, tmp_path / "home", symlinks=True)
    return Site.load(tmp_path / "home")


def test_user_totp_prints_the_uri_and_ten_recovery_codes_once(site: Site) -> None:
    result = invoke(site, "user", "totp", "owner")

    assert result.exit_code == 0, result.output
    assert "Second factor on for owner" in result.stdout
    [uri] = re.findall(r"otpauth://\S+", result.stdout)
    parts = urlsplit(uri)
    assert unquote(parts.path) == f"/smartlock {site.name}:owner"
    assert parse_qs(parts.query)["issuer"] == [f"smartlock {site.name}"]
    codes = CODE_LINE.findall(result.stdout)
    assert len(codes) == len(set(codes)) == 10
    assert "█" not in result.stdout and "▀" not in result.stdout  # no QR code into a pipe

    secret = parse_qs(parts.query)["secret"][0]
    with open_store(site) as store:
        state = store.web_totp("owner")
        assert state is not None
        assert state.secret == secret
        assert store.recovery_codes_left("owner") == 10
        for code in codes:  # stored as digests: each is usable (once)
            assert store.use_recovery_code(
                "owner", crypto.token_digest(code.replace("-", "")), now=0
            )
    assert len(pyotp.TOTP(secret).now()) == 6


def test_user_totp_shows_a_qr_code_on_a_terminal(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("smartlock.cli_dashboard.sys", SimpleNamespace(stdout=Terminal()))

    result = invoke(site, "user", "totp", "owner")

    assert result.exit_code == 0, result.output
    assert "█" in result.stdout or "▀" in result.stdout  # segno's compact terminal QR code
    assert len(CODE_LINE.findall(result.stdout)) == 10


def test_user_totp_again_replaces_the_secret_and_the_codes(site: Site) -> None:
    first = invoke(site, "user", "totp", "owner")
    second = invoke(site, "user", "totp", "owner")

    assert second.exit_code == 0
    assert not set(CODE_LINE.findall(first.stdout)) & set(CODE_LINE.findall(second.stdout))
    with open_store(site) as store:
        state = store.web_totp("owner")
        assert state is not None
        assert state.secret in second.stdout
        assert state.secret not in first.stdout


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("resident", "resident is a resident: only owners can have a second factor"),
        ("guest_01", "guest_01 is a guest: only owners can have a second factor"),
        ("nobody", "unknown user nobody"),
    ],
)
def test_user_totp_for_anyone_but_an_owner_is_refused(site: Site, name: str, fragment: str) -> None:
    result = invoke(site, "user", "totp", name)

    assert_clean_error(result, fragment)
    with open_store(site) as store:
        assert store.web_totp(name) is None


def test_user_totp_disable_turns_it_off(site: Site) -> None:
    invoke(site, "user", "totp", "owner")

    result = invoke(site, "user", "totp", "owner", "--disable")

    assert result.exit_code == 0, result.output
    assert "Second factor off for owner" in result.stdout
    with open_store(site) as store:
        assert store.web_totp("owner") is None
        assert store.recovery_codes_left("owner") == 0


def test_user_totp_disable_without_one_is_refused(site: Site) -> None:
    assert_clean_error(invoke(site, "user", "totp", "owner", "--disable"), "no second factor")


def test_user_totp_is_audited_without_the_secret(site: Site) -> None:
    on = invoke(site, "user", "totp", "owner")
    invoke(site, "user", "totp", "owner", "--disable")

    with open_store(site) as store:
        entries = [e.record for e in store.audit_entries() if e.record.action == "web_totp"]
        audit_text = "\n".join(repr(e.record) for e in store.audit_entries())
    assert [(e.who, e.channel, e.reason) for e in entries] == [
        ("owner", "admin", "second factor set; sessions signed out"),
        ("owner", "admin", "second factor removed"),
    ]
    secret = parse_qs(urlsplit(re.findall(r"otpauth://\S+", on.stdout)[0]).query)["secret"][0]
    assert secret not in audit_text
    for code in CODE_LINE.findall(on.stdout):
        assert code not in audit_text


def test_user_totp_explains_itself_in_help() -> None:
    result = runner.invoke(app, ["user", "totp", "--help"])

    assert result.exit_code == 0
    assert "Turn on an owner's second factor for the dashboard" in result.stdout
    assert "--disable" in result.stdout
