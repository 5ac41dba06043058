"""Snooping and impersonation on the broker: a guest reading a lock's, another user's or the
backend's topics while they carry real traffic; a lock writing to another lock's topics, to a
user's key topic or to the backend in a user's name.

The broker's ACL (``smartlock.broker.topics_for``) is the only thing in the way here.  Mosquitto
2.0.11 grants every subscription (it applies the ACL when it delivers) and drops an unauthorised
publish silently, so each test shows the refusal where it matters: the legitimate reader of the
topic, or the service behind it, never sees the message.  (A guest subscribed while another
guest gets a key, a guest writing to a lock, a guest asking for a key in another's name and a
lock writing another lock's events are in test_broker_access.py.)
"""

from __future__ import annotations

import asyncio
import re
import signal
import time

from smartlock import crypto
from smartlock.adapters.mqtt import Incoming, MqttConnection
from smartlock.core import topics
from smartlock.core.commands import CommandRequest
from smartlock.core.messages import ID_BYTES, Action, MessageType, SessionRequest
from system_harness import OWNER, System, cli, cli_json, run_guest, watch

SPY = "guest_03"  # a guest without a pass, so none of the traffic below is its own
SPIED = (
    "locks/lock_01/session",
    "locks/lock_01/commands",
    "locks/lock_01/command_key",
    "locks/lock_01/revocations",
    "users/owner/alerts",
    "users/owner/replies",
    "users/guest_02/session",
    "backend/#",
    "#",
)
REMOTE_UNLOCKED = r"UNLOCKED lock_01 for remote command"


async def _record(mqtt: MqttConnection, into: list[Incoming]) -> None:
    async for message in mqtt.messages():
        into.append(message)


async def owner_unlocks_lock_01(system: System) -> None:
    """The genuine path: the owner's remote unlock of lock_01 goes through."""
    lock = system.locks["lock_01"]
    before = lock.count(REMOTE_UNLOCKED)
    answer = await cli_json(system.site, "remote", "unlock", "lock_01", "--id", OWNER)
    assert answer["result"] == "done", answer
    assert lock.count(REMOTE_UNLOCKED) == before + 1


async def test_guest_reads_nothing_of_locks_users_or_backend_while_they_carry_traffic(
    system: System,
) -> None:
    site = system.site
    lock_01 = system.locks["lock_01"]
    seen: list[Incoming] = []
    async with MqttConnection(site, site.credentials(SPY)) as spy:
        for topic in SPIED:
            await spy.subscribe(topic)
        recorder = asyncio.create_task(_record(spy, seen))
        mark = len(lock_01.lines)
        # users/guest_02/session and backend/session_requests/guest_02
        guest_02 = await run_guest(site, "lock_02", "guest_02")
        assert guest_02.returncode == 0, guest_02.output()
        # locks/lock_01/session
        guest_01 = await run_guest(site, "lock_01", "guest_01")
        assert guest_01.returncode == 0, guest_01.output()
        await lock_01.wait_for(r"Received session key \S+ for guest_01", after=mark)
        # backend/commands/owner, locks/lock_01/commands and users/owner/replies
        await owner_unlocks_lock_01(system)
        # locks/lock_01/revocations: a pass granted and revoked moves the list's version
        granted = await cli(site, "pass", "grant", "guest_02", "lock_01", "--until", "+1h")
        assert granted.returncode == 0, granted.output()
        pass_id = re.search(r"Pass (\d+): guest_02 may open lock_01", granted.output())
        assert pass_id is not None, granted.output()
        revoked = await cli(site, "pass", "revoke", pass_id.group(1))
        assert revoked.returncode == 0, revoked.output()
        await lock_01.wait_for(r"Applied revocation list v2", after=mark)
        # locks/lock_01/command_key: a new epoch
        reset = await cli(site, "lock", "reset", "lock_01")
        assert reset.returncode == 0, reset.output()
        await lock_01.wait_for(r"Installed command key epoch 2", after=mark)
        # users/owner/alerts: lock_02 vanishes (its last will), the owner is alerted
        watcher = await watch(system, OWNER, 1)
        await system.locks["lock_02"].stop(signal.SIGKILL)
        await watcher.wait_for(r"lock_offline\s+lock_02")
        assert await watcher.wait(timeout_s=10) == 0
        await system.start_lock("lock_02")
        # control: the spy does receive what is its own (a denial: it has no pass), so its
        # subscriptions work and would have shown anything the broker let through
        own = SessionRequest(crypto.random_bytes(ID_BYTES), int(time.time()), "lock_01")
        await spy.publish(f"backend/session_requests/{SPY}", bytes(own))
        async with asyncio.timeout(10):
            while not any(own.request_id in m.payload for m in seen):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # anything still in flight to the spy arrives by now
        recorder.cancel()
        await asyncio.gather(recorder, return_exceptions=True)
    # its own session topic, and its own retained trust notices (public, signed), nothing else
    own = {f"users/{SPY}/session", *topics.user_trust_topics(SPY)}
    assert {message.topic for message in seen} <= own
    assert f"users/{SPY}/session" in {message.topic for message in seen}
    await owner_unlocks_lock_01(system)  # under the new epoch, after all that


