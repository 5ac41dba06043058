"""Broker sessions: what is sent to a lock while it is away reaches it when it is back, and a
lock's signed event counts once however often it is replayed."""

from __future__ import annotations

import time

from smartlock import crypto
from smartlock.adapters.mqtt import MqttConnection
from smartlock.core.access import make_access_event
from smartlock.core.issuance import SessionKey
from smartlock.core.lock_verifier import AccessGranted
from smartlock.core.messages import ID_BYTES, Action, IssuanceHeader
from system_harness import System, run_guest


async def test_a_delivery_sent_while_the_lock_was_away_reaches_it_on_return(
    system: System,
) -> None:
    backend = system.backend
    mark = len(backend.lines)
    async with system.paused("lock_02"):
        guest = await run_guest(system.site, "lock_02", "guest_02")
        assert guest.returncode == 2
        assert "lock_unreachable" in guest.output()
    lock = system.locks["lock_02"]  # started again: its session kept the QoS 1 delivery
    await lock.wait_for(r"Received session key \w{8} for guest_02")
    await backend.wait_for(r"Rejected message from locks/lock_02/events: unknown_key", after=mark)


async def test_a_replayed_access_event_is_counted_once(system: System) -> None:
    site = system.site
    now = time.time()
    key = SessionKey(
        IssuanceHeader(
            crypto.random_bytes(ID_BYTES), int(now), int(now) + 300, "lock_01", "guest_01"
        ),
        crypto.random_bytes(32),
    )
    event = make_access_event(
        AccessGranted(key, 1, Action.UNLOCK),
        lock_key=site.private_key("lock_01"),
        now=now,
        random_bytes=crypto.random_bytes,
    )
    backend = system.backend
    mark = len(backend.lines)
    async with system.paused("lock_01"), MqttConnection(site, site.credentials("lock_01")) as mqtt:
        await mqtt.publish("locks/lock_01/events", bytes(event))
        await mqtt.publish("locks/lock_01/events", bytes(event))
    await backend.wait_for(r"Rejected message from locks/lock_01/events: replay", after=mark)
    accepted = [line for line in backend.lines[mark:] if "Access event: lock_01" in line]
    assert len(accepted) == 1
