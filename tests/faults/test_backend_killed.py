"""Fault: the backend SIGKILLed with requests in flight, then restarted.

Nothing the owner did is lost (passes and revocations live in the durable store, and the
locks' revocation lists are retained by the broker); a requester whose request was in flight
gets its answer or a clear timeout, never a hang; what a lock did meanwhile still reaches the
audit log; and everything works again once the backend is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from smartlock.adapters.processes import Child
from smartlock.adapters.store.records import PassRecord
from smartlock.admin import open_store
from system_harness import OWNER, System, cli, cli_json, run_guest, running_system

TIMEOUT_S = "6"


@pytest_asyncio.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    async with running_system() as running:
        yield running


async def _kill_and_restart_backend(system: System) -> None:
    assert system.backend.process is not None
    system.backend.process.kill()
    assert await system.backend.wait(timeout_s=10) != 0
    system.backend = await Child.smartlock(
        "backend", "backend", "--site", str(system.site.root)
    ).start()
    await system.backend.wait_for(r"Backend listening for session requests")


def _passes(system: System, guest: str) -> list[PassRecord]:
    with open_store(system.site) as store:
        return store.list_passes(guest=guest, include_inactive=True, now=int(time.time()))


async def test_a_killed_backend_loses_no_pass_nor_revocation(system: System) -> None:
    site = system.site
    granted = await cli(site, "pass", "grant", "guest_03", "lock_01")
    assert granted.returncode == 0, granted.output()
    revoked = await cli(site, "pass", "revoke", str(_passes(system, "guest_02")[0].pass_id))
    assert revoked.returncode == 0, revoked.output()
    await system.locks["lock_02"].wait_for(r"Applied revocation list v2")

    await _kill_and_restart_backend(system)

    assert [p.revoked for p in _passes(system, "guest_03")] == [False]
    assert [p.revoked for p in _passes(system, "guest_02")] == [True]
    refused = await run_guest(site, "lock_02", "guest_02")
    assert refused.returncode != 0
    assert "pass_revoked" in refused.output() or "no_pass" in refused.output(), refused.output()
    allowed = await run_guest(site, "lock_01", "guest_03")
    assert allowed.returncode == 0, allowed.output()
    # the restarted backend published the same list again: the lock already had it
    await system.locks["lock_02"].wait_for(r"Revocation list v2 already applied")


async def test_a_key_request_in_flight_is_answered_or_timed_out_clearly(system: System) -> None:
    site = system.site
    mark = len(system.backend.lines)
    guest = Child.smartlock(
        "guest_01",
        *("guest", "unlock", "lock_01", "--id", "guest_01", "--site", str(site.root)),
        *("--timeout", TIMEOUT_S),
    )
    await guest.start()
    await system.backend.wait_for(r"Issued session key .* for guest_01", after=mark)
    await _kill_and_restart_backend(system)
    code = await guest.wait(timeout_s=30)
    output = guest.output()
    assert "Traceback" not in output
    if code != 0:  # the key did not make it out before the kill: a clear timeout
        assert f"error: gave up after {TIMEOUT_S} s" in output, output
    again = await run_guest(site, "lock_01", "guest_01")
    assert again.returncode == 0, again.output()


async def test_a_remote_command_in_flight_still_reaches_the_audit_log(system: System) -> None:
    site = system.site
    lock = system.locks["lock_02"]
    lock_mark = len(lock.lines)
    remote = Child.smartlock(
        "remote",
        *("remote", "unlock", "lock_02", "--id", OWNER, "--site", str(site.root)),
        *("--timeout", TIMEOUT_S),
    )
    await remote.start()
    # The door acts; the backend dies at about the moment the lock reports it.
    await lock.wait_for(r"UNLOCKED lock_02 for remote command", after=lock_mark)
    await _kill_and_restart_backend(system)
    code = await remote.wait(timeout_s=30)
    output = remote.output()
    assert "Traceback" not in output
    assert code == 0 or "failed" in output or "error:" in output, output

    def remote_entries(audit: list[dict[str, Any]], result: str) -> list[dict[str, Any]]:
        return [e for e in audit if e["channel"] == "remote" and e["result"] == result]

    # The report reached the log once: before the kill, or from the broker after it.
    audit = await cli_json(site, "audit", "--lock", "lock_02")
    for _ in range(20):
        if remote_entries(audit, "granted"):
            break
        await asyncio.sleep(0.5)
        audit = await cli_json(site, "audit", "--lock", "lock_02")
    assert len(remote_entries(audit, "sent")) == 1, audit  # logged before it left
    assert len(remote_entries(audit, "granted")) == 1, audit
    answer = await cli_json(site, "remote", "unlock", "lock_02", "--id", OWNER)
    assert answer["result"] == "done", answer
    verified = await cli(site, "audit", "verify")
    assert verified.returncode == 0, verified.output()
