"""Keys die on time: a token under an expired key opens nothing.  Own site, 3 s key lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

from system_harness import Sniffer, System, run_guest, running_system

KEY_TTL_S = 3


@pytest_asyncio.fixture(scope="module")
async def short_lived() -> AsyncIterator[System]:
    async with running_system(session_ttl_s=KEY_TTL_S) as system:
        yield system


async def test_token_after_the_key_expired_is_rejected(short_lived: System) -> None:
    system = short_lived
    lock = system.locks["lock_01"]
    async with Sniffer(system.site) as sniffer:
        guest = await run_guest(system.site, "lock_01", "guest_01")
        assert guest.returncode == 0, guest.output()
    assert "valid 3 s" in guest.output() or "valid 2 s" in guest.output()
    unlocks = lock.count(r"UNLOCKED lock_01")
    await asyncio.sleep(KEY_TTL_S + 0.5)
    mark = len(lock.lines)
    async with Sniffer(system.site) as attacker:
        await attacker.replay(sniffer.captured[-1].data, seconds=0.8)
    await lock.wait_for(r"Rejected advertisement .*expired", after=mark)
    assert lock.count(r"UNLOCKED lock_01") == unlocks
