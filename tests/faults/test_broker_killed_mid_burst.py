"""Fault: Mosquitto SIGKILLed, then restarted, in the middle of a burst of BLE unlocks and
remote commands.

Afterwards every opening of a door is in the audit log exactly once, no door moved for anyone
who did not ask, every requester got an answer or a clear error (never a traceback), and the
backend and locks came back on their own, with backoff, without being restarted.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio

from smartlock.adapters.processes import Child
from system_harness import OWNER, RESIDENT, System, cli, cli_json, run_guest, running_system

ATTEMPTS = 4  # per user and kind
ATTEMPT_GAP_S = 0.3
KILL_AFTER_S = 2.0
OUTAGE_S = 1.5
SETTLE_S = 30.0

BLE = [("lock_01", "guest_01"), ("lock_02", "guest_02"), ("lock_01", RESIDENT)]
MOVED = re.compile(r"\b(?P<state>UNLOCKED|LOCKED) (?P<lock>\S+) for (?P<who>.+)$")
REMOTE = [("unlock", "lock_02", OWNER), ("lock", "lock_01", RESIDENT)]


@pytest_asyncio.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    async with running_system() as running:
        yield running


def _kill_mosquitto(broker: Child) -> None:
    """SIGKILL the broker itself (not the ``smartlock broker`` wrapper around it)."""
    assert broker.process is not None
    pid = broker.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    os.kill(int(children[0]), signal.SIGKILL)


async def _audit_settles(system: System, expected: Callable[[list[dict[str, Any]]], bool]) -> Any:
    """The audit log once ``expected`` holds for it (events still queued at the locks arrive
    after their reconnection); the last one read if it never does within ``SETTLE_S``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_S
    while True:
        audit = await cli_json(system.site, "audit")
        if expected(audit) or loop.time() > deadline:
            return audit
        await asyncio.sleep(1.0)


async def test_a_broker_killed_mid_burst_loses_no_event_and_opens_no_door_unasked(
    system: System,
) -> None:
    site = system.site
    marks = {name: len(lock.lines) for name, lock in system.locks.items()}
    backend_mark = len(system.backend.lines)
    # One chain of attempts per user and kind, all chains at once: a user's own requests
    # follow one another (the broker holds one session per user name).
    chains: list[tuple[str, str, str, Callable[[], Awaitable[Child]]]] = [
        (
            "ble",
            lock_id,
            who,
            lambda lock_id=lock_id, who=who: run_guest(site, lock_id, who, timeout_s=8),
        )
        for lock_id, who in BLE
    ] + [
        (
            action,
            lock_id,
            who,
            lambda action=action, lock_id=lock_id, who=who: cli(
                site, "remote", action, lock_id, "--id", who, "--timeout", "8", "--json"
            ),
        )
        for action, lock_id, who in REMOTE
    ]
    finished: list[tuple[str, str, str, Child]] = []

    async def chain(
        kind: str, lock_id: str, who: str, attempt: Callable[[], Awaitable[Child]]
    ) -> None:
        for _ in range(ATTEMPTS):
            finished.append((kind, lock_id, who, await attempt()))
            await asyncio.sleep(ATTEMPT_GAP_S)

    async def broker_outage() -> None:
        await asyncio.sleep(KILL_AFTER_S)
        _kill_mosquitto(system.broker)
        await system.broker.wait(timeout_s=10)
        await asyncio.sleep(OUTAGE_S)
        system.broker = await Child.smartlock("broker", "broker", "--site", str(site.root)).start()
        await system.broker.wait_for(r"Broker listening")

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(broker_outage())
        for kind, lock_id, who, attempt in chains:
            tasks.create_task(chain(kind, lock_id, who, attempt))

    # Every requester got an answer or a clear, one-line error.
    for *_, child in finished:
        output = child.output()
        assert "Traceback" not in output, output
        assert child.returncode == 0 or "error:" in output or '"result"' in output, output
    succeeded = Counter(
        (kind, lock_id, who) for kind, lock_id, who, c in finished if c.returncode == 0
    )
    assert sum(succeeded.values()) >= len(finished) // 3, succeeded  # the burst did go through

    # The services came back by themselves, with backoff.
    for child, ready in [
        (system.backend, r"Backend listening"),
        *[(lock, rf"Subscribed to locks/{name}/session") for name, lock in system.locks.items()],
    ]:
        lost = max(i for i, line in enumerate(child.lines) if "lost the broker" in line)
        await child.wait_for(ready, after=lost, timeout_s=20)
        assert not child.exited()
    assert any("retrying in" in line for line in system.backend.lines[backend_mark:])

    # No door moved for anyone who did not ask, and no command ran twice.
    moved: Counter[tuple[str, str, str]] = Counter()  # (state, lock, for whom) -> times
    for name, lock in system.locks.items():
        for line in lock.lines[marks[name] :]:
            if found := MOVED.search(line):
                moved[(found["state"], found["lock"], found["who"])] += 1
    asked_ble = {(lock_id, who) for lock_id, who in BLE}
    for (state, lock_id, who), _count in moved.items():
        if who == "remote command":
            action = "unlock" if state == "UNLOCKED" else "lock"
            sent = sum(1 for a, lock, _ in REMOTE if a == action and lock == lock_id) * ATTEMPTS
            assert moved[(state, lock_id, who)] <= sent, moved
        else:
            assert state == "UNLOCKED", (state, lock_id, who)
            assert (lock_id, who) in asked_ble, (lock_id, who)

    # Each opening is in the audit log exactly once (the locks upload what they kept).
    def ble_openings(audit: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
        return Counter(
            (e["lock"], e["who"])
            for e in audit
            if e["channel"] == "ble" and e["action"] == "unlock" and e["result"] == "granted"
        )

    expected_ble = Counter(
        {(lock_id, who): n for (state, lock_id, who), n in moved.items() if who != "remote command"}
    )
    audit = await _audit_settles(system, lambda a: ble_openings(a) == expected_ble)
    assert ble_openings(audit) == expected_ble
    remote_done = Counter(
        (e["lock"], e["action"])
        for e in audit
        if e["channel"] == "remote" and e["result"] == "granted"
    )
    for (state, lock_id, who), count in moved.items():
        if who == "remote command":
            action = "unlock" if state == "UNLOCKED" else "lock"
            assert remote_done[(lock_id, action)] == count, (remote_done, moved)
    verified = await cli(site, "audit", "verify")
    assert verified.returncode == 0, verified.output()
