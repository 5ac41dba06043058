"""The owner's management commands: users, passes, locks, the audit log and lock status, and the
errors of 'watch' and 'remote' that need no broker.

No broker runs here, so every command that changes accounts says the broker will read its files
when it starts.  Creating keys takes about a second per site, so one site is made per module and
copied for every test that changes it.  ``CliRunner`` keeps stdout and stderr apart: errors are
checked on stderr, results on stdout.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import sqlite3
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cli_support import assert_clean_error, invoke, runner
from site_copies import copy_site
from smartlock.adapters.store import AuditRecord, LockHealth
from smartlock.admin import create_site, open_store
from smartlock.broker import free_port
from smartlock.cli import app
from smartlock.site import Site

ZONE = "Europe/Paris"
PARIS = ZoneInfo(ZONE)
NOW_S = int(time.time())


def flat(text: str) -> str:
    """Output without the line breaks and box drawing Rich puts in."""
    return " ".join(text.replace("│", " ").split())


def table_rows(text: str) -> list[list[str]]:
    """The body rows of a Rich table, as lists of cell texts."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]


@pytest.fixture(autouse=True)
def _isolated_with_wide_tables(cli_isolated: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run in this process (see ``cli_isolated``), tables 80 columns wide: written to
    a pipe they still keep whole rows."""
    monkeypatch.setenv("COLUMNS", "80")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """owner, resident, guest_01 (pass 1 on lock_01, from now for 30 days) and guest_02 (none)."""
    return create_site(
        tmp_path_factory.mktemp("template") / "site",
        locks=["lock_01"],
        owners=["owner"],
        residents=["resident"],
        guests=["guest_01", "guest_02"],
        passes=[("guest_01", "lock_01")],
        broker_port=free_port(),
        timezone=ZONE,
    )


@pytest.fixture
def site(template: Site, tmp_path: Path) -> Site:
    """A copy of the template that the test may change."""
    return copy_site(template, tmp_path / "site")


AUDIT_RECORDS = [
    AuditRecord(
        at_ms=int(dt.datetime(2024, 1, 15, 12, 0, tzinfo=PARIS).timestamp() * 1000),
        who="guest_01", role="guest", lock_id="lock_01", channel="ble", action="unlock",
        result="granted", reason="",
    ),
    AuditRecord(
        at_ms=(NOW_S - 90 * 60) * 1000 + 250,
        who="guest_01", role="guest", lock_id="lock_01", channel="ble", action="unlock",
        result="denied", reason="outside_hours", attempt=1,
    ),
    AuditRecord(
        at_ms=(NOW_S - 10 * 60) * 1000,
        who="owner", role="owner", lock_id="lock_01", channel="remote", action="lock",
        result="granted", reason="",
    ),
    AuditRecord(
        at_ms=(NOW_S - 5 * 60) * 1000,
        who="", role="", lock_id="lock_02", channel="system", action="offline",
        result="alert", reason="two heartbeats missed",
    ),
]  # fmt: skip


@pytest.fixture(scope="module")
def audited(template: Site, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """The template with the four AUDIT_RECORDS in its log (seq 1..4); read-only."""
    copied = copy_site(template, tmp_path_factory.mktemp("audited") / "site")
    with open_store(copied) as store:
        for record in AUDIT_RECORDS:
            store.append_audit(record)
    return copied


# --- help ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "summary"),
    [
        (["user", "add"], "Add a user with a role: a store record, a key pair and a broker"),
        (["user", "list"], "List the users with their role"),
        (["user", "remove"], "Remove a user: revoke their passes, delete their key pair"),
        (["pass", "grant"], "Give a guest a pass to one lock for a time window"),
        (["pass", "list"], "List passes with their window, uses, weekly hours and state."),
        (["pass", "revoke"], "Revoke a pass at once"),
        (["lock", "add"], "Add a lock: a store record, a key pair and a broker account."),
        (["lock", "list"], "List the locks with their command key epoch"),
        (["lock", "reset"], "Give a lock a new command key (a new epoch)"),
        (["audit"], "Show the audit log (every attempt and event)"),
        (["audit", "verify"], "Check the audit log's chain of MACs"),
        (["status"], "Show each lock's health"),
        (["watch"], "Print the backend's signed alerts"),
        (["remote", "unlock"], "Ask the backend to unlock a lock"),
        (["remote", "lock"], "Ask the backend to lock a lock"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_every_management_command_explains_itself_in_help(command: list[str], summary: str) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert summary in flat(result.stdout)


def test_top_level_help_lists_the_management_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in ("user", "pass", "audit", "status", "watch", "remote"):
        assert f" {command} " in result.stdout, command


def test_management_command_on_a_directory_without_a_site_says_so(tmp_path: Path) -> None:
    result = invoke(tmp_path / "nowhere", "user", "list")
    assert_clean_error(result, "is not a smartlock site", "smartlock init")


# --- users ---------------------------------------------------------------------------------------


def test_user_add_creates_keys_and_broker_account_for_the_next_broker_start(site: Site) -> None:
    result = invoke(site, "user", "add", "alice", "--role", "resident")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "Added resident alice"
    assert "it reads the new password file and ACL at start" in result.stdout
    updated = Site.load(site.root)
    assert "alice" in updated.users
    assert (site.root / "users" / "alice" / "user.key").stat().st_mode & 0o777 == 0o600
    assert (site.root / "users" / "alice" / "password").is_file()
    assert (site.root / "public" / "users" / "alice.pub").is_file()
    acl = (site.broker_dir / "acl").read_text()
    assert "user alice\n" in acl
    assert "topic read users/alice/" in acl
    passwd = (site.broker_dir / "passwd").read_text()
    assert any(line.startswith("alice:$") for line in passwd.splitlines())
    with open_store(updated) as store:
        user = store.get_user("alice")
    assert user is not None
    assert user.role == "resident"


def test_user_add_of_an_existing_name_is_refused(site: Site) -> None:
    result = invoke(site, "user", "add", "guest_01", "--role", "guest")
    assert_clean_error(result, "user guest_01 already exists")


def test_user_add_with_an_unknown_role_lists_the_roles(site: Site) -> None:
    result = invoke(site, "user", "add", "alice", "--role", "janitor")
    assert result.exit_code == 2, result.output
    assert "'janitor' is not one of 'owner', 'resident', 'guest'" in flat(result.stderr)
    assert "Traceback" not in result.output
    assert not (site.root / "users" / "alice").exists()


def test_user_add_with_an_invalid_name_names_it(site: Site) -> None:
    result = invoke(site, "user", "add", "Bad Name", "--role", "guest")
    assert_clean_error(result, "'Bad Name'")


def test_user_list_shows_active_users_and_with_all_the_removed_ones(site: Site) -> None:
    assert invoke(site, "user", "remove", "guest_02").exit_code == 0
    active = invoke(site, "user", "list")
    assert active.exit_code == 0, active.output
    rows = table_rows(active.stdout)
    assert [row[:2] for row in rows] == [
        ["guest_01", "guest"],
        ["owner", "owner"],
        ["resident", "resident"],
    ]
    created = dt.datetime.fromisoformat(rows[0][2])
    assert created.utcoffset() == PARIS.utcoffset(created.replace(tzinfo=None))
    assert rows[0][3] == ""
    everyone = table_rows(invoke(site, "user", "list", "--all").stdout)
    removed = next(row for row in everyone if row[0] == "guest_02")
    assert dt.datetime.fromisoformat(removed[3]).timestamp() >= NOW_S


def test_user_remove_revokes_the_passes_and_deletes_the_account(site: Site) -> None:
    result = invoke(site, "user", "remove", "guest_01")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == ["Removed guest_01", "  revoked passes: 1"]
    assert "guest_01" not in Site.load(site.root).users
    assert not (site.root / "users" / "guest_01").exists()
    assert not (site.root / "public" / "users" / "guest_01.pub").exists()
    assert "user guest_01\n" not in (site.broker_dir / "acl").read_text()
    assert "guest_01:" not in (site.broker_dir / "passwd").read_text()
    with open_store(site) as store:
        revoked = store.get_pass(1)
        lock = store.get_lock("lock_01")
    assert revoked is not None
    assert revoked.revoked
    assert lock is not None
    assert lock.revocation_version == 2


@pytest.mark.parametrize(
    ("name", "message"),
    [("nobody", "unknown user nobody"), ("guest_02", "user guest_02 was already removed")],
)
def test_user_remove_of_an_unknown_or_removed_user_is_refused(
    site: Site, name: str, message: str
) -> None:
    assert invoke(site, "user", "remove", "guest_02").exit_code == 0
    assert_clean_error(invoke(site, "user", "remove", name), message)


# --- passes --------------------------------------------------------------------------------------


def test_pass_grant_prints_the_pass_id_and_its_window_in_the_site_time_zone(site: Site) -> None:
    result = invoke(
        site, "pass", "grant", "guest_02", "lock_01", "--from", "2030-01-07T08:00",
        "--until", "2030-01-12T08:00", "--uses", "3", "--hours", "Mon-Fri 08:00-18:00",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "Pass 2: guest_02 may open lock_01",
        "  from   2030-01-07T08:00:00+01:00",
        f"  until  2030-01-12T08:00:00+01:00  ({ZONE})",
        "  uses   3",
        "  hours  mon-fri 08:00-18:00",
    ]
    with open_store(site) as store:
        record = store.get_pass(2)
    assert record is not None
    assert (record.max_uses, record.weekly_hours) == (3, "mon-fri 08:00-18:00")
    assert record.valid_from == int(dt.datetime(2030, 1, 7, 8, tzinfo=PARIS).timestamp())


def test_pass_grant_defaults_to_thirty_days_from_now_any_time(site: Site) -> None:
    result = invoke(site, "pass", "grant", "guest_02", "lock_01")
    assert result.exit_code == 0, result.output
    assert "  uses   unlimited" in result.stdout.splitlines()
    assert "  hours  any time" in result.stdout.splitlines()
    with open_store(site) as store:
        record = store.get_pass(2)
    assert record is not None
    assert record.valid_until - record.valid_from == 30 * 86400
    assert abs(record.valid_from - time.time()) < 60


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["owner", "lock_01"], ["owner is an owner", "need no pass"]),
        (["resident", "lock_01"], ["resident is a resident"]),
        (["guest_01", "lock_01"], ["guest_01 already has pass 1 on lock_01", "overlaps"]),
        (["guest_02", "lock_01", "--from", "-2d", "--until", "-1d"], ["already expired"]),
        (
            ["guest_02", "lock_01", "--from", "2020-01-01", "--until", "2020-01-02"],
            ["already expired"],
        ),
        (["guest_02", "lock_01", "--from", "+2d", "--until", "+1d"], ["would end", "before"]),
        (["guest_02", "lock_01", "--hours", "mon-fri"], ['weekly hours "mon-fri"']),
        (["guest_02", "lock_01", "--hours", "someday 08:00-18:00"], ["someday"]),
        (["guest_02", "lock_01", "--uses", "0"], ["--uses must be 1..65535"]),
        (["guest_02", "lock_01", "--until", "tomorrow"], ["cannot read the time 'tomorrow'"]),
        (["guest_02", "lock_99"], ["unknown lock lock_99"]),
        (["nobody", "lock_01"], ["unknown user nobody"]),
    ],
    ids=[
        "owner", "resident", "overlapping", "expired-relative", "expired-date", "ends-first",
        "hours-without-times", "hours-unknown-day", "zero-uses", "unreadable-time",
        "unknown-lock", "unknown-user",
    ],
)  # fmt: skip
def test_pass_grant_refuses_with_a_clear_message(
    site: Site, args: list[str], fragments: list[str]
) -> None:
    assert_clean_error(invoke(site, "pass", "grant", *args), *fragments)
    with open_store(site) as store:
        assert store.get_pass(2) is None


def test_pass_list_shows_live_passes_with_their_state_and_filters_them(site: Site) -> None:
    granted = invoke(site, "pass", "grant", "guest_02", "lock_01", "--from", "+40d", "--until",
                     "+41d", "--uses", "5")  # fmt: skip
    assert granted.exit_code == 0, granted.output
    result = invoke(site, "pass", "list")
    assert result.exit_code == 0, result.output
    assert f"times in {ZONE}" in result.stdout
    rows = table_rows(result.stdout)
    assert [(r[0], r[1], r[2], r[5], r[6], r[7]) for r in rows] == [
        ("1", "guest_01", "lock_01", "0/unlimited", "any time", "active"),
        ("2", "guest_02", "lock_01", "0/5", "any time", "upcoming"),
    ]
    until = dt.datetime.fromisoformat(rows[1][4])
    assert until.tzinfo is not None
    assert abs(until.timestamp() - (time.time() + 41 * 86400)) < 60
    only = table_rows(invoke(site, "pass", "list", "--guest", "guest_02").stdout)
    assert [row[0] for row in only] == ["2"]
    none = invoke(site, "pass", "list", "--lock", "lock_99")
    assert none.exit_code == 0, none.output
    assert none.stdout.startswith("no live passes")


def test_pass_list_all_includes_revoked_passes(site: Site) -> None:
    assert invoke(site, "pass", "revoke", "1").exit_code == 0
    assert invoke(site, "pass", "list").stdout.startswith("no live passes")
    rows = table_rows(invoke(site, "pass", "list", "--all").stdout)
    assert [(row[0], row[7]) for row in rows] == [("1", "revoked")]


def test_pass_revoke_says_when_the_lock_learns_it(site: Site) -> None:
    result = invoke(site, "pass", "revoke", "1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "Revoked pass 1 of guest_01 on lock_01"
    assert "lock_01 learns it now if it is online (revocation list v2)" in lines[1]
    assert "when it reconnects, before it handles anything else" in lines[1]


def test_pass_revoke_twice_is_refused(site: Site) -> None:
    assert invoke(site, "pass", "revoke", "1").exit_code == 0
    assert_clean_error(invoke(site, "pass", "revoke", "1"), "pass 1 is already revoked")


def test_pass_revoke_of_an_unknown_id_is_refused(site: Site) -> None:
    assert_clean_error(invoke(site, "pass", "revoke", "99"), "unknown pass 99")


# --- locks ---------------------------------------------------------------------------------------


def test_lock_add_creates_the_lock_and_lock_list_shows_it(site: Site) -> None:
    result = invoke(site, "lock", "add", "lock_02")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "Added lock lock_02"
    assert f"smartlock lock run --id lock_02 --site {site.root}" in result.stdout
    assert "lock_02" in Site.load(site.root).locks
    assert (site.root / "locks" / "lock_02" / "lock.key").is_file()
    assert "user lock_02\n" in (site.broker_dir / "acl").read_text()
    listed = invoke(site, "lock", "list")
    assert listed.exit_code == 0, listed.output
    rows = table_rows(listed.stdout)
    assert [(row[0], row[2], row[3]) for row in rows] == [
        ("lock_01", "1", "1"),
        ("lock_02", "1", "1"),
    ]


def test_lock_add_of_an_existing_lock_is_refused(site: Site) -> None:
    assert_clean_error(invoke(site, "lock", "add", "lock_01"), "lock lock_01 already exists")


def test_lock_reset_starts_a_new_command_epoch_and_explains_it(site: Site) -> None:
    result = invoke(site, "lock", "reset", "lock_01")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "lock_01: new command key epoch 2"
    assert "refuses remote commands made under epoch 1 or older" in flat(result.stdout)
    rows = table_rows(invoke(site, "lock", "list").stdout)
    assert rows[0][2] == "2"


def test_lock_reset_of_an_unknown_lock_is_refused(site: Site) -> None:
    assert_clean_error(invoke(site, "lock", "reset", "lock_99"), "unknown lock lock_99")


# --- audit ---------------------------------------------------------------------------------------


def test_audit_lists_every_entry_with_its_time_in_the_site_time_zone(audited: Site) -> None:
    result = invoke(audited, "audit")
    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert rows[0] == [
        "1", "2024-01-15T12:00:00.000+01:00", "guest_01", "guest", "lock_01", "ble", "unlock",
        "granted", "", "0",
    ]  # fmt: skip
    second = dt.datetime.fromtimestamp(AUDIT_RECORDS[1].at_ms / 1000, PARIS)
    assert rows[1] == [
        "2", second.isoformat(timespec="milliseconds"), "guest_01", "guest", "lock_01", "ble",
        "unlock", "denied", "outside_hours", "1",
    ]  # fmt: skip
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]


@pytest.mark.parametrize(
    ("filters", "seqs"),
    [
        (["--user", "guest_01"], ["1", "2"]),
        (["--lock", "lock_02"], ["4"]),
        (["--since", "-2h"], ["2", "3", "4"]),
        (["--since", "-30m"], ["3", "4"]),
        (["--since", "2024-01-16"], ["2", "3", "4"]),
        (["--limit", "2"], ["3", "4"]),
        (["--user", "guest_01", "--since", "-1d", "--limit", "5"], ["2"]),
    ],
    ids=["user", "lock", "since-2h", "since-30m", "since-date", "limit", "combined"],
)
def test_audit_filters_by_user_lock_time_and_count(
    audited: Site, filters: list[str], seqs: list[str]
) -> None:
    result = invoke(audited, "audit", *filters)
    assert result.exit_code == 0, result.output
    assert [row[0] for row in table_rows(result.stdout)] == seqs


def test_audit_with_no_match_says_so(audited: Site) -> None:
    result = invoke(audited, "audit", "--user", "nobody")
    assert result.exit_code == 0, result.output
    assert result.stdout == "no audit entries match\n"


def test_audit_json_is_one_array_of_entries(audited: Site) -> None:
    result = invoke(audited, "audit", "--json", "--lock", "lock_01")
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)
    assert [entry["seq"] for entry in entries] == [1, 2, 3]
    assert entries[2] == {
        "seq": 3,
        "time": dt.datetime.fromtimestamp(AUDIT_RECORDS[2].at_ms / 1000, PARIS).isoformat(
            timespec="milliseconds"
        ),
        "who": "owner",
        "role": "owner",
        "lock": "lock_01",
        "channel": "remote",
        "action": "lock",
        "result": "granted",
        "reason": "",
        "attempt": 0,
    }


def test_audit_csv_has_a_header_and_one_row_per_entry(audited: Site) -> None:
    result = invoke(audited, "audit", "--csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == [
        "seq", "time", "who", "role", "lock", "channel", "action", "result", "reason", "attempt",
    ]  # fmt: skip
    assert len(rows) == 5
    assert rows[4][2:] == ["", "", "lock_02", "system", "offline", "alert",
                           "two heartbeats missed", "0"]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--json", "--csv"], "choose one of --json and --csv"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--since", "yesterday"], "cannot read the time 'yesterday'"),
    ],
    ids=["json-and-csv", "limit-zero", "unreadable-since"],
)
def test_audit_refuses_contradictory_or_unreadable_options(
    audited: Site, args: list[str], message: str
) -> None:
    assert_clean_error(invoke(audited, "audit", *args), message)


def test_audit_verify_reports_an_intact_log(audited: Site) -> None:
    result = invoke(audited, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert result.stdout == "audit log intact: 4 entries\n"


def test_audit_verify_takes_the_site_given_before_the_subcommand(audited: Site) -> None:
    result = runner.invoke(app, ["audit", "--site", str(audited.root), "verify"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "audit log intact: 4 entries\n"


def test_audit_verify_names_the_first_entry_changed_in_the_database(
    audited: Site, tmp_path: Path
) -> None:
    tampered = copy_site(audited, tmp_path / "site")
    with sqlite3.connect(tampered.root / "backend" / "store.db") as db:
        db.execute("UPDATE audit SET reason = 'x' WHERE seq = 2")
    db.close()
    result = invoke(tampered, "audit", "verify")
    assert result.exit_code == 1, result.output
    assert result.stdout == "audit log TAMPERED: first broken entry #2\n"


# --- status --------------------------------------------------------------------------------------


def test_status_shows_unknown_for_a_lock_never_heard_from(site: Site) -> None:
    result = invoke(site, "status")
    assert result.exit_code == 0, result.output
    assert table_rows(result.stdout) == [
        ["lock_01", "unknown", "never", "", "unknown", "-/1", "?", ""]
    ]


def test_status_shows_the_version_a_lock_runs_and_its_update_steps(site: Site) -> None:
    now = int(time.time())
    with open_store(site) as store:
        store.record_update_step("lock_01", version="0.1.0", step="running", reason="", at=now)
        store.push_update(["lock_01"], bundle_id="ab" * 16, version="1.1.0", by="", now=now)
    [row] = table_rows(invoke(site, "status").stdout)
    assert row[6:] == ["0.1.0", "1.1.0 pushed"]
    with open_store(site) as store:
        store.record_update_step("lock_01", version="1.1.0", step="installed", reason="", at=now)
    [row] = table_rows(invoke(site, "status").stdout)
    assert row[6:] == ["0.1.0", "1.1.0 installed"]
    with open_store(site) as store:
        store.record_update_step(
            "lock_01", version="1.1.0", step="rolled_back", reason="exited", at=now
        )
    [lock] = json.loads(invoke(site, "status", "--json").stdout)
    assert (lock["software"], lock["update"]) == ("0.1.0", "1.1.0 rolled_back (exited)")


def test_status_shows_an_online_lock_and_its_pending_revocations(site: Site) -> None:
    now = int(time.time())
    with open_store(site) as store:
        store.set_lock_health(LockHealth("lock_01", True, now - 3, "locked", 1, now - 100))
        store.revoke_pass(1, now=now)  # the store's revocation version becomes 2
    table = invoke(site, "status")
    assert table.exit_code == 0, table.output
    [row] = table_rows(table.stdout)
    assert (row[0], row[1], row[4], row[5]) == ("lock_01", "online", "locked", "1/2 pending")
    assert abs(dt.datetime.fromisoformat(row[2]).timestamp() - (now - 3)) < 1
    assert 3 <= int(row[3].removesuffix(" s")) < 60
    as_json = invoke(site, "status", "--json")
    assert as_json.exit_code == 0, as_json.output
    [lock] = json.loads(as_json.stdout)
    assert lock["state"] == "online"
    assert lock["stale"] is False
    assert (lock["revocation_version_applied"], lock["revocation_version"]) == (1, 2)
    assert lock["revocations"] == "pending"


def test_status_shows_an_offline_lock_and_warns_about_a_silent_online_one(site: Site) -> None:
    assert invoke(site, "lock", "add", "lock_02").exit_code == 0
    now = int(time.time())
    with open_store(site) as store:
        store.set_lock_health(LockHealth("lock_01", False, now - 500, "unknown", 1, now - 400))
        store.set_lock_health(LockHealth("lock_02", True, now - 3600, "locked", 1, now - 3600))
    result = invoke(site, "status")
    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert [(row[0], row[1], row[5]) for row in rows] == [
        ("lock_01", "offline", "1/1"),
        ("lock_02", "online", "1/1"),
    ]
    assert "lock_02: marked online but silent for" in result.stdout
    assert "is the backend running?" in result.stdout


# --- watch and remote: the errors found before any network access ---------------------------------


@pytest.mark.parametrize(
    "command",
    [["watch"], ["remote", "unlock", "lock_01"], ["remote", "lock", "lock_01"]],
    ids=" ".join,
)
def test_watch_and_remote_name_an_unknown_user(template: Site, command: list[str]) -> None:
    result = invoke(template, *command, "--id", "nobody", "--timeout", "5")
    assert_clean_error(result, "no user 'nobody'", "users: owner, resident, guest_01, guest_02")


def test_remote_names_an_unknown_lock(template: Site) -> None:
    result = invoke(template, "remote", "unlock", "lock_99", "--id", "owner")
    assert_clean_error(result, "no lock 'lock_99'", "locks: lock_01")


@pytest.mark.parametrize(
    ("option", "message"),
    [("--count", "--count must be at least 1"), ("--timeout", "--timeout must be a positive")],
)
def test_watch_refuses_a_count_or_timeout_that_is_not_positive(
    template: Site, option: str, message: str
) -> None:
    assert_clean_error(invoke(template, "watch", "--id", "owner", option, "0"), message)


def test_watch_tells_a_guest_that_only_owners_and_residents_receive_alerts(template: Site) -> None:
    result = invoke(template, "watch", "--id", "guest_01", "--timeout", "5")
    assert_clean_error(result, "guest_01 is a guest: only owners and residents receive alerts")