async def test_lock_cannot_write_a_users_key_topic(system: System) -> None:
    site = system.site
    forged = b"\x02\x03 a key delivery forged by lock_02"
    request = SessionRequest(crypto.random_bytes(ID_BYTES), int(time.time()), "lock_01")
    async with (
        system.paused("lock_02"),
        MqttConnection(site, site.credentials("lock_02")) as impostor,
        MqttConnection(site, site.credentials("guest_01")) as guest,
    ):
        await guest.subscribe("users/guest_01/session")
        await impostor.publish("users/guest_01/session", forged)
        # the broker has the forgery; now the guest asks for a genuine key
        await guest.publish("backend/session_requests/guest_01", bytes(request))
        received: list[Incoming] = []
        async with asyncio.timeout(10):
            async for message in guest.messages():
                received.append(message)
                if request.request_id in message.payload:
                    break
    assert [m.payload[1] for m in received] == [MessageType.GUEST_DELIVERY]
    assert forged not in [m.payload for m in received]


async def test_lock_cannot_command_another_lock_or_replace_its_revocation_list(
    system: System,
) -> None:
    site = system.site
    lock_01 = system.locks["lock_01"]
    before, mark = lock_01.count(r"UNLOCKED lock_01"), len(lock_01.lines)
    async with (
        system.paused("lock_02"),
        MqttConnection(site, site.credentials("lock_02")) as impostor,
    ):
        await impostor.publish("locks/lock_01/commands", b"\x02\x09 a command by lock_02")
        await impostor.publish(
            "locks/lock_01/revocations", b"\x02\x0b a list by lock_02", retain=True
        )
    # the owner's command reaches lock_01 after the forgeries would have: none came
    await owner_unlocks_lock_01(system)
    assert lock_01.count(r"UNLOCKED lock_01") == before + 1
    assert not [line for line in lock_01.lines[mark:] if "Rejected" in line]
    # the retained list is still the backend's: a reconnecting lock_01 gets that one
    await lock_01.stop()
    lock_01 = await system.start_lock("lock_01")
    await lock_01.wait_for(r"Revocation list v\d+ already applied")
    assert not [line for line in lock_01.lines if "Rejected" in line]


async def test_lock_cannot_send_a_remote_command_in_a_users_name(system: System) -> None:
    site = system.site
    backend = system.backend
    lock_01 = system.locks["lock_01"]
    before, mark = lock_01.count(r"UNLOCKED lock_01"), len(backend.lines)
    request = CommandRequest(
        crypto.random_bytes(ID_BYTES), int(time.time()), "lock_01", Action.UNLOCK
    )
    async with (
        system.paused("lock_02"),
        MqttConnection(site, site.credentials("lock_02")) as impostor,
    ):
        await impostor.publish(
            "backend/commands/owner",
            bytes(request),
            response_topic="users/owner/replies",
            correlation_data=request.request_id,
        )
        await impostor.publish("locks/lock_02/events", b"\x02\x0c marker")  # its own topic
        # the backend sees lock_02's messages in order: the marker comes after the request
        await backend.wait_for(r"Rejected message from locks/lock_02/events", after=mark)
    assert not [line for line in backend.lines[mark:] if "owner" in line or "Remote" in line]
    assert lock_01.count(r"UNLOCKED lock_01") == before
    await owner_unlocks_lock_01(system)
