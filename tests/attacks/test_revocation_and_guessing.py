"""Revocation that holds while a lock is offline, and lockouts with alerts after repeated
failures -- per lock for BLE tokens, per user for remote requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest_asyncio

from smartlock.adapters.store.records import PassRecord
from smartlock.admin import open_store
from smartlock.core.token import advertising_data, make_token, token_slot
from smartlock.services.guest_app import GuestApp
from system_harness import (
    OWNER,
    RESIDENT,
    Sniffer,
    System,
    cli,
    cli_json,
    running_system,
    watch,
)

LOCKOUT_S = 6


@pytest_asyncio.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    async with running_system(max_failures=3, failure_window_s=300, lockout_s=LOCKOUT_S) as running:
        yield running


def _pass_of(system: System, guest: str, lock_id: str) -> PassRecord:
    with open_store(system.site) as store:
        return store.list_passes(guest=guest, lock_id=lock_id, include_inactive=True, now=0)[0]


async def test_pass_revoked_while_the_lock_is_offline_stops_the_guests_key_at_reconnect(
    system: System,
) -> None:
    # The guest holds a valid key for lock_01, then the lock loses the broker.
    held = await GuestApp(system.site, "guest_01").obtain_key("lock_01")
    await system.locks["lock_01"].stop()
    pass_id = _pass_of(system, "guest_01", "lock_01").pass_id
    revoked = await cli(system.site, "pass", "revoke", str(pass_id))
    assert revoked.returncode == 0, revoked.output()
    await system.backend.wait_for(r"Published revocation list v2 for lock_01 \(1 passes")
    status = await cli_json(system.site, "status")
    lock_01 = next(entry for entry in status if entry["lock"] == "lock_01")
    assert lock_01["revocations"].endswith("pending"), lock_01  # the lock has v1, the store v2
    # The lock comes back: it applies the list before it handles anything else.
    lock = await system.start_lock("lock_01")
    applied = await lock.wait_for(r"Applied revocation list v2: 1 passes .* 1 keys dropped")
    subscribed = await lock.wait_for(r"Subscribed to locks/lock_01/session")
    assert applied.string in lock.lines[: lock.lines.index(subscribed.string)]
    assert held.key.header.expires_at > time.time() + 60  # the key itself is still unexpired
    advertised = await GuestApp(system.site, "guest_01").advertise_held_key(held, seconds=2.5)
    assert advertised >= 1
    await lock.wait_for(r"Rejected advertisement .*pass_revoked")
    assert lock.count(r"UNLOCKED lock_01") == 0
    # and the revoked guest cannot get a new key either
    assert _pass_of(system, "guest_01", "lock_01").revoked


async def test_fourth_bad_token_locks_the_lock_out_and_alerts_owner_within_a_second(
    system: System,
) -> None:
    lock = system.locks["lock_02"]
    held = await GuestApp(system.site, "guest_02").obtain_key("lock_02")
    watcher = await watch(system, OWNER, 1)
    mark = len(lock.lines)
    slot = token_slot(held.key.header.issued_at, time.time())
    async with Sniffer(system.site) as attacker:
        for forged in range(4):  # a valid frame with its tag altered: four distinct failures
            frame = bytearray(bytes(make_token(held.key, slot)))
            frame[-1 - forged] ^= 0x01
            await attacker.replay(advertising_data(bytes(frame)), seconds=0.4)
    intrusion = await lock.wait_for(r"INTRUSION: 4 failed tokens at lock_02", after=mark)
    detected_at = time.monotonic()
    alert = await watcher.wait_for(r"intrusion .*lock_02", timeout_s=5)
    assert time.monotonic() - detected_at < 1.0, (intrusion.string, alert.string)
    assert await watcher.wait(timeout_s=5) == 0
    # during the lockout even the genuine key is refused
    mark = len(lock.lines)
    await GuestApp(system.site, "guest_02").advertise_held_key(held, seconds=1.5)
    await lock.wait_for(r"Rejected advertisement .*locked_out", after=mark)
    assert lock.count(r"UNLOCKED lock_02") == 0
    audit = await cli_json(system.site, "audit", "--lock", "lock_02")
    refused = [e for e in audit if e["channel"] == "ble" and e["result"] == "denied"]
    assert [e["attempt"] for e in refused if e["attempt"]][-4:] == [1, 2, 3, 4]
    # attempts during the lockout are in the log as well
    assert any(e["reason"] == "locked_out" for e in refused)
    assert any(e["action"] == "lockout" and e["result"] == "alert" for e in audit)
    # after the cooling period the door opens again for the guest
    await asyncio.sleep(LOCKOUT_S)
    await GuestApp(system.site, "guest_02").advertise_held_key(held, seconds=2.5)
    await lock.wait_for(r"UNLOCKED lock_02 for guest_02")


async def test_fourth_refused_remote_request_locks_the_user_out_but_not_the_owner(
    system: System,
) -> None:
    watcher = await watch(system, OWNER, 1)
    resident = await watch(system, RESIDENT, 1)
    outcomes = []
    for _ in range(5):
        child = await cli(system.site, "remote", "unlock", "lock_01", "--id", "guest_02")
        assert child.returncode == 1
        outcomes.append(child.output())
    assert all("role_not_allowed" in out for out in outcomes[:4]), outcomes
    assert "denied: locked_out" in outcomes[4]
    alert = await watcher.wait_for(r"intrusion .*guest_02", timeout_s=5)
    assert "4 failed attempts" in alert.string
    await resident.wait_for(r"intrusion .*guest_02", timeout_s=5)
    owner = await cli_json(system.site, "remote", "unlock", "lock_01", "--id", OWNER)
    assert owner["result"] == "done"
    audit = await cli_json(system.site, "audit", "--user", "guest_02")
    remote = [e for e in audit if e["channel"] == "remote" and e["action"] == "unlock"]
    assert [e["attempt"] for e in remote][-5:-1] == [1, 2, 3, 4]
    assert remote[-1]["reason"] == "locked_out"


async def test_the_audit_log_names_the_first_tampered_entry(system: System) -> None:
    import sqlite3

    intact = await cli(system.site, "audit", "verify")
    assert intact.returncode == 0, intact.output()
    database = system.site.root / "backend" / "store.db"
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE audit SET reason = reason || ' (edited)' WHERE seq = 3")
    tampered = await cli(system.site, "audit", "verify")
    assert tampered.returncode == 1
    assert "#3" in tampered.output()


async def test_an_online_lock_applies_a_revocation_at_once(system: System) -> None:
    lock = system.locks["lock_02"]
    granted = await cli(system.site, "pass", "grant", "guest_03", "lock_02", "--until", "+1h")
    assert granted.returncode == 0, granted.output()
    held = await GuestApp(system.site, "guest_03").obtain_key("lock_02")
    mark = len(lock.lines)
    pass_id = _pass_of(system, "guest_03", "lock_02").pass_id
    revoked = await cli(system.site, "pass", "revoke", str(pass_id))
    assert revoked.returncode == 0, revoked.output()
    revoked_at = time.monotonic()
    await lock.wait_for(r"Applied revocation list v\d+: 1 passes .* 1 keys dropped", after=mark)
    assert time.monotonic() - revoked_at < 2.0  # the backend looks at the store twice a second
    await GuestApp(system.site, "guest_03").advertise_held_key(held, seconds=2.5)
    await lock.wait_for(r"Rejected advertisement .*pass_revoked", after=mark)
    assert not [line for line in lock.lines[mark:] if "UNLOCKED lock_02 for guest_03" in line]
