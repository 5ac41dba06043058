"""``smartlock doctor``: each check alone on a site provisioned in a temporary directory (no
broker, no services), the time passed in; then the command's output and exit codes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from smartlock import doctor
from smartlock.adapters.store import AuditRecord, LockHealth, LockRecord
from smartlock.admin import create_site, open_store
from smartlock.broker import free_port, grant_broker_access, rotate_broker_certificate
from smartlock.cli import app
from smartlock.core.records import LockUpdate
from smartlock.crypto import CertifiedKey, make_certificate_authority, make_server_certificate
from smartlock.doctor import Check
from smartlock.site import Site, write_private

pytestmark = pytest.mark.usefixtures("cli_isolated")

NOW = float(int(time.time()))  # whole seconds, as heartbeats carry them
DAY = 86400
runner = CliRunner()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return create_site(
        tmp_path_factory.mktemp("template") / "site",
        locks=["lock_01", "lock_02"],
        owners=["owner"],
        guests=["guest_01"],
        broker_host="127.0.0.1",
        broker_port=free_port(),
    )


@pytest.fixture
def site(template: Site, tmp_path: Path) -> Site:
    """A copy of the template that the test may change (the broker's files given back to the
    broker's group, which a copy made as root loses)."""
    shutil.copytree(template.root, tmp_path / "site", symlinks=True)
    copied = Site.load(tmp_path / "site")
    grant_broker_access(copied)
    return copied


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def site_ca(site: Site) -> CertifiedKey:
    return CertifiedKey((site.root / "ca" / "ca.key").read_bytes(), site.ca_cert.read_bytes())


def install_broker_certificate(site: Site, server: CertifiedKey) -> None:
    write_private(site.broker_dir / "broker.key", server.key_pem, mode=0o640)
    write_private(site.broker_dir / "broker.crt", server.cert_pem, mode=0o640)


def health(
    lock_id: str, *, online: bool = True, heartbeat: float | None = NOW, applied: int = 1
) -> LockHealth:
    return LockHealth(
        lock_id,
        online,
        None if heartbeat is None else int(heartbeat),
        "locked",
        applied,
        int(NOW) - 600,
    )


# --- a fresh site --------------------------------------------------------------------------------


def test_a_fresh_site_passes_permissions_certificates_store_and_audit(site: Site) -> None:
    checks = by_name(doctor.run_checks(site, now=NOW))
    for name in (
        "private keys",
        "passwords",
        "audit and command keys",
        "CA key",
        "state files",
        "identity directories",
        "broker files",
        "public files",
        "CA certificate",
        "broker certificate",
        "store",
        "audit log",
    ):
        assert checks[name].ok, checks[name]
        assert checks[name].fix == ""


def test_a_fresh_site_fails_what_needs_running_services(site: Site) -> None:
    checks = by_name(doctor.run_checks(site, now=NOW))
    assert not checks["broker"].ok
    assert not checks["lock lock_01"].ok
    assert checks["lock lock_01"].detail == "never heard from: no heartbeat recorded"
    assert not checks["revocations"].ok
    assert checks["clocks"].ok  # nothing to compare yet


# --- permissions ---------------------------------------------------------------------------------


def test_a_private_key_readable_by_others_fails_naming_that_file(site: Site) -> None:
    key = site.private_key_path("guest_01")
    key.chmod(0o644)
    check = doctor.check_private_keys(site)
    assert not check.ok
    assert check.detail == "users/guest_01/user.key is 0644, not 0600"
    assert check.fix == f"chmod 600 {key}"
    assert doctor.check_passwords(site).ok


def test_a_permission_check_names_the_first_few_paths_and_counts_the_rest(site: Site) -> None:
    for identity in ("backend", "lock_01", "lock_02", "owner", "guest_01"):
        (site.identity_dir(identity) / "password").chmod(0o640)
    check = doctor.check_passwords(site)
    assert not check.ok
    assert check.detail.count("is 0640, not 0600") == doctor.NAMED_PATHS
    assert check.detail.endswith("and 2 more")
    assert check.fix.count("/password") == 5  # the fix covers every one


def test_a_file_owned_by_someone_else_fails(site: Site) -> None:
    check = doctor.check_backend_secrets(site, uid=12345)
    assert not check.ok
    assert "backend/audit.key is owned by" in check.detail
    assert check.detail.endswith("not 12345")
    assert check.fix == f"chown 12345 {site.audit_key_path} {site.command_master_key_path}"


def test_an_identity_directory_open_to_others_fails(site: Site) -> None:
    (site.root / "locks" / "lock_02").chmod(0o755)
    check = doctor.check_identity_directories(site)
    assert not check.ok
    assert check.detail == "locks/lock_02 is 0755, not 0700"
    assert check.fix == f"chmod 700 {site.root / 'locks' / 'lock_02'}"


def test_the_ca_key_and_the_broker_files_have_their_own_checks(site: Site) -> None:
    (site.root / "ca" / "ca.key").chmod(0o640)
    (site.broker_dir / "passwd").chmod(0o644)
    assert doctor.check_ca_key(site).detail == "ca/ca.key is 0640, not 0600"
    broker_files = doctor.check_broker_files(site)
    assert not broker_files.ok
    assert "broker/passwd is 0644, not 0640" in broker_files.detail
    assert f"chmod 640 {site.broker_dir / 'passwd'}" in broker_files.fix


def test_a_world_writable_public_key_fails(site: Site) -> None:
    public = site.public_key_path("lock_01")
    public.chmod(0o666)
    check = doctor.check_public_files(site)
    assert not check.ok
    assert check.detail == "public/locks/lock_01.pub is world-writable (0666)"
    assert check.fix == f"chmod o-w {public}"


# --- certificates ----------------------------------------------------------------------------


def test_a_broker_certificate_expiring_in_10_days_fails(site: Site) -> None:
    issued = dt.datetime.fromtimestamp(NOW, dt.UTC) - dt.timedelta(days=20)
    install_broker_certificate(
        site, make_server_certificate(site_ca(site), ["127.0.0.1"], now=issued, days=30)
    )
    check = doctor.check_broker_certificate(site, now=NOW)
    assert not check.ok
    assert check.detail.startswith("expires in 10 days")
    assert check.fix.startswith("smartlock rotate broker-cert --site")


def test_rotating_the_broker_certificate_mends_an_expiring_one(site: Site) -> None:
    issued = dt.datetime.fromtimestamp(NOW, dt.UTC) - dt.timedelta(days=20)
    install_broker_certificate(
        site, make_server_certificate(site_ca(site), ["127.0.0.1"], now=issued, days=30)
    )
    assert not doctor.check_broker_certificate(site, now=NOW).ok
    cert, reloaded = rotate_broker_certificate(site, now=dt.datetime.fromtimestamp(NOW, dt.UTC))
    assert not reloaded  # no broker of this site runs here
    check = doctor.check_broker_certificate(site, now=NOW)
    assert check.ok, check.detail
    assert doctor.check_broker_files(site).ok  # the new files are readable by the broker
    assert (cert.not_valid_after_utc - dt.datetime.fromtimestamp(NOW, dt.UTC)).days >= 824


def test_an_expired_broker_certificate_fails(site: Site) -> None:
    issued = dt.datetime.fromtimestamp(NOW, dt.UTC) - dt.timedelta(days=900)
    install_broker_certificate(
        site, make_server_certificate(site_ca(site), ["127.0.0.1"], now=issued)
    )
    check = doctor.check_broker_certificate(site, now=NOW)
    assert not check.ok
    assert check.detail.startswith("EXPIRED on ")


def test_a_broker_certificate_from_another_ca_fails(site: Site) -> None:
    moment = dt.datetime.fromtimestamp(NOW, dt.UTC)
    stranger = make_certificate_authority("elsewhere", now=moment)
    install_broker_certificate(site, make_server_certificate(stranger, ["127.0.0.1"], now=moment))
    check = doctor.check_broker_certificate(site, now=NOW)
    assert not check.ok
    assert check.detail == "not signed by the site CA (ca.crt)"


def test_a_broker_certificate_for_another_host_fails(site: Site) -> None:
    moment = dt.datetime.fromtimestamp(NOW, dt.UTC)
    install_broker_certificate(
        site, make_server_certificate(site_ca(site), ["broker.example"], now=moment)
    )
    check = doctor.check_broker_certificate(site, now=NOW)
    assert not check.ok
    assert check.detail == "made for broker.example, not for 127.0.0.1"


def test_certificates_pass_until_30_days_before_they_expire(site: Site) -> None:
    assert doctor.check_broker_certificate(site, now=NOW + 794 * DAY).ok
    assert not doctor.check_broker_certificate(site, now=NOW + 796 * DAY).ok
    assert doctor.check_ca_certificate(site, now=NOW + 3619 * DAY).ok
    ca = doctor.check_ca_certificate(site, now=NOW + 3621 * DAY)
    assert not ca.ok
    assert ca.detail.startswith("expires in 29 days")


def test_a_missing_broker_certificate_fails_without_a_traceback(site: Site) -> None:
    (site.broker_dir / "broker.crt").unlink()
    check = doctor.check_broker_certificate(site, now=NOW)
    assert not check.ok
    assert check.detail.endswith("broker/broker.crt is missing")


# --- broker ------------------------------------------------------------------------------------


def test_no_broker_running_fails_the_broker_check_with_its_fix(site: Site) -> None:
    check = doctor.check_broker(site, timeout_s=1)
    assert not check.ok
    assert check.detail.startswith(f"not reachable at 127.0.0.1:{site.broker_port}")
    assert check.fix == f"smartlock broker --site {site.root}"


def test_a_server_that_does_not_speak_tls_fails_the_broker_check(site: Site) -> None:
    import socket
    import threading

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer_in_plain_text() -> None:
            connection, _ = server.accept()
            with connection:
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer_in_plain_text)
        thread.start()
        check = doctor.check_broker(dataclasses.replace(site, broker_port=port), timeout_s=2)
        thread.join()
    assert not check.ok
    assert "does not speak TLS" in check.detail


