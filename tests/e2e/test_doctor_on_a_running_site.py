"""``smartlock doctor`` on a running site, as a user runs it: every check passes; a stopped lock
makes it fail, naming the lock and the command that starts it again."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest_asyncio

from system_harness import System, cli, running_system


@pytest_asyncio.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    async with running_system() as running:
        for lock_id in running.site.locks:
            await running.backend.wait_for(rf"Lock {lock_id} is online")
        yield running


async def test_every_check_passes_on_a_running_site(system: System) -> None:
    doctor = await cli(system.site, "doctor")
    assert doctor.returncode == 0, doctor.output()
    assert "✗" not in doctor.output()
    assert all(line.startswith("✓ ") for line in doctor.stdout_lines[:-1]), doctor.output()
    for name in ("broker", "store", "revocations", "lock lock_01", "lock lock_02", "audit log"):
        assert any(line.startswith(f"✓ {name}: ") for line in doctor.stdout_lines), name


async def test_the_broker_check_makes_no_login(system: System) -> None:
    before = len(system.broker.lines)
    doctor = await cli(system.site, "doctor", "--json")
    assert doctor.returncode == 0, doctor.output()
    checks = {check["name"]: check for check in json.loads("\n".join(doctor.stdout_lines))}
    assert checks["broker"]["ok"] is True
    # nobody was kicked off: no service's session was taken over
    assert not any("already connected" in line for line in system.broker.lines[before:])
    assert not system.backend.exited()
    assert not any(lock.exited() for lock in system.locks.values())


async def test_a_stopped_lock_fails_naming_it_and_how_to_start_it(system: System) -> None:
    mark = len(system.backend.lines)
    await system.locks["lock_02"].stop()
    await system.backend.wait_for(r"Lock lock_02 is OFFLINE", after=mark, timeout_s=5)
    try:
        doctor = await cli(system.site, "doctor")
        assert doctor.returncode == 1, doctor.output()
        lines = doctor.stdout_lines
        failed = [line for line in lines if line.startswith("✗ ")]
        assert len(failed) == 1, doctor.output()
        assert failed[0].startswith("✗ lock lock_02: OFFLINE since "), doctor.output()
        fix = lines[lines.index(failed[0]) + 1]
        assert fix == f"    fix: smartlock lock run --id lock_02 --site {system.site.root}"
    finally:
        mark = len(system.backend.lines)
        await system.start_lock("lock_02")
        await system.backend.wait_for(r"Lock lock_02 is online", after=mark)
