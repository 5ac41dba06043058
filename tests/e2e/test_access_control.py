"""Who may do what, decided by the backend from the store at request time, over the real broker
and radio -- and every attempt in the audit log.  The module runs twice: with the store in
SQLite (the default) and in PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from smartlock import crypto
from smartlock.adapters.mqtt import MqttConnection
from smartlock.core import topics
from smartlock.core.commands import CommandRequest, open_command_reply
from smartlock.core.messages import ID_BYTES, Action
from smartlock.site import BACKEND_USER
from system_harness import (
    OWNER,
    RESIDENT,
    System,
    cli,
    cli_json,
    run_guest,
    running_system,
)


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgresql"])
async def system(request: pytest.FixtureRequest) -> AsyncIterator[System]:
    db = None
    if request.param == "postgresql":
        db = request.getfixturevalue("postgres_url")
    async with running_system(db=db) as running:
        yield running


def _entries(audit: list[dict], **fields: object) -> list[dict]:
    return [e for e in audit if all(e.get(k) == v for k, v in fields.items())]


async def test_guest_with_a_pass_opens_and_both_steps_are_audited(system: System) -> None:
    guest = await run_guest(system.site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()
    await system.backend.wait_for(r"Access event: lock_01 unlock for guest_01")
    audit = await cli_json(system.site, "audit", "--user", "guest_01")
    assert _entries(audit, action="key_request", result="granted", lock="lock_01", role="guest")
    assert _entries(audit, action="unlock", channel="ble", result="granted", lock="lock_01")


async def test_guest_without_a_pass_is_refused_and_the_refusal_is_audited(system: System) -> None:
    guest = await run_guest(system.site, "lock_01", "guest_03", timeout_s=10)
    assert guest.returncode == 2
    assert "refused a key for lock_01: no_pass" in guest.output()
    audit = await cli_json(system.site, "audit", "--user", "guest_03")
    denied = _entries(audit, action="key_request", result="denied", reason="no_pass")
    assert denied and denied[-1]["attempt"] >= 1


async def test_guest_pass_is_for_one_lock_only(system: System) -> None:
    guest = await run_guest(system.site, "lock_02", "guest_01", timeout_s=10)
    assert guest.returncode == 2
    assert "no_pass" in guest.output()


async def test_resident_opens_any_lock_without_a_pass(system: System) -> None:
    for lock_id in ("lock_01", "lock_02"):
        resident = await run_guest(system.site, lock_id, RESIDENT)
        assert resident.returncode == 0, resident.output()


async def test_owner_unlocks_remotely_and_is_answered_with_the_bolt_state(system: System) -> None:
    lock = system.locks["lock_02"]
    mark = len(lock.lines)
    answer = await cli_json(system.site, "remote", "unlock", "lock_02", "--id", OWNER)
    assert answer["result"] == "done", answer
    assert answer["bolt"] == "unlocked"
    await lock.wait_for(r"UNLOCKED lock_02 for remote command", after=mark)
    audit = await cli_json(system.site, "audit", "--user", OWNER, "--lock", "lock_02")
    assert _entries(audit, channel="remote", action="unlock", result="granted", role="owner")


async def test_resident_locks_remotely(system: System) -> None:
    answer = await cli_json(system.site, "remote", "lock", "lock_01", "--id", RESIDENT)
    assert answer["result"] == "done", answer
    assert answer["bolt"] == "locked"


async def test_guest_may_not_send_remote_commands(system: System) -> None:
    lock = system.locks["lock_01"]
    mark = len(lock.lines)
    child = await cli(system.site, "remote", "unlock", "lock_01", "--id", "guest_01")
    assert child.returncode == 1
    assert "denied: role_not_allowed" in child.output()
    await asyncio.sleep(0.5)  # had the backend sent anything, the lock would have acted by now
    assert not [line for line in lock.lines[mark:] if "remote command" in line]


async def _command(system: System, user: str, lock_id: str, action: Action) -> list:
    """Send one remote command as ``user`` straight over MQTT; the replies within 3 s."""
    request = CommandRequest(crypto.random_bytes(ID_BYTES), int(time.time()), lock_id, action)
    reply_topic = topics.user_topic(user, "replies")
    async with MqttConnection(system.site, system.site.credentials(user)) as mqtt:
        await mqtt.subscribe(reply_topic)
        await mqtt.publish(
            topics.command_requests(user),
            bytes(request),
            response_topic=reply_topic,
            correlation_data=request.request_id,
        )
        return [message async for message in _within(mqtt, 3)]


async def _within(mqtt: MqttConnection, seconds: float):
    try:
        async with asyncio.timeout(seconds):
            async for message in mqtt.messages():
                yield message
    except TimeoutError:
        return


async def test_remote_command_for_an_unknown_lock_is_refused_by_the_backend(
    system: System,
) -> None:
    replies = await _command(system, OWNER, "lock_99", Action.UNLOCK)
    assert len(replies) == 1
    reply = open_command_reply(
        replies[0].payload, backend_public=system.site.public_key(BACKEND_USER)
    )
    assert (reply.result, reply.reason) == ("denied", "unknown_lock")
    child = await cli(system.site, "remote", "unlock", "lock_99", "--id", OWNER)
    assert child.returncode == 2  # the CLI knows the site's locks and says so first
    assert "lock_99" in child.output()


async def test_a_request_delivered_twice_is_executed_and_answered_once(system: System) -> None:
    """QoS 1 may deliver a request twice: the backend knows it by its request id."""
    lock = system.locks["lock_02"]
    mark = len(lock.lines)
    request = CommandRequest(
        crypto.random_bytes(ID_BYTES), int(time.time()), "lock_02", Action.LOCK
    )
    reply_topic = topics.user_topic(RESIDENT, "replies")
    backend_public = system.site.public_key(BACKEND_USER)
    async with MqttConnection(system.site, system.site.credentials(RESIDENT)) as mqtt:
        await mqtt.subscribe(reply_topic)
        for _ in range(2):
            await mqtt.publish(
                topics.command_requests(RESIDENT),
                bytes(request),
                response_topic=reply_topic,
                correlation_data=request.request_id,
            )
        replies = []
        try:
            async with asyncio.timeout(3):
                async for message in mqtt.messages():
                    replies.append(message)
        except TimeoutError:
            pass
    assert len(replies) == 1
    assert replies[0].correlation_data == request.request_id
    reply = open_command_reply(replies[0].payload, backend_public=backend_public)
    assert reply.result == "done"
    assert (
        len([line for line in lock.lines[mark:] if "LOCKED lock_02 for remote command" in line])
        == 1
    )
    await system.backend.wait_for(r"Rejected message .*replay", after=0)


async def test_a_request_naming_another_response_topic_is_refused(system: System) -> None:
    request = CommandRequest(
        crypto.random_bytes(ID_BYTES), int(time.time()), "lock_02", Action.UNLOCK
    )
    mark = len(system.backend.lines)
    async with MqttConnection(system.site, system.site.credentials(RESIDENT)) as mqtt:
        await mqtt.publish(
            topics.command_requests(RESIDENT),
            bytes(request),
            response_topic=topics.user_topic("guest_01", "replies"),
            correlation_data=request.request_id,
        )
    await system.backend.wait_for(r"bad_reply_topic", after=mark)


async def test_audit_log_verifies(system: System) -> None:
    child = await cli(system.site, "audit", "verify")
    assert child.returncode == 0, child.output()
    assert "intact" in child.output()
