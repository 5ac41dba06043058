"""A sniffed advertisement played again opens nothing, also after the lock restarts."""

from __future__ import annotations

from system_harness import Sniffer, System, run_guest


async def _unlock_while_sniffing(system: System) -> bytes:
    async with Sniffer(system.site) as sniffer:
        guest = await run_guest(system.site, "lock_01", "guest_01")
        assert guest.returncode == 0, guest.output()
    assert sniffer.captured, "the sniffer heard no smartlock advertisement"
    return sniffer.captured[-1].data


async def test_replayed_advertisement_is_rejected(system: System) -> None:
    lock = system.locks["lock_01"]
    captured = await _unlock_while_sniffing(system)
    unlocks = lock.count(r"UNLOCKED lock_01")
    mark = len(lock.lines)
    async with Sniffer(system.site) as attacker:
        await attacker.replay(captured, seconds=1.0)
    await lock.wait_for(r"Rejected advertisement .*replay", after=mark)
    assert lock.count(r"UNLOCKED lock_01") == unlocks


async def test_replayed_advertisement_is_rejected_after_the_lock_restarts(system: System) -> None:
    captured = await _unlock_while_sniffing(system)
    await system.locks["lock_01"].stop()
    lock = await system.start_lock("lock_01")
    async with Sniffer(system.site) as attacker:
        await attacker.replay(captured, seconds=1.0)
    await lock.wait_for(r"Rejected advertisement .*replay")
    assert lock.count(r"UNLOCKED") == 0


async def test_the_lock_still_opens_for_the_guest_after_replays(system: System) -> None:
    lock = system.locks["lock_01"]
    mark = len(lock.lines)
    guest = await run_guest(system.site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()
    await lock.wait_for(r"UNLOCKED lock_01 for guest_01", after=mark)
