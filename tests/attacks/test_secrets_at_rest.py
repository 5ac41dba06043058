"""Secrets at rest and in logs: another local user reads no key, and no log shows one.

Every system the suites start ends with a scan of the output of every process it ran, and of
this test process's own log, for every secret of its site (``assert_no_secret_logged`` in
tests/system_harness.py): passwords, private keys, the audit and command keys, and the session
keys the locks hold.  This module checks the scan itself can fail, and the file modes of a site
in use.
"""

from __future__ import annotations

import grp
import stat
from pathlib import Path

import pytest

from system_harness import LOGS, System, assert_no_secret_logged, run_guest, site_secrets

# the site CA certificate, the site's non-secret settings, the broker's process id
PUBLIC = {"ca.crt", "site.json", "broker/mosquitto.pid"}
BROKER_GROUP_FILES = {"acl", "broker.crt", "broker.key", "mosquitto.conf", "passwd"}


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


async def test_no_secret_file_of_a_site_in_use_is_readable_by_other_users(system: System) -> None:
    guest = await run_guest(system.site, "lock_01", "guest_01")  # state files now hold keys
    assert guest.returncode == 0, guest.output()
    root = system.site.root
    mosquitto_gid = grp.getgrnam("mosquitto").gr_gid
    checked = []
    for path in _files(root):
        relative = path.relative_to(root)
        mode = stat.S_IMODE(path.stat().st_mode)
        if relative.parts[0] == "public" or str(relative) in PUBLIC:
            assert mode & 0o022 == 0, f"{relative} is writable by others: {oct(mode)}"
        elif relative.parts[0] == "broker" and relative.name in BROKER_GROUP_FILES:
            # what Mosquitto reads after dropping root: its group, never everyone
            assert mode & 0o007 == 0, f"{relative}: {oct(mode)}"
            assert path.stat().st_gid == mosquitto_gid, relative
        elif relative.parts[0] == "broker":
            assert mode & 0o007 == 0, f"{relative}: {oct(mode)}"  # Mosquitto's own data
        else:
            assert mode & 0o077 == 0, f"{relative} is readable by others: {oct(mode)}"
            checked.append(str(relative))
    # the secrets that matter were among the files checked
    for expected in ("backend/backend.key", "backend/audit.key", "locks/lock_01/state.json"):
        assert expected in checked, checked
    assert "users/guest_01/user.key" in checked


async def test_the_log_scan_finds_a_leaked_secret(system: System) -> None:
    secrets = site_secrets(system.site)
    assert any(name.endswith("password") for name in secrets)
    assert any("held key" in name for name in secrets)  # lock_01 holds the guest's key
    leaked = system.site.credentials("guest_01").password
    LOGS.records.append(f"DEBUG careless: connecting with {leaked}")
    try:
        with pytest.raises(AssertionError, match="guest_01 password"):
            assert_no_secret_logged(system.site)
    finally:
        LOGS.records.pop()
    assert_no_secret_logged(system.site)  # and clean again without it
