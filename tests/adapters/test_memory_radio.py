"""The in-process radio: radios on one named link hear each other, and only each other."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from smartlock.adapters.radio import AdvertisingReport, open_radio
from smartlock.adapters.radio.memory import MemoryRadio

INTERVAL_MS = 10.0
QUIET_S = 0.15  # 15 advertising intervals


def new_link() -> str:
    """A link name no other test uses (links are shared by every MemoryRadio in the process)."""
    return f"test-{uuid.uuid4().hex}"


@asynccontextmanager
async def listening(radio: MemoryRadio) -> AsyncIterator[list[AdvertisingReport]]:
    """Scan on ``radio`` for the duration of the block; the reports collect in the list."""
    heard: list[AdvertisingReport] = []

    async def collect() -> None:
        async for report in radio.scan():
            heard.append(report)

    task = asyncio.create_task(collect())
    await asyncio.sleep(0)  # let the scan start before anyone advertises
    try:
        yield heard
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Poll ``condition``: the code under test offers no event to wait on."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_radios_on_one_link_hear_each_other_but_not_themselves() -> None:
    link = new_link()
    async with MemoryRadio(link, name="alice") as alice, MemoryRadio(link, name="bob") as bob:
        async with listening(alice) as alice_heard, listening(bob) as bob_heard:
            await alice.advertise(b"from-alice", interval_ms=INTERVAL_MS)
            await bob.advertise(b"from-bob", interval_ms=INTERVAL_MS)
            await until(lambda: len(alice_heard) >= 3 and len(bob_heard) >= 3)
    assert {(r.address, r.data) for r in bob_heard} == {("alice", b"from-alice")}
    assert {(r.address, r.data) for r in alice_heard} == {("bob", b"from-bob")}
    assert all(isinstance(r.rssi, int) and r.rssi < 0 for r in bob_heard)


async def test_radio_on_another_link_hears_nothing() -> None:
    link = new_link()
    async with (
        MemoryRadio(link, name="alice") as alice,
        MemoryRadio(link, name="bob") as bob,
        MemoryRadio(new_link(), name="carol") as carol,
    ):
        async with listening(bob) as bob_heard, listening(carol) as carol_heard:
            await alice.advertise(b"hello", interval_ms=INTERVAL_MS)
            await until(lambda: len(bob_heard) >= 3)
            await asyncio.sleep(QUIET_S)
    assert carol_heard == []


async def test_advertise_again_replaces_the_advertised_data() -> None:
    link = new_link()
    async with MemoryRadio(link, name="alice") as alice, MemoryRadio(link, name="bob") as bob:
        async with listening(bob) as heard:
            await alice.advertise(b"token-1", interval_ms=INTERVAL_MS)
            await until(lambda: any(r.data == b"token-1" for r in heard))
            await alice.advertise(b"token-2", interval_ms=INTERVAL_MS)
            await until(lambda: any(r.data == b"token-2" for r in heard))
            first_new = next(i for i, r in enumerate(heard) if r.data == b"token-2")
            await asyncio.sleep(QUIET_S)
    later = [r.data for r in heard[first_new:]]
    assert len(later) >= 3
    assert set(later) == {b"token-2"}


async def test_stop_advertising_stops_the_reports() -> None:
    link = new_link()
    async with MemoryRadio(link, name="alice") as alice, MemoryRadio(link, name="bob") as bob:
        async with listening(bob) as heard:
            await alice.advertise(b"token", interval_ms=INTERVAL_MS)
            await until(lambda: len(heard) >= 2)
            await alice.stop_advertising()
            await asyncio.sleep(0.02)  # reports already queued may still be delivered
            count = len(heard)
            await asyncio.sleep(QUIET_S)
            assert len(heard) == count
            await alice.advertise(b"again", interval_ms=INTERVAL_MS)  # and it can start again
            await until(lambda: heard[-1].data == b"again")


async def test_leaving_the_block_stops_the_radios_advertising() -> None:
    link = new_link()
    async with MemoryRadio(link, name="bob") as bob:
        async with listening(bob) as heard:
            async with MemoryRadio(link, name="alice") as alice:
                await alice.advertise(b"token", interval_ms=INTERVAL_MS)
                await until(lambda: len(heard) >= 2)
            count = len(heard)
            await asyncio.sleep(QUIET_S)
            assert len(heard) == count


async def test_open_radio_memory_transport_gives_a_memory_radio_on_that_link() -> None:
    link = new_link()
    radio = open_radio(f"memory:{link}", name="lock_01")
    assert isinstance(radio, MemoryRadio)
    assert (radio.link, radio.name) == (link, "lock_01")
    async with radio, MemoryRadio(link, name="guest") as guest:
        async with listening(guest) as heard:
            await radio.advertise(b"x", interval_ms=INTERVAL_MS)
            await until(lambda: bool(heard))
    assert heard[0].address == "lock_01"
