"""Fault: the disk under the audit store fills up.

The backend must fail closed -- grant no key and send no remote command it cannot write to its
audit log, and tell the requester why -- while the door events that locks report meanwhile are
kept and reach the log, once each, as soon as the disk has room again: even when the backend
is killed while it holds them (the broker keeps what the backend has not acknowledged).

The store lives on a small tmpfs mounted for this module (root only: skipped elsewhere, with
the reason).
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from smartlock.adapters.processes import Child
from smartlock.services.guest_app import GuestApp
from system_harness import (
    OWNER,
    System,
    cli,
    cli_json,
    new_site_dir,
    provision,
    run_guest,
    start_system,
)

TMPFS_SIZE = "4m"


@pytest.fixture(scope="module")
def small_disk() -> Iterator[Path]:
    mount_point = Path(tempfile.mkdtemp(prefix="smartlock-disk-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        mount_point.rmdir()
        pytest.skip(f"needs root to mount a small tmpfs: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        mount_point.rmdir()


@pytest_asyncio.fixture(scope="module")
async def system(small_disk: Path) -> AsyncIterator[System]:
    root = new_site_dir()
    site = provision(root, db=f"sqlite:///{small_disk}/smartlock.db")
    running = await start_system(site)
    try:
        yield running
    finally:
        await running.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def disk_full(mount_point: Path) -> Iterator[None]:
    """Fill ``mount_point`` to the last byte for the block."""
    filler = mount_point / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        for size in (len(chunk), 512):  # big chunks, then the last partial one
            with pytest.raises(OSError, match="No space") as raised:  # noqa: PT012 -- until full
                while True:
                    out.write(chunk[:size])
            assert raised.value.errno == errno.ENOSPC, raised.value
    try:
        yield
    finally:
        filler.unlink()


async def _kill_and_restart_backend(system: System) -> None:
    assert system.backend.process is not None
    system.backend.process.kill()
    await system.backend.wait(timeout_s=10)
    system.backend = await Child.smartlock(
        "backend", "backend", "--site", str(system.site.root)
    ).start()
    await system.backend.wait_for(r"Backend listening for session requests")


def _entries(audit: list[dict[str, object]], **match: object) -> list[dict[str, object]]:
    return [e for e in audit if all(e[k] == v for k, v in match.items())]


async def test_a_full_disk_refuses_access_it_cannot_log_and_keeps_door_events(
    system: System, small_disk: Path
) -> None:
    held = await GuestApp(system.site, "guest_01").obtain_key("lock_01")  # before the fault
    lock_01, lock_02 = system.locks["lock_01"], system.locks["lock_02"]
    remote_before = lock_02.count(r"UNLOCKED lock_02")
    with disk_full(small_disk):
        # a key request: refused, and the guest is told why
        guest = await run_guest(system.site, "lock_01", "guest_01")
        assert guest.returncode == 2, guest.output()  # refused, as for a guest with no pass
        assert "audit_unavailable" in guest.output()
        assert "cannot write its audit log" in guest.output()
        await system.backend.wait_for(r"Store unavailable, key for guest_01 on lock_01 refused")
        # a remote command: refused before it reaches the lock
        remote = await cli(system.site, "remote", "unlock", "lock_02", "--id", OWNER)
        assert remote.returncode == 1, remote.output()
        assert "denied: audit_unavailable" in remote.output()
        assert lock_02.count(r"UNLOCKED lock_02") == remote_before
        # the lock decides a held key on its own; its event waits at the backend for the disk
        assert await GuestApp(system.site, "guest_01").advertise_held_key(held, seconds=1.5) >= 1
        await lock_01.wait_for(r"UNLOCKED lock_01 for guest_01")
        await system.backend.wait_for(r"Store unavailable, a message on locks/lock_01/events")
        # The backend dies holding that event, unstored: the broker still has it (it was
        # never acknowledged) and gives it to the backend that starts next.
        await _kill_and_restart_backend(system)
        await system.backend.wait_for(r"Store unavailable, a message on locks/lock_01/events")
    await system.backend.wait_for(r"every kept lock event is handled", timeout_s=10)
    audit = await cli_json(system.site, "audit", "--lock", "lock_01", "--user", "guest_01")
    opened = _entries(audit, channel="ble", action="unlock", result="granted")
    # each opening logged once, although it arrived while the disk was full
    assert len(opened) == lock_01.count(r"UNLOCKED lock_01 for guest_01") >= 1, opened
    refused = _entries(audit, action="key_request", result="granted")
    assert len(refused) == 1  # the key obtained before the fault; none while it lasted
    # with room again, everything works as before
    assert (await run_guest(system.site, "lock_01", "guest_01")).returncode == 0
    answer = await cli_json(system.site, "remote", "unlock", "lock_02", "--id", OWNER)
    assert answer["result"] == "done", answer
    verified = await cli(system.site, "audit", "verify")
    assert verified.returncode == 0, verified.output()
