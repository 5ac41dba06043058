"""A guest's pass, end to end: its start, its use limit (at the backend, and at a lock that
decides alone) and its weekly hours."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest_asyncio

from smartlock.admin import open_store
from smartlock.services.guest_app import GuestApp
from system_harness import System, cli, run_guest, running_system

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@pytest_asyncio.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    async with running_system() as running:
        yield running


async def _grant(system: System, guest: str, lock_id: str, *options: str) -> int:
    child = await cli(system.site, "pass", "grant", guest, lock_id, *options)
    assert child.returncode == 0, child.output()
    with open_store(system.site) as store:
        return max(p.pass_id for p in store.list_passes(guest=guest, lock_id=lock_id, now=0))


async def _revoke(system: System, pass_id: int) -> None:
    child = await cli(system.site, "pass", "revoke", str(pass_id))
    assert child.returncode == 0, child.output()


async def test_a_pass_that_has_not_started_opens_nothing(system: System) -> None:
    upcoming = await _grant(system, "guest_03", "lock_01", "--from", "+1h", "--until", "+2h")
    guest = await run_guest(system.site, "lock_01", "guest_03", timeout_s=10)
    assert guest.returncode == 2
    assert "refused a key for lock_01: not_yet_valid" in guest.output()
    await _revoke(system, upcoming)


async def test_a_one_use_pass_opens_once(system: System) -> None:
    await _grant(system, "guest_03", "lock_01", "--until", "+1h", "--uses", "1")
    first = await run_guest(system.site, "lock_01", "guest_03")
    assert first.returncode == 0, first.output()
    second = await run_guest(system.site, "lock_01", "guest_03", timeout_s=10)
    assert second.returncode == 2
    assert "refused a key for lock_01: uses_exhausted" in second.output()


async def test_weekly_hours_keep_the_door_shut_on_other_days(system: System) -> None:
    today = dt.datetime.now(system.site.zone).weekday()
    other_day = DAYS[(today + 3) % 7]
    weekly = await _grant(
        system, "guest_03", "lock_02", "--until", "+8d", "--hours", f"{other_day} 00:00-24:00"
    )
    guest = await run_guest(system.site, "lock_02", "guest_03", timeout_s=10)
    assert guest.returncode == 2
    assert "refused a key for lock_02: outside_hours" in guest.output()
    await _revoke(system, weekly)


async def test_a_lock_on_its_own_enforces_the_use_limit_its_key_carries(system: System) -> None:
    """The key says "one use": a guest keeping it cannot open twice, backend or not."""
    await _grant(system, "guest_03", "lock_02", "--until", "+1h", "--uses", "1")
    held = await GuestApp(system.site, "guest_03").obtain_key("lock_02")
    lock = system.locks["lock_02"]
    mark = len(lock.lines)
    await GuestApp(system.site, "guest_03").advertise_held_key(held, seconds=2.5)
    await lock.wait_for(r"UNLOCKED lock_02 for guest_03", after=mark)
    await asyncio.sleep(6)  # past the 5 s in which further tokens are the same opening
    second = len(lock.lines)
    await GuestApp(system.site, "guest_03").advertise_held_key(held, seconds=2.5)
    await lock.wait_for(r"Rejected advertisement .*uses_exhausted", after=second)
    assert not [line for line in lock.lines[second:] if "UNLOCKED lock_02 for guest_03" in line]
