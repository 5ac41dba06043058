"""The happy path and the grant checks, with every part a real process."""

from __future__ import annotations

import json
import re

from system_harness import System, run_guest


async def test_guest_opens_lock_over_mqtt_and_ble(system: System) -> None:
    lock = system.locks["lock_01"]
    mark = len(lock.lines)
    guest = await run_guest(system.site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()
    result = json.loads(guest.stdout_lines[-1])
    assert result["ok"] is True
    assert result["wire_bytes"]["advertisement"] <= 31
    await lock.wait_for(r"Received session key \w{8} for guest_01", after=mark)
    await lock.wait_for(r"UNLOCKED lock_01 for guest_01", after=mark)
    await system.backend.wait_for(r"Access event: lock_01 unlock for guest_01")
    for step in ("Requested session key", "Received session key", "Advertising with token"):
        assert step in guest.output()
    assert "Lock lock_01 confirmed: UNLOCKED" in guest.output()
    # the default key lifetime is 5 minutes (the backend's clock may have ticked once since)
    assert re.search(r"Received session key \w{8} for lock_01, valid (300|299) s", guest.output())


async def test_lock_relocks_after_the_unlock(system: System) -> None:
    lock = system.locks["lock_01"]
    mark = len(lock.lines)
    guest = await run_guest(system.site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()
    await lock.wait_for(r"UNLOCKED lock_01 for guest_01", after=mark)
    await lock.wait_for(r"LOCKED lock_01 \(relocked after", after=mark, timeout_s=10)


async def test_guest_without_a_pass_is_refused_with_a_clear_message(system: System) -> None:
    lock = system.locks["lock_01"]
    mark = len(lock.lines)
    guest = await run_guest(system.site, "lock_01", "guest_03")
    assert guest.returncode != 0
    assert "refused a key for lock_01: no_pass" in guest.output()
    assert "Traceback" not in guest.output()
    await system.backend.wait_for(r"Denied session key to guest_03: no_pass")
    assert lock.count(r"for guest_03") == 0
    assert not any("guest_03" in line for line in lock.lines[mark:])


async def test_guest_cannot_get_a_key_for_a_lock_its_pass_is_not_for(system: System) -> None:
    guest = await run_guest(system.site, "lock_02", "guest_01")
    assert guest.returncode != 0
    assert "no_pass" in guest.output()
    assert system.locks["lock_02"].count(r"UNLOCKED lock_02 for guest_01") == 0


async def test_other_lock_hears_the_token_but_does_not_open(system: System) -> None:
    other = system.locks["lock_02"]
    mark = len(other.lines)
    guest = await run_guest(system.site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()
    await other.wait_for(r"Rejected advertisement .*unknown_key", after=mark)
    assert other.count(r"UNLOCKED") == 0


async def test_no_secret_appears_in_any_log(system: System) -> None:
    guest = await run_guest(system.site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()
    secrets = [
        system.site.credentials(user).password
        for user in ("backend", *system.site.locks, *system.site.users)
    ]
    site = system.site
    for secret_file in (site.audit_key_path, site.command_master_key_path):
        secrets.append(secret_file.read_bytes().hex())  # as a log line would show bytes
    state = json.loads((site.identity_dir("lock_01") / "state.json").read_text())
    command_key = state["commands"]["key"]  # the lock's command key, hex
    assert command_key
    secrets.append(command_key)
    for identity in ("backend", "lock_01", "guest_01"):
        pem = system.site.private_key_path(identity).read_text().splitlines()
        secrets += [line for line in pem if "PRIVATE KEY" not in line][:3]
    logs = "\n".join(
        [guest.output(), system.backend.output(), system.broker.output(), system.radio.output()]
        + [lock.output() for lock in system.locks.values()]
    )
    assert logs
    leaked = [secret[:6] + "..." for secret in secrets if secret in logs]
    assert leaked == []
