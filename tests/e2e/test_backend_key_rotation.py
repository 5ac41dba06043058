"""``smartlock rotate backend-key`` on a running site: the backend signs with the new key at
once, the locks and the users of the site trust it from the site's files, a device with its own
copy of the site (an enrolled phone) learns it from the backend's signed notice, nothing is
refused during the overlap, and after ``--finish`` the old key is trusted nowhere."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from smartlock import crypto
from smartlock.adapters.mqtt import MqttConnection
from smartlock.adapters.processes import Child
from smartlock.core import topics
from smartlock.core.revocation import make_revocation_list
from smartlock.site import BACKEND_USER
from system_harness import (
    OWNER,
    System,
    cli,
    cli_json,
    copy_for_device,
    run_guest,
    run_guest_on_device,
    running_system,
)

LOCK = "lock_01"
GUEST = "guest_01"


@pytest_asyncio.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    async with running_system() as running:
        yield running


def _fingerprint_of(path: Path) -> str:
    return crypto.public_key_fingerprint(crypto.load_public_key(path.read_bytes()))


async def _device_opens(system: System, device: Path) -> Child:
    """``guest unlock`` from a device that keeps its own copy of the site."""
    child = await run_guest_on_device(system.site, device, LOCK, GUEST)
    assert child.returncode == 0, child.output()
    return child


async def _everyone_still_works(system: System) -> None:
    guest = await run_guest(system.site, LOCK, GUEST)
    assert guest.returncode == 0, guest.output()
    answer = await cli_json(system.site, "remote", "unlock", LOCK, "--id", OWNER)
    assert answer["result"] == "done", answer


async def test_a_rotated_backend_key_is_trusted_by_site_devices_and_learned_by_others(
    system: System, tmp_path: Path
) -> None:
    site = system.site
    device = tmp_path / "phone"
    copy_for_device(site, device, GUEST)  # a device with its own copy: it pins the old key
    old = _fingerprint_of(site.public_key_path(BACKEND_USER))
    marks = {name: len(child.lines) for name, child in system.locks.items()}
    rotated = await cli(site, "rotate", "backend-key")
    assert rotated.returncode == 0, rotated.output()
    new = _fingerprint_of(site.public_key_path(BACKEND_USER))
    assert new != old and f"New backend key {new} (was {old})" in rotated.output()
    await system.backend.wait_for(rf"Signing with backend key {new}")
    await system.backend.wait_for(rf"Told every device: trust backend key {new}")
    await _everyone_still_works(system)  # deliveries and replies signed by the new key
    phone = await _device_opens(system, device)
    assert f"Trust: now trusts backend key {new}" in phone.output()
    assert _fingerprint_of(device / "public" / "backend.pub") == new
    assert _fingerprint_of(device / "public" / "backend.pub.previous") == old
    for name, lock in system.locks.items():
        lines = lock.lines[marks[name] :]
        assert not [line for line in lines if "Subscribed to" in line], name  # no reconnect
        assert not [line for line in lines if "bad_signature" in line], name


async def test_after_finishing_the_old_key_is_trusted_nowhere(
    system: System, tmp_path: Path
) -> None:
    site = system.site
    device = tmp_path / "phone"
    copy_for_device(site, device, GUEST)
    old_private = crypto.load_private_key(site.previous_private_key_path(BACKEND_USER).read_bytes())
    old = crypto.public_key_fingerprint(old_private.public_key())
    # the copy made during the overlap trusts both; the notice will retire the old one
    assert (device / "public" / "backend.pub.previous").exists()
    finished = await cli(site, "rotate", "backend-key", "--finish")
    assert finished.returncode == 0, finished.output()
    await system.backend.wait_for(rf"Told every device: drop backend key {old}")
    assert not site.previous_private_key_path(BACKEND_USER).exists()
    assert not site.previous_public_key_path(BACKEND_USER).exists()
    await _everyone_still_works(system)
    phone = await _device_opens(system, device)
    assert f"Trust: retired backend key {old}" in phone.output()
    assert not (device / "public" / "backend.pub.previous").exists()
    # a list signed with the retired key (stolen, say) is refused by the lock
    lock = system.locks[LOCK]
    mark = len(lock.lines)
    forged = make_revocation_list(
        version=99, lock_id=LOCK, pass_ids=[], users=[], now=time.time(), backend_key=old_private
    )
    async with (
        system.paused(BACKEND_USER),
        MqttConnection(site, site.credentials(BACKEND_USER)) as mqtt,
    ):
        await mqtt.publish(topics.lock_topic(LOCK, "revocations"), bytes(forged), retain=True)
        await lock.wait_for(r"Rejected revocation list.*bad_signature", after=mark)
    await _everyone_still_works(system)
    audit = await cli_json(site, "audit")
    rotations = [e["reason"] for e in audit if e["action"] == "backend_key_rotate"]
    assert rotations == [f"{old} -> {_fingerprint_of(site.public_key_path(BACKEND_USER))}",
                         f"{old} retired"]  # fmt: skip
