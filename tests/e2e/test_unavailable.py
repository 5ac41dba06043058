"""A guest whose backend or lock is not there gets a clear answer, not a hang or a traceback."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from smartlock.adapters.processes import Child
from smartlock.site import Site
from system_harness import SNIFFER, System, cli_json, new_site_dir, provision, run_guest


@pytest_asyncio.fixture(scope="module")
async def bare_site() -> AsyncIterator[tuple[Site, list[Child]]]:
    """Broker and radio only; the tests start the rest."""
    root = new_site_dir()
    site = provision(root)
    broker = await Child.smartlock("broker", "broker", "--site", str(root)).start()
    await broker.wait_for(r"Broker listening")
    radio = await Child.smartlock(
        "radio", "radio-hub", "--site", str(root), "--extra", SNIFFER
    ).start()
    await radio.wait_for(r"Radio hub ready")
    children = [radio, broker]
    yield site, children
    for child in children:
        await child.stop()
    shutil.rmtree(root, ignore_errors=True)


async def test_guest_is_told_when_the_backend_does_not_answer(
    bare_site: tuple[Site, list[Child]],
) -> None:
    site, _ = bare_site
    guest = await run_guest(site, "lock_01", "guest_01", timeout_s=3)
    assert guest.returncode == 2
    assert "the backend did not answer the key request" in guest.output()
    assert "Traceback" not in guest.output()


async def test_guest_is_told_when_the_lock_is_offline_then_succeeds_once_it_is_back(
    bare_site: tuple[Site, list[Child]],
) -> None:
    site, children = bare_site
    backend = await Child.smartlock("backend", "backend", "--site", str(site.root)).start()
    children.insert(0, backend)
    await backend.wait_for(r"Backend listening")
    guest = await run_guest(site, "lock_01", "guest_01", timeout_s=15)
    assert guest.returncode == 2
    assert "refused a key for lock_01: lock_unreachable" in guest.output()
    audit = await cli_json(site, "audit", "--user", "guest_01")
    assert [e["reason"] for e in audit if e["result"] == "failed"] == ["lock_unreachable"]
    system = System(site, children[-1], children[-2], backend)
    lock = await system.start_lock("lock_01")
    children.insert(0, lock)
    guest = await run_guest(site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()
    await lock.wait_for(r"UNLOCKED lock_01 for guest_01")


async def test_services_reconnect_after_the_broker_is_killed_and_restarted(
    bare_site: tuple[Site, list[Child]],
) -> None:
    site, children = bare_site
    backend = next(child for child in children if child.name == "backend")
    lock = next(child for child in children if child.name == "lock_01")
    broker = next(child for child in children if child.name == "broker")
    assert broker.process is not None
    children_file = f"/proc/{broker.process.pid}/task/{broker.process.pid}/children"
    mosquitto = int(Path(children_file).read_text().split()[0])  # noqa: ASYNC240 - /proc
    os.kill(mosquitto, signal.SIGKILL)  # the broker itself, not our wrapper around it
    assert await broker.wait(timeout_s=10) != 0
    await broker.wait_for(r"mosquitto exited")
    await backend.wait_for(r"lost the broker")
    await lock.wait_for(r"lost the broker")
    restarted = await Child.smartlock("broker", "broker", "--site", str(site.root)).start()
    children[children.index(broker)] = restarted
    await restarted.wait_for(r"Broker listening")
    for child, ready in ((backend, "Backend listening"), (lock, "Subscribed to locks/lock_01")):
        lost_at = max(i for i, line in enumerate(child.lines) if "lost the broker" in line)
        await child.wait_for(ready, after=lost_at)
    assert not backend.exited()
    assert not lock.exited()
    guest = await run_guest(site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()
