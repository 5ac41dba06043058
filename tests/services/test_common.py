"""smartlock.services.common: the outbox keeps messages in order and drops those that waited too
long, giving the broker what is left of their time as MQTT v5 message expiry.

A real event loop and its clock; the broker is a fake publish coroutine that records its calls.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from smartlock.services.common import Outbox


@dataclass(frozen=True)
class Published:
    topic: str
    payload: bytes
    retain: bool
    correlation_data: bytes | None
    expiry_s: int | None


@dataclass
class FakeBroker:
    published: list[Published] = field(default_factory=list)

    async def __call__(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool,
        correlation_data: bytes | None,
        expiry_s: int | None,
    ) -> None:
        self.published.append(Published(topic, payload, retain, correlation_data, expiry_s))


async def _drain(outbox: Outbox, broker: FakeBroker) -> None:
    """Run the outbox's drain until its queue is empty, then stop it."""
    task = asyncio.create_task(outbox.drain(broker))
    try:
        async with asyncio.timeout(2):
            while len(outbox):  # noqa: ASYNC110 -- the outbox offers no event to wait on
                await asyncio.sleep(0)
            await asyncio.sleep(0)  # and let it finish the pass it is in
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_an_item_drained_at_once_gets_what_is_left_of_its_time_as_expiry() -> None:
    outbox, broker = Outbox(), FakeBroker()
    outbox.put("locks/front/command", b"open", correlation_data=b"c1", expiry_s=1.5)
    await _drain(outbox, broker)
    assert broker.published == [Published("locks/front/command", b"open", False, b"c1", 1)]
    assert outbox.expired == 0


async def test_an_item_whose_time_ran_out_in_the_queue_is_dropped_unsent() -> None:
    outbox, broker = Outbox(), FakeBroker()
    outbox.put("locks/front/command", b"open", expiry_s=1.5)
    await asyncio.sleep(1.0)  # the broker was away: half a second left, under the 1 s minimum
    outbox.put("locks/front/revocations", b"list", retain=True)  # no expiry: waits for ever
    await _drain(outbox, broker)
    assert broker.published == [Published("locks/front/revocations", b"list", True, None, None)]
    assert outbox.expired == 1
    assert len(outbox) == 0


async def test_items_without_expiry_are_published_in_order_without_one() -> None:
    outbox, broker = Outbox(), FakeBroker()
    for n in range(3):
        outbox.put(f"t/{n}", bytes([n]))
    await _drain(outbox, broker)
    assert [(p.topic, p.expiry_s) for p in broker.published] == [
        ("t/0", None),
        ("t/1", None),
        ("t/2", None),
    ]
    assert outbox.expired == 0
