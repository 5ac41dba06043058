"""Fault: a lock off the network for ten minutes, then back.

While it is away the owner revokes a guest and a resident opens the door with a key held on the
phone.  Ten minutes pass -- simulated: every process of the system runs under libfaketime, whose
offset the test moves -- and the lock's link comes back.  The lock must apply the revocation
list before it handles anything else, refuse the revoked guest's still-unexpired key, and upload
the door event it kept, which the audit log then holds exactly once, at the time it happened.

The lock reaches the broker through a relay (``NetworkLink``) that the test cuts: the lock
itself keeps running and keeps scanning, as a real lock whose Wi-Fi is down does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from collections.abc import AsyncIterator

import pytest_asyncio

from smartlock.admin import open_store
from smartlock.services.guest_app import GuestApp, HeldKey
from system_harness import (
    RESIDENT,
    NetworkLink,
    SimulatedClock,
    System,
    cli,
    cli_json,
    running_system,
)

OFFLINE_S = 600


@pytest_asyncio.fixture(scope="module")
async def system(clock: SimulatedClock) -> AsyncIterator[System]:
    # keys outlive the outage, so that only the revocation can stop the guest's
    async with running_system(session_ttl_s=3600) as running:
        assert os.environ["LD_PRELOAD"] == clock.env["LD_PRELOAD"]
        yield running


def _pass_id(system: System, guest: str, lock_id: str) -> int:
    with open_store(system.site) as store:
        return store.list_passes(guest=guest, lock_id=lock_id, now=0)[0].pass_id


def _later(held: HeldKey, seconds: int) -> HeldKey:
    """``held`` as the phone holds it ``seconds`` later (its tokens count on a monotonic clock
    from the key's receipt)."""
    return dataclasses.replace(held, received=held.received - seconds)


async def test_a_lock_back_after_ten_minutes_applies_revocations_first_and_uploads_its_events(
    system: System, clock: SimulatedClock
) -> None:
    backend = system.backend
    async with NetworkLink(system.site.broker_port) as link:
        await system.locks["lock_01"].stop()
        system.lock_args["lock_01"] = ["--broker-port", str(link.port)]
        lock = await system.start_lock("lock_01")
        # Before the outage: the guest and the resident hold keys for lock_01.
        guest_key = await GuestApp(system.site, "guest_01").obtain_key("lock_01")
        resident_key = await GuestApp(system.site, RESIDENT).obtain_key("lock_01")

        link.cut()
        await backend.wait_for(r"Lock lock_01 is OFFLINE", timeout_s=10)
        back_from = len(backend.lines)
        revoked = await cli(
            system.site, "pass", "revoke", str(_pass_id(system, "guest_01", "lock_01"))
        )
        assert revoked.returncode == 0, revoked.output()
        await backend.wait_for(r"Published revocation list v2 for lock_01")
        # Offline, the lock still opens for a valid held key; the event waits on its disk.
        advertised_at = time.time()
        resident = GuestApp(system.site, RESIDENT)
        assert await resident.advertise_held_key(resident_key, seconds=1.5) >= 1
        await lock.wait_for(rf"UNLOCKED lock_01 for {RESIDENT}")

        clock.advance(OFFLINE_S)  # ...ten minutes later, for every process of the system
        link.restore()
        restored = len(lock.lines)
        applied = await lock.wait_for(r"Applied revocation list v2", timeout_s=30)
        await backend.wait_for(r"Lock lock_01 is online", timeout_s=30, after=back_from)

        # Revocations came first: between the reconnection and the list, no door moved.
        in_between = lock.lines[restored : lock.lines.index(applied.string)]
        assert not any("UNLOCKED" in line for line in in_between), in_between
        # The revoked guest's key, unexpired, opens nothing any more.
        guest = GuestApp(system.site, "guest_01")
        assert await guest.advertise_held_key(_later(guest_key, OFFLINE_S), seconds=2.5) >= 1
        await lock.wait_for(r"Rejected advertisement .*pass_revoked")
        assert lock.count(r"UNLOCKED lock_01 for guest_01") == 0
        # The events kept through the outage are in the log once each, at the time the door
        # opened.
        openings = lock.count(rf"UNLOCKED lock_01 for {RESIDENT}")
        for _ in range(openings):
            await backend.wait_for(rf"Access event: lock_01 unlock for {RESIDENT}", after=back_from)
        audit = await cli_json(system.site, "audit", "--lock", "lock_01")
        opened = [
            e
            for e in audit
            if e["who"] == RESIDENT and e["action"] == "unlock" and e["result"] == "granted"
        ]
        assert len(opened) == openings, opened
        for entry in opened:
            opened_at = dt.datetime.fromisoformat(str(entry["time"])).timestamp()
            assert abs(opened_at - advertised_at) < 5, (opened_at, advertised_at)
        # ...and the outage itself: offline, then online ten (simulated) minutes later.
        system_entries = [e for e in audit if e["channel"] == "system"]
        assert [e["action"] for e in system_entries][-2:] == ["offline", "online"], system_entries
        verified = await cli(system.site, "audit", "verify")
        assert verified.returncode == 0, verified.output()
