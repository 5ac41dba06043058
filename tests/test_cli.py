"""The ``smartlock`` command line: help texts, ``init``, and the errors every command reports
before it touches the network.

In this Click version ``CliRunner`` keeps both streams apart as ``result.stdout`` and
``result.stderr`` (``result.output`` interleaves them), so errors are checked on stderr and
normal output on stdout.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from smartlock.broker import free_port
from smartlock.cli import app
from smartlock.site import Site, provision_site

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def new_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="smartlock-test-"))


def flat(text: str) -> str:
    """Help text without the line breaks Rich puts in at the terminal width."""
    return " ".join(text.split())


def assert_clean_error(result: Result, *fragments: str) -> None:
    """Exit code 2, 'error: ...' on stderr naming every fragment, no traceback anywhere."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stderr.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


@pytest.fixture(autouse=True)
def _keep_logging_and_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Commands call logging.basicConfig(force=True) on the runner's (soon closed) stderr and
    quieten some loggers; put the logging setup back so later tests log normally."""
    monkeypatch.delenv("SMARTLOCK_SITE", raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("bumble", "smartlock.mqtt.paho")}
    quiet["asyncio"] = logging.getLogger("asyncio").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    """Two guests, so that 'guest unlock' without --id cannot guess who you are."""
    root = new_dir()
    yield provision_site(
        root,
        locks=["lock_01"],
        guests=["guest_01", "guest_02"],
        grants=[("guest_01", "lock_01")],
        broker_host="127.0.0.1",
        broker_port=free_port(),
    )
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_dir() -> Iterator[Path]:
    root = new_dir()
    yield root
    shutil.rmtree(root, ignore_errors=True)


# --- help ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "explanation"),
    [
        (["init"], "Provision a site: CA and broker certificate"),
        (["broker"], "Run the site's Mosquitto (TLS only, ACL, hashed passwords)"),
        (["radio-hub"], "Run the virtual BLE radio: one controller per lock and guest"),
        (["backend"], "Run the backend: issue session keys to granted guests"),
        (["lock"], "Run a lock agent: keys over MQTT, tokens over BLE"),
        (["guest", "unlock"], "Ask for a session key and advertise fresh tokens"),
        (["guest", "lock"], "asks the lock to throw the bolt"),
        (["demo"], "Everything in one command on a temporary site"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_every_command_explains_itself_in_help(command: list[str], explanation: str) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert f"{command[-1]} [OPTIONS]" in result.stdout
    assert explanation in flat(result.stdout)


def test_top_level_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    for command in ("init", "broker", "radio-hub", "backend", "lock", "guest", "demo"):
        assert f" {command} " in result.stdout, command


# --- init ---------------------------------------------------------------------------------------


def test_init_creates_a_site_and_prints_its_summary(fresh_dir: Path) -> None:
    root = fresh_dir / "site"
    result = invoke(
        "init", str(root), "--lock", "front", "--guest", "alice", "--guest", "bob",
        "--grant", "alice:front", "--key-ttl", "120",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    site = Site.load(root)
    assert (site.locks, site.guests, site.grants) == (
        ("front",),
        ("alice", "bob"),
        (("alice", "front"),),
    )
    assert site.session_ttl_s == 120
    assert 0 < site.broker_port < 65536
    lines = result.stdout.splitlines()
    assert lines[0] == f"Site created in {site.root}"
    assert f"  broker   127.0.0.1:{site.broker_port} (TLS, CA {site.ca_cert})" in lines
    assert "  locks    front" in lines
    assert "  guests   alice, bob" in lines
    assert "  grants   alice->front" in lines
    assert lines[-1] == f"Next: smartlock broker --site {site.root}"


def test_init_on_an_existing_site_asks_for_force(site: Site) -> None:
    ca_before = site.ca_cert.read_bytes()
    result = invoke("init", str(site.root))
    assert_clean_error(result, "not empty", "--force")
    assert site.ca_cert.read_bytes() == ca_before


def test_init_with_a_grant_without_colon_explains_the_format(fresh_dir: Path) -> None:
    root = fresh_dir / "site"
    result = invoke("init", str(root), "--grant", "bad")
    assert_clean_error(result, "--grant 'bad'", "GUEST:LOCK")
    assert not root.exists()


def test_init_with_an_invalid_lock_id_names_the_id(fresh_dir: Path) -> None:
    root = fresh_dir / "site"
    result = invoke("init", str(root), "--lock", "Bad Id")
    assert_clean_error(result, "invalid lock id 'Bad Id'")
    assert not root.exists()


def test_init_with_a_grant_to_an_unknown_guest_names_the_guest(fresh_dir: Path) -> None:
    root = fresh_dir / "site"
    result = invoke("init", str(root), "--guest", "alice", "--grant", "mallory:lock_01")
    assert_clean_error(result, "unknown guest 'mallory'")
    assert not root.exists()


def test_init_on_a_regular_file_is_a_clean_error(fresh_dir: Path) -> None:
    target = fresh_dir / "notes.txt"
    target.write_text("not a directory")
    result = invoke("init", str(target))
    assert_clean_error(result, str(target))
    assert target.read_text() == "not a directory"


# --- errors reported before anything runs ----------------------------------------------------


@pytest.mark.parametrize("command", [["backend"], ["broker"], ["radio-hub"]])
def test_service_on_a_directory_without_a_site_says_so(fresh_dir: Path, command: list[str]) -> None:
    missing = fresh_dir / "nonexistent"
    result = invoke(*command, "--site", str(missing))
    assert_clean_error(result, f"{missing} is not a smartlock site", "smartlock init")


def test_lock_with_an_unknown_id_names_it(site: Site) -> None:
    result = invoke("lock", "--id", "nope", "--site", str(site.root))
    assert_clean_error(result, "no lock 'nope'", "locks: lock_01")


def test_lock_with_an_unknown_actuator_lists_the_choices(site: Site) -> None:
    result = invoke("lock", "--id", "lock_01", "--site", str(site.root), "--actuator", "weird")
    assert_clean_error(result, "unknown actuator 'weird'", "gpio:PIN")


@pytest.mark.parametrize("seconds", ["0", "-1"])
def test_lock_refuses_a_relock_delay_that_is_not_positive(site: Site, seconds: str) -> None:
    result = invoke("lock", "--id", "lock_01", "--site", str(site.root), "--relock-after", seconds)
    assert_clean_error(result, "--relock-after must be a positive number")


@pytest.mark.parametrize("seconds", ["0", "61"])
def test_lock_refuses_a_duplicate_window_outside_0_to_60(site: Site, seconds: str) -> None:
    result = invoke(
        "lock", "--id", "lock_01", "--site", str(site.root), "--duplicate-window", seconds
    )
    assert_clean_error(result, "--duplicate-window must be more than 0 and at most 60")


@pytest.mark.parametrize("action", ["unlock", "lock"])
def test_guest_naming_an_unknown_lock_fails_before_any_network_access(
    site: Site, action: str
) -> None:
    # nothing listens on the site's broker port: reaching the network would fail differently
    result = invoke(
        "guest", action, "lock_99", "--id", "guest_01", "--site", str(site.root),
        "--timeout", "5",
    )  # fmt: skip
    assert_clean_error(result, "no lock 'lock_99'", "locks: lock_01")


def test_guest_on_a_site_with_several_guests_must_pick_one(site: Site) -> None:
    result = invoke("guest", "unlock", "lock_01", "--site", str(site.root))
    assert_clean_error(result, "several guests (guest_01, guest_02)", "pick one with --id")


def test_guest_with_an_unknown_guest_id_names_it(site: Site) -> None:
    result = invoke("guest", "unlock", "lock_01", "--id", "eve", "--site", str(site.root))
    assert_clean_error(result, "no guest 'eve'")