# --- store -------------------------------------------------------------------------------------


def test_a_store_behind_the_newest_revision_fails_and_is_not_upgraded(site: Site) -> None:
    database = site.root / "backend" / "store.db"
    with sqlite3.connect(database) as db:
        db.execute("UPDATE alembic_version SET version_num = '0002'")
    db.close()
    check = doctor.check_store(site)
    assert not check.ok
    assert check.detail.startswith("sqlite, schema at revision 0002; the newest is ")
    assert f"smartlock status --site {site.root}" in check.fix
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0002",)]
    db.close()


def test_a_store_from_a_newer_smartlock_fails(site: Site) -> None:
    with sqlite3.connect(site.root / "backend" / "store.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    db.close()
    check = doctor.check_store(site)
    assert not check.ok
    assert "9999 is unknown: a newer smartlock wrote it" in check.detail


def test_a_missing_sqlite_store_fails_and_is_not_created(site: Site, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    checks = by_name(doctor.store_checks(site, db=f"sqlite:///{missing}", now=NOW))
    assert not checks["store"].ok
    assert checks["store"].detail == f"no database at {missing}"
    assert checks["audit log"].detail == "not checked: the store is not usable"
    assert not missing.exists()


# --- revocations, health, clocks ---------------------------------------------------------------


LOCKS = [LockRecord("lock_01", 0, revocation_version=3), LockRecord("lock_02", 0)]


def test_a_lock_behind_on_revocations_is_named(site: Site) -> None:
    check = doctor.check_revocations(
        site, LOCKS, {"lock_01": health("lock_01", applied=2), "lock_02": health("lock_02")}
    )
    assert not check.ok
    assert check.detail == "lock_01 applied v2, the store has v3"
    assert f"smartlock lock run --id lock_01 --site {site.root}" in check.fix
    assert "lock_02" not in check.fix


def test_locks_that_applied_their_lists_pass(site: Site) -> None:
    check = doctor.check_revocations(
        site, LOCKS, {"lock_01": health("lock_01", applied=3), "lock_02": health("lock_02")}
    )
    assert check == Check(
        "revocations", True, "every lock applied its list (lock_01 v3, lock_02 v1)"
    )


def test_an_online_lock_with_a_recent_heartbeat_passes(site: Site) -> None:
    beat = NOW - 2 * site.heartbeat_s  # within two intervals
    check = doctor.check_lock_health(site, "lock_01", health("lock_01", heartbeat=beat), now=NOW)
    assert check == Check("lock lock_01", True, "online, last heartbeat 120 s ago")


def test_an_offline_lock_fails_with_the_command_that_starts_it(site: Site) -> None:
    check = doctor.check_lock_health(
        site, "lock_02", health("lock_02", online=False, heartbeat=NOW - 30), now=NOW
    )
    assert not check.ok
    assert check.detail.startswith("OFFLINE since ")
    assert check.fix == f"smartlock lock run --id lock_02 --site {site.root}"


def test_a_lock_marked_online_but_silent_fails(site: Site) -> None:
    beat = NOW - 2 * site.heartbeat_s - 2
    check = doctor.check_lock_health(site, "lock_01", health("lock_01", heartbeat=beat), now=NOW)
    assert not check.ok
    assert check.detail.startswith("marked online, but silent for 122 s")
    assert "smartlock backend" in check.fix


def test_a_lock_clock_ahead_by_more_than_the_command_window_fails(site: Site) -> None:
    ahead = NOW + site.command_window_s + 5
    check = doctor.check_clocks(
        site, LOCKS, {"lock_01": health("lock_01", heartbeat=ahead), "lock_02": None}, now=NOW
    )
    assert not check.ok
    assert check.detail.startswith("lock_01's clock is at least 35 s ahead")
    assert "only a clock running ahead can be seen" in check.detail
    assert "NTP" in check.fix


def test_a_lock_clock_behind_is_not_reported_as_skew(site: Site) -> None:
    check = doctor.check_clocks(
        site, LOCKS, {"lock_01": health("lock_01", heartbeat=NOW - 100), "lock_02": None}, now=NOW
    )
    assert check.ok
    assert "only a clock running ahead can be seen" in check.detail


# --- audit -------------------------------------------------------------------------------------


def _append_entries(site: Site, count: int) -> None:
    with open_store(site) as store:
        for number in range(count):
            store.append_audit(
                AuditRecord(
                    at_ms=int(NOW * 1000) + number,
                    who="owner",
                    role="owner",
                    lock_id="lock_01",
                    channel="remote",
                    action="unlock",
                    result="granted",
                    reason="",
                )
            )


def test_an_intact_audit_log_passes_with_its_length(site: Site) -> None:
    _append_entries(site, 3)
    checks = by_name(doctor.store_checks(site, now=NOW))
    assert checks["audit log"] == Check("audit log", True, "intact, 3 entries")


def test_a_tampered_audit_row_fails_the_audit_check(site: Site) -> None:
    _append_entries(site, 3)
    with sqlite3.connect(site.root / "backend" / "store.db") as db:
        db.execute("UPDATE audit SET who = 'mallory' WHERE seq = 2")
    db.close()
    checks = by_name(doctor.store_checks(site, now=NOW))
    assert not checks["audit log"].ok
    assert checks["audit log"].detail == "TAMPERED: first broken entry #2"
    assert checks["audit log"].fix


# --- the command ---------------------------------------------------------------------------------


def invoke(site: Site | Path, *args: str) -> Result:
    root = site.root if isinstance(site, Site) else site
    return runner.invoke(app, ["doctor", "--site", str(root), *args])


def _mark_locks_online(site: Site) -> None:
    with open_store(site) as store:
        for lock_id in site.locks:
            store.set_lock_health(health(lock_id, heartbeat=time.time()))


def test_doctor_exits_0_when_every_check_passes(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    _mark_locks_online(site)
    reachable = Check("broker", True, "TLS handshake verified")
    monkeypatch.setattr(doctor, "check_broker", lambda _site: reachable)  # no broker here
    result = invoke(site)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(line.startswith("✓ ") for line in lines[:-1]), result.stdout
    assert "✗" not in result.stdout
    assert "\x1b[" not in result.stdout  # no colour codes in a pipe
    assert lines[-1] == f"all {len(lines) - 1} checks passed"


def test_doctor_exits_1_and_prints_each_fix_under_its_failure(site: Site) -> None:
    result = invoke(site)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    broker = lines.index(
        f"✗ broker: not reachable at 127.0.0.1:{site.broker_port}: Connection refused"
    )
    assert lines[broker + 1] == f"    fix: smartlock broker --site {site.root}"
    assert "✗ lock lock_02: never heard from: no heartbeat recorded" in lines
    assert lines[-1].endswith("checks failed")
    assert "Traceback" not in result.output


def test_doctor_json_is_a_list_of_name_ok_detail_fix(site: Site) -> None:
    result = invoke(site, "--json")
    assert result.exit_code == 1, result.output
    checks = json.loads(result.stdout)
    assert {tuple(sorted(check)) for check in checks} == {("detail", "fix", "name", "ok")}
    found = {check["name"]: check for check in checks}
    assert found["private keys"]["ok"] is True
    assert found["private keys"]["fix"] == ""
    assert found["broker"]["ok"] is False
    assert found["broker"]["fix"] == f"smartlock broker --site {site.root}"


def test_doctor_without_a_site_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke(tmp_path / "nothing")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ")
    assert "is not a smartlock site" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_doctor_with_an_unusable_db_url_is_a_usage_error(site: Site) -> None:
    result = invoke(site, "--db", "mysql://somewhere/db")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: unsupported database URL scheme 'mysql'")
    assert "Traceback" not in result.output


def test_doctor_with_a_db_that_does_not_exist_fails_the_store_check(
    site: Site, tmp_path: Path
) -> None:
    result = invoke(site, "--db", f"sqlite:///{tmp_path / 'typo.db'}")
    assert result.exit_code == 1, result.output
    assert f"✗ store: no database at {tmp_path / 'typo.db'}" in result.stdout


# --- updates -------------------------------------------------------------------------------------


def _update(lock: str, step: str, *, version: str = "1.1.0", reason: str = "", age: int = 60,
            running: str = "1.0.0") -> LockUpdate:  # fmt: skip
    return LockUpdate(lock, "ab" * 16, version, "", int(NOW) - age, step, version, reason,
                      int(NOW), running)  # fmt: skip


def test_no_update_pushed_passes(site: Site) -> None:
    assert doctor.check_updates(site, [], now=NOW) == Check("updates", True, "no update pushed")


def test_an_update_under_way_passes_and_an_applied_one_says_what_runs(site: Site) -> None:
    check = doctor.check_updates(site, [_update("lock_01", "downloading")], now=NOW)
    assert check == Check("updates", True, "under way: lock_01: 1.1.0 downloading for 60 s")
    check = doctor.check_updates(site, [_update("lock_01", "healthy", running="1.1.0")], now=NOW)
    assert check == Check("updates", True, "applied: lock_01 1.1.0")


def test_an_update_pending_for_more_than_an_hour_fails_with_the_supervised_command(
    site: Site,
) -> None:
    check = doctor.check_updates(site, [_update("lock_02", "pushed", age=3700)], now=NOW)
    assert not check.ok
    assert check.detail == "lock_02: 1.1.0 pushed for 3700 s"
    assert f"smartlock lock supervise --id lock_02 --site {site.root}" in check.fix


def test_a_refused_or_rolled_back_update_fails_with_what_to_do(site: Site) -> None:
    refused = _update("lock_01", "refused", reason="not_newer")
    rolled = _update("lock_02", "rolled_back", reason="exited")
    check = doctor.check_updates(site, [refused, rolled], now=NOW)
    assert not check.ok
    assert check.detail == (
        "lock_01 refused 1.1.0 (not_newer); lock_02 rolled 1.1.0 back (exited); it runs 1.0.0"
    )
    assert "above every version it ever installed" in check.fix
    assert "push it as a higher version" in check.fix


def test_a_fresh_site_reports_updates_from_the_store(site: Site) -> None:
    with open_store(site) as store:
        store.push_update(["lock_01"], bundle_id="cd" * 16, version="1.2.0", by="", now=int(NOW))
    checks = by_name(doctor.run_checks(site, now=NOW))
    assert checks["updates"] == Check("updates", True, "under way: lock_01: 1.2.0 pushed for 0 s")
