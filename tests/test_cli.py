"""The ``smartlock`` command line: help texts, ``init`` (the site and its store), and the errors
every command reports before it touches the network.  The management commands (users, passes,
locks, audit, ...) are tested in test_cli_admin.py.

In this Click version ``CliRunner`` keeps both streams apart as ``result.stdout`` and
``result.stderr`` (``result.output`` interleaves them), so errors are checked on stderr and
normal output on stdout.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli_support import assert_clean_error
from smartlock.admin import create_site, open_store
from smartlock.broker import free_port
from smartlock.cli import app
from smartlock.core.roles import Role
from smartlock.site import Site

pytestmark = pytest.mark.usefixtures("cli_isolated")

runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


def new_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="smartlock-test-"))


def flat(text: str) -> str:
    """Help text without the line breaks Rich puts in at the terminal width."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    """An owner and two guests, so that 'guest unlock' without --id cannot guess who you are.

    Only read: no test here changes it (those that create a site get a fresh directory)."""
    root = new_dir()
    yield create_site(
        root,
        locks=["lock_01"],
        owners=["owner"],
        guests=["guest_01", "guest_02"],
        passes=[("guest_01", "lock_01")],
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
        (["init"], "Provision a site: CA and broker certificate, key pairs, broker accounts and "
         "the store."),
        (["init"], "the store gets the users (owner / resident / guest), locks and passes"),
        (["broker"], "Run the site's Mosquitto (TLS only, ACL, hashed passwords)"),
        (["radio-hub"], "Run the virtual BLE radio: one controller per lock and guest"),
        (["backend"], "Run the backend: it decides key requests and remote commands and keeps "
         "the audit log."),
        (["backend"], "Every decision comes from the store"),
        (["lock"], "Run a lock agent ('lock run --id ID'), or manage the site's locks."),
        (["lock", "run"], "Run a lock agent: keys over MQTT, tokens over BLE, the bolt through "
         "the actuator."),
        (["guest"], "The app of guests, residents and owners: get a session key and open a lock"),
        (["guest", "unlock"], "Ask for a session key and advertise fresh tokens until the lock "
         "confirms it unlocked."),
        (["guest", "lock"], "Like 'unlock', but asks the lock to throw the bolt."),
        (["demo"], "Everything in one command on a temporary site"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)  # fmt: skip
def test_every_command_explains_itself_in_help(command: list[str], explanation: str) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert f"{command[-1]} [OPTIONS]" in result.stdout
    assert explanation in flat(result.stdout)


@pytest.mark.parametrize(
    ("group", "commands"),
    [
        (["lock"], ["run", "add", "list", "reset", "supervise"]),
        (["guest"], ["unlock", "lock", "enroll"]),
    ],
    ids=["lock", "guest"],
)
def test_command_groups_list_their_subcommands(group: list[str], commands: list[str]) -> None:
    result = invoke(*group, "--help")
    assert result.exit_code == 0, result.output
    panel = result.stdout.split("─ Commands ─", 1)[1].splitlines()
    # a command's row starts right after the border; wrapped help text is indented further
    listed = [line.split()[1] for line in panel if line.startswith("│ ") and line[2] != " "]
    assert listed == commands


def test_top_level_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    for command in ("init", "broker", "radio-hub", "backend", "lock", "guest", "demo"):
        assert f" {command} " in result.stdout, command


def test_init_help_names_every_option_of_the_new_layout() -> None:
    result = invoke("init", "--help")
    assert result.exit_code == 0, result.output
    for option in ("--lock", "--owner", "--resident", "--guest", "--pass", "--pass-days",
                   "--heartbeat", "--timezone", "--db", "--key-ttl", "--max-failures",
                   "--failure-window", "--lockout", "--command-window", "--force"):  # fmt: skip
        assert f" {option} " in result.stdout, option
    assert "--grant" not in result.stdout


# --- init ---------------------------------------------------------------------------------------


def test_init_creates_a_site_and_its_store_and_prints_the_summary(fresh_dir: Path) -> None:
    root = fresh_dir / "site"
    result = invoke(
        "init", str(root), "--lock", "front", "--lock", "back", "--owner", "olive",
        "--resident", "rob", "--resident", "rita", "--guest", "alice", "--guest", "bob",
        "--pass", "alice:front", "--pass-days", "2", "--key-ttl", "120", "--heartbeat", "15",
        "--timezone", "Europe/Paris", "--max-failures", "5", "--failure-window", "60",
        "--lockout", "120",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    site = Site.load(root)
    assert site.locks == ("front", "back")
    assert site.users == ("olive", "rob", "rita", "alice", "bob")
    assert (site.session_ttl_s, site.heartbeat_s, site.timezone) == (120, 15, "Europe/Paris")
    assert (site.max_failures, site.failure_window_s, site.lockout_s) == (5, 60, 120)
    assert 0 < site.broker_port < 65536
    with open_store(site) as store:
        roles = {user.name: user.role for user in store.list_users()}
        [granted] = store.list_passes(now=int(time.time()))
        locks = [lock.lock_id for lock in store.list_locks()]
    assert roles == {
        "olive": Role.OWNER,
        "rob": Role.RESIDENT,
        "rita": Role.RESIDENT,
        "alice": Role.GUEST,
        "bob": Role.GUEST,
    }
    assert sorted(locks) == ["back", "front"]
    assert (granted.guest, granted.lock_id) == ("alice", "front")  # bob has no pass
    assert granted.valid_until - granted.valid_from == 2 * 86400
    assert granted.max_uses is None
    assert result.stdout.splitlines() == [
        f"Site created in {site.root}",
        f"  broker     127.0.0.1:{site.broker_port} (TLS, CA {site.ca_cert})",
        "  store      sqlite",
        "  locks      front, back",
        "  owners     olive",
        "  residents  rob, rita",
        "  guests     alice, bob",
        "  intrusion  more than 5 failures in 60 s: lockout for 120 s",
        f"Next: smartlock broker --site {site.root}",
    ]


def test_init_without_options_makes_an_owner_a_guest_and_a_pass_on_one_lock(
    fresh_dir: Path,
) -> None:
    root = fresh_dir / "site"
    result = invoke("init", str(root))
    assert result.exit_code == 0, result.output
    site = Site.load(root)
    assert (site.locks, site.users, site.timezone) == (("lock_01",), ("owner", "guest_01"), "UTC")
    with open_store(site) as store:
        passes = [(p.guest, p.lock_id) for p in store.list_passes(now=int(time.time()))]
    assert passes == [("guest_01", "lock_01")]  # every guest gets a pass on every lock
    assert "  residents  none" in result.stdout.splitlines()
    assert "  intrusion  more than 3 failures in 300 s: lockout for 300 s" in result.stdout
    assert (site.max_failures, site.failure_window_s, site.lockout_s) == (3, 300, 300)


def test_init_with_a_database_url_keeps_it_in_site_json(fresh_dir: Path) -> None:
    root = fresh_dir / "site"
    url = f"sqlite:///{fresh_dir / 'elsewhere.db'}"
    result = invoke("init", str(root), "--db", url)
    assert result.exit_code == 0, result.output
    assert Site.load(root).store_url == url
    assert (fresh_dir / "elsewhere.db").is_file()
    assert not (root / "backend" / "store.db").exists()


def test_init_on_an_existing_site_asks_for_force(site: Site) -> None:
    ca_before = site.ca_cert.read_bytes()
    result = invoke("init", str(site.root))
    assert_clean_error(result, "not empty", "--force")
    assert site.ca_cert.read_bytes() == ca_before


def test_init_with_a_pass_without_colon_explains_the_format(fresh_dir: Path) -> None:
    root = fresh_dir / "site"
    result = invoke("init", str(root), "--pass", "bad")
    assert_clean_error(result, "--pass 'bad'", "GUEST:LOCK")
    assert not root.exists()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        pytest.param("mallory:lock_01",
                     "pass for 'mallory', who is not one of the guests (--guest)",
                     id="unknown-guest"),
        pytest.param("alice:shed", "pass on 'shed', which is not one of the locks (--lock)",
                     id="unknown-lock"),
        pytest.param("owner:lock_01", "pass for 'owner', who is not one of the guests (--guest)",
                     id="owner-needs-no-pass"),
    ],
)  # fmt: skip
def test_init_with_a_pass_naming_an_unknown_guest_or_lock_is_one_clean_line(
    fresh_dir: Path, item: str, message: str
) -> None:
    root = fresh_dir / "site"
    result = invoke("init", str(root), "--guest", "alice", "--pass", item)
    assert_clean_error(result, message)
    assert result.stderr == f"error: {message}\n"
    assert not root.exists()  # checked before anything is written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--lock", "Bad Id"], "invalid lock id 'Bad Id'", id="lock-id"),
        pytest.param(["--guest", "Eve!"], "invalid user name 'Eve!'", id="user-name"),
        pytest.param(["--owner", "lock_01"], "must all be different", id="owner-is-a-lock"),
        pytest.param(["--resident", "owner"], "must all be different", id="twice"),
        pytest.param(["--guest", "backend"], "these names are reserved: backend", id="reserved"),
        pytest.param(["--heartbeat", "0"], "heartbeat interval must be at least 1", id="beat"),
        pytest.param(["--key-ttl", "0"], "session key lifetime must be 1..86400", id="ttl"),
        pytest.param(["--pass-days", "0"], "passes last 1..3660 days", id="pass-days"),
        pytest.param(["--port", "70000"], "--port must be 0..65535", id="port"),
        pytest.param(
            ["--lockout", "0"],
            "--max-failures, --failure-window, --lockout and --command-window must be at least 1",
            id="lockout",
        ),
        pytest.param(
            ["--command-window", "0"],
            "--max-failures, --failure-window, --lockout and --command-window must be at least 1",
            id="command-window",
        ),
    ],
)
def test_init_refuses_an_impossible_site_before_creating_it(
    fresh_dir: Path, args: list[str], message: str
) -> None:
    root = fresh_dir / "site"
    result = invoke("init", str(root), *args)
    assert_clean_error(result, message)
    assert not root.exists()


def test_init_with_an_unknown_time_zone_names_it(fresh_dir: Path) -> None:
    root = fresh_dir / "site"
    result = invoke("init", str(root), "--timezone", "Mars/Olympus")
    assert_clean_error(result, "unknown time zone 'Mars/Olympus'", "Europe/Paris")
    assert not root.exists()


def test_init_on_a_regular_file_is_a_clean_error(fresh_dir: Path) -> None:
    target = fresh_dir / "notes.txt"
    target.write_text("not a directory")
    result = invoke("init", str(target))
    assert_clean_error(result, str(target))
    assert target.read_text() == "not a directory"


# --- errors reported before anything runs ----------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["backend"],
        ["broker"],
        ["radio-hub"],
        ["lock", "run", "--id", "lock_01"],
        ["guest", "unlock", "lock_01"],
    ],
    ids=" ".join,
)
def test_service_on_a_directory_without_a_site_says_so(fresh_dir: Path, command: list[str]) -> None:
    missing = fresh_dir / "nonexistent"
    result = invoke(*command, "--site", str(missing))
    assert_clean_error(result, f"{missing} is not a smartlock site", "smartlock init")


def test_service_on_a_version_1_site_says_to_create_it_again(fresh_dir: Path) -> None:
    (fresh_dir / "site.json").write_text(
        json.dumps({"version": 1, "name": "old", "broker": {"host": "127.0.0.1", "port": 8883},
                    "locks": ["lock_01"], "guests": ["guest_01"],
                    "grants": [["guest_01", "lock_01"]]})
    )  # fmt: skip
    result = invoke("backend", "--site", str(fresh_dir))
    assert_clean_error(result, "unsupported site version 1", "'smartlock init'")


def test_lock_run_with_an_unknown_id_names_it(site: Site) -> None:
    result = invoke("lock", "run", "--id", "nope", "--site", str(site.root))
    assert_clean_error(result, "no lock 'nope'", "locks: lock_01")


def test_lock_run_with_a_user_name_is_no_lock(site: Site) -> None:
    result = invoke("lock", "run", "--id", "guest_01", "--site", str(site.root))
    assert_clean_error(result, "no lock 'guest_01'")


def test_lock_run_with_an_unknown_actuator_lists_the_choices(site: Site) -> None:
    result = invoke(
        "lock", "run", "--id", "lock_01", "--site", str(site.root), "--actuator", "weird"
    )
    assert_clean_error(result, "unknown actuator 'weird'", "gpio:PIN")


@pytest.mark.parametrize("seconds", ["0", "-1"])
def test_lock_run_refuses_a_relock_delay_that_is_not_positive(site: Site, seconds: str) -> None:
    result = invoke(
        "lock", "run", "--id", "lock_01", "--site", str(site.root), "--relock-after", seconds
    )
    assert_clean_error(result, "--relock-after must be a positive number")


@pytest.mark.parametrize("seconds", ["0", "61"])
def test_lock_run_refuses_a_duplicate_window_outside_0_to_60(site: Site, seconds: str) -> None:
    result = invoke(
        "lock", "run", "--id", "lock_01", "--site", str(site.root), "--duplicate-window", seconds
    )
    assert_clean_error(result, "--duplicate-window must be more than 0 and at most 60")


@pytest.mark.parametrize("seconds", ["1", "301"])
def test_lock_run_refuses_a_token_window_outside_2_to_300(site: Site, seconds: str) -> None:
    result = invoke(
        "lock", "run", "--id", "lock_01", "--site", str(site.root), "--token-window", seconds
    )
    assert_clean_error(result, "--token-window must be between 2 and 300 seconds")


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


def test_guest_on_a_site_with_several_users_must_pick_one(site: Site) -> None:
    result = invoke("guest", "unlock", "lock_01", "--site", str(site.root))
    assert_clean_error(result, "several users (owner, guest_01, guest_02)", "pick one with --id")


@pytest.mark.parametrize("user", ["eve", "lock_01", "backend"])
def test_guest_with_an_id_that_is_no_user_names_it_and_the_users(site: Site, user: str) -> None:
    result = invoke("guest", "unlock", "lock_01", "--id", user, "--site", str(site.root))
    assert_clean_error(result, f"no user '{user}'", "users: owner, guest_01, guest_02")
