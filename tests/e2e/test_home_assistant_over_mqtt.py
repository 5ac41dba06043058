"""Home Assistant's part played on the real broker: MQTT discovery, LOCK / UNLOCK on the command
topic, the state topic following the bolt, availability from the lock's last will -- and every
command authorised and audited as the Home Assistant user's (a resident here)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator

import pytest_asyncio

from smartlock.adapters.mqtt import Incoming, MqttConnection
from smartlock.core import topics
from smartlock.site import set_home_assistant_user
from system_harness import (
    LOCKS,
    RESIDENT,
    System,
    cli_json,
    new_site_dir,
    provision,
    start_system,
)

HA_USER = RESIDENT


@pytest_asyncio.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    root = new_site_dir()
    site = set_home_assistant_user(provision(root), HA_USER)
    running = await start_system(site)
    try:
        yield running
    finally:
        await running.stop()
        shutil.rmtree(root, ignore_errors=True)


async def _until(
    mqtt: MqttConnection, seen: list[Incoming], done: object, timeout_s: float = 10
) -> list[Incoming]:
    """Collect messages into ``seen`` until ``done(seen)`` holds (or fail after the timeout)."""
    assert callable(done)
    async with asyncio.timeout(timeout_s):
        if done(seen):
            return seen
        async for message in mqtt.messages():
            seen.append(message)
            if done(seen):
                return seen
    return seen


def _latest(seen: list[Incoming], topic: str) -> bytes | None:
    payloads = [m.payload for m in seen if m.topic == topic]
    return payloads[-1] if payloads else None


def _states(seen: list[Incoming], lock_id: str) -> list[str]:
    return [m.payload.decode() for m in seen if m.topic == topics.home_assistant_state(lock_id)]


async def test_home_assistant_discovers_every_lock_with_the_standard_lock_fields(
    system: System,
) -> None:
    site = system.site
    async with MqttConnection(site, site.credentials(HA_USER)) as ha:
        await ha.subscribe(topics.home_assistant_config("+"))
        await ha.subscribe(topics.lock_topic("+", "availability"))
        seen: list[Incoming] = []
        await _until(
            ha,
            seen,
            lambda s: all(
                _latest(s, topics.home_assistant_config(lock)) is not None
                and _latest(s, topics.lock_topic(lock, "availability")) is not None
                for lock in LOCKS
            ),
        )
    for lock_id in LOCKS:
        config_message = next(m for m in seen if m.topic == topics.home_assistant_config(lock_id))
        assert config_message.retained
        config = json.loads(config_message.payload)
        assert config["command_topic"] == topics.home_assistant_command(lock_id)
        assert config["state_topic"] == topics.home_assistant_state(lock_id)
        assert config["availability_topic"] == topics.lock_topic(lock_id, "availability")
        assert (config["payload_lock"], config["payload_unlock"]) == ("LOCK", "UNLOCK")
        for state in ("locked", "unlocked", "locking", "unlocking", "jammed"):
            assert config[f"state_{state}"] == state.upper()
        assert config["optimistic"] is False
        assert _latest(seen, topics.lock_topic(lock_id, "availability")) == topics.ONLINE


async def test_unlock_and_lock_from_home_assistant_move_the_bolt_and_the_state_follows(
    system: System,
) -> None:
    site = system.site
    lock = system.locks["lock_01"]
    mark = len(lock.lines)
    state_topic = topics.home_assistant_state("lock_01")
    async with MqttConnection(site, site.credentials(HA_USER)) as ha:
        await ha.subscribe(state_topic)
        seen: list[Incoming] = []
        # the retained state first: the bolt as the lock's first heartbeat reported it
        await _until(ha, seen, lambda s: _states(s, "lock_01")[-1:] == ["LOCKED"])
        await ha.publish(topics.home_assistant_command("lock_01"), b"UNLOCK")
        await _until(ha, seen, lambda s: _states(s, "lock_01")[-1:] == ["UNLOCKED"])
        await ha.publish(topics.home_assistant_command("lock_01"), b"LOCK")
        await _until(ha, seen, lambda s: _states(s, "lock_01")[-1:] == ["LOCKED"])
    states = _states(seen, "lock_01")
    # never optimistic: UNLOCKING before the lock confirmed UNLOCKED, LOCKING before LOCKED
    assert states[-4:] == ["UNLOCKING", "UNLOCKED", "LOCKING", "LOCKED"]
    assert any("UNLOCKED lock_01" in line for line in lock.lines[mark:])
    audit = await cli_json(site, "audit", "--user", HA_USER)
    mine = [e for e in audit if e["channel"] == "homeassistant" and e["lock"] == "lock_01"]
    assert [(e["action"], e["result"]) for e in mine] == [
        ("unlock", "sent"),
        ("unlock", "granted"),
        ("lock", "sent"),
        ("lock", "granted"),
    ]


async def test_a_command_home_assistant_does_not_know_is_refused_and_moves_nothing(
    system: System,
) -> None:
    site = system.site
    lock = system.locks["lock_02"]
    mark = len(lock.lines)
    backend_mark = len(system.backend.lines)
    async with MqttConnection(site, site.credentials(HA_USER)) as ha:
        await ha.publish(topics.home_assistant_command("lock_02"), b"OPEN")
    await system.backend.wait_for(
        r"Rejected message from smartlock/ha/lock_02/set: .*malformed", after=backend_mark
    )
    assert not [line for line in lock.lines[mark:] if "UNLOCKED" in line or "LOCKED" in line]


async def test_no_other_user_can_command_or_read_home_assistant_topics(system: System) -> None:
    site = system.site
    lock = system.locks["lock_01"]
    mark = len(lock.lines)
    async with MqttConnection(site, site.credentials("guest_01")) as guest:
        await guest.subscribe("homeassistant/#")
        await guest.subscribe("smartlock/#")
        await guest.publish(topics.home_assistant_command("lock_01"), b"UNLOCK")
        seen: list[Incoming] = []
        with contextlib.suppress(TimeoutError):
            await _until(guest, seen, bool, timeout_s=2)
    assert seen == []  # the ACL delivers none of the retained configs or states
    assert not [line for line in lock.lines[mark:] if "UNLOCKED" in line]
    audit = await cli_json(site, "audit", "--user", "guest_01")
    assert not [e for e in audit if e["channel"] == "homeassistant"]


async def test_availability_follows_the_lock_going_offline_and_back(system: System) -> None:
    site = system.site
    availability = topics.lock_topic("lock_02", "availability")
    async with MqttConnection(site, site.credentials(HA_USER)) as ha:
        await ha.subscribe(availability)
        seen: list[Incoming] = []
        await _until(ha, seen, lambda s: _latest(s, availability) == topics.ONLINE)
        await system.locks["lock_02"].stop()
        await _until(ha, seen, lambda s: _latest(s, availability) == topics.OFFLINE)
        await system.start_lock("lock_02")
        await _until(ha, seen, lambda s: _latest(s, availability) == topics.ONLINE)
