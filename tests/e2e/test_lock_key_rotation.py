"""``smartlock rotate lock-key`` on a running site: the lock and the backend switch to the new
key pair without a restart, no connection drops, a valid guest and a remote command keep
working during the overlap, after a lock restart in it, and after ``--finish``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from smartlock import crypto
from system_harness import OWNER, System, cli, cli_json, run_guest, running_system

LOCK = "lock_01"
GUEST = "guest_01"


@pytest_asyncio.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    async with running_system() as running:
        yield running


async def _guest_opens(system: System) -> None:
    guest = await run_guest(system.site, LOCK, GUEST)
    assert guest.returncode == 0, guest.output()


async def _owner_unlocks_remotely(system: System) -> None:
    answer = await cli_json(system.site, "remote", "unlock", LOCK, "--id", OWNER)
    assert answer["result"] == "done", answer


def _fingerprint(system: System) -> str:
    key = crypto.load_private_key(system.site.private_key_path(LOCK).read_bytes())
    return crypto.public_key_fingerprint(key.public_key())


async def test_a_rotated_lock_key_is_used_at_once_and_nobody_is_dropped(system: System) -> None:
    await _guest_opens(system)
    before = _fingerprint(system)
    lock, mark = system.locks[LOCK], len(system.locks[LOCK].lines)
    backend_mark = len(system.backend.lines)
    rotated = await cli(system.site, "rotate", "lock-key", LOCK)
    assert rotated.returncode == 0, rotated.output()
    after = _fingerprint(system)
    assert after != before
    assert f"New key pair for {LOCK}: {after} (was {before})" in rotated.output()
    # the backend seals the lock's command key again for the new key; the lock opens it
    await lock.wait_for(
        rf"Lock key rotated: now {after}, the previous one still accepted", after=mark
    )
    await _guest_opens(system)  # a session key sealed for the new key, an event it signed
    await _owner_unlocks_remotely(system)
    assert not [line for line in lock.lines[mark:] if "Subscribed to" in line]  # no reconnect
    assert not [line for line in lock.lines[mark:] if "Rejected" in line]
    assert not [line for line in system.backend.lines[backend_mark:] if "Rejected" in line]


async def test_a_lock_restarted_during_the_overlap_gets_its_command_key_and_opens(
    system: System,
) -> None:
    await system.locks[LOCK].stop()
    lock = await system.start_lock(LOCK)
    await _owner_unlocks_remotely(system)  # needs the retained command key, sealed anew
    await _guest_opens(system)
    assert not [line for line in lock.lines if "Rejected" in line]


async def test_finishing_deletes_the_previous_key_and_the_door_still_works(
    system: System,
) -> None:
    site = system.site
    assert site.previous_private_key_path(LOCK).exists()
    finished = await cli(site, "rotate", "lock-key", LOCK, "--finish")
    assert finished.returncode == 0, finished.output()
    assert not site.previous_private_key_path(LOCK).exists()
    assert not site.previous_public_key_path(LOCK).exists()
    await _guest_opens(system)
    await _owner_unlocks_remotely(system)
    again = await cli(site, "rotate", "lock-key", LOCK, "--finish")
    assert again.returncode != 0
    assert "no rotation of lock_01's key is under way" in again.output()
    assert "Traceback" not in again.output()
    audit = await cli_json(site, "audit", "--lock", LOCK)
    rotations = [e["reason"] for e in audit if e["action"] == "lock_key_rotate"]
    assert len(rotations) == 2 and rotations[1] == "previous key deleted"
