"""The lock verifies every key delivery before it trusts a field of it.

These tests play a backend (they hold the site's backend credentials, as a compromised or buggy
backend host would) and publish hand-made deliveries on the real broker.
"""

from __future__ import annotations

import time

from smartlock import crypto
from smartlock.adapters.mqtt import MqttConnection
from smartlock.core.issuance import issue_session_key
from smartlock.core.messages import ID_BYTES, MAX_MESSAGE_BYTES, SessionRequest
from smartlock.site import BACKEND_USER, Site
from system_harness import System, run_guest


def delivery(
    site: Site,
    lock_id: str,
    *,
    signer: crypto.PrivateKey | None = None,
    issued_at: float | None = None,
) -> bytes:
    now = time.time() if issued_at is None else issued_at
    request = SessionRequest(crypto.random_bytes(ID_BYTES), int(now), lock_id)
    issuance = issue_session_key(
        request=request,
        guest_id="guest_01",
        now=now,
        ttl_s=300,
        backend_key=signer or site.private_key(BACKEND_USER),
        lock_public=site.public_key(lock_id),
        guest_public=site.public_key("guest_01"),
        random_bytes=crypto.random_bytes,
    )
    return bytes(issuance.lock_delivery)


async def publish_as_backend(system: System, topic: str, *payloads: bytes) -> None:
    """Publish as the backend while the real one is paused (one session per user)."""
    site = system.site
    async with (
        system.paused(BACKEND_USER),
        MqttConnection(site, site.credentials(BACKEND_USER)) as mqtt,
    ):
        for payload in payloads:
            await mqtt.publish(topic, payload)


async def test_replayed_key_delivery_is_rejected(system: System) -> None:
    lock = system.locks["lock_01"]
    mark = len(lock.lines)
    payload = delivery(system.site, "lock_01")
    await publish_as_backend(system, "locks/lock_01/session", payload)
    await lock.wait_for(r"Received session key", after=mark)
    await publish_as_backend(system, "locks/lock_01/session", payload)
    await lock.wait_for(r"Rejected key delivery .*replay", after=mark)
    assert sum("Received session key" in line for line in lock.lines[mark:]) == 1


async def test_delivery_signed_by_another_key_is_rejected(system: System) -> None:
    lock = system.locks["lock_01"]
    mark = len(lock.lines)
    forged = delivery(system.site, "lock_01", signer=crypto.generate_private_key())
    await publish_as_backend(system, "locks/lock_01/session", forged)
    await lock.wait_for(r"Rejected key delivery .*bad_signature", after=mark)
    assert not any("Received session key" in line for line in lock.lines[mark:])


async def test_delivery_for_another_lock_is_rejected(system: System) -> None:
    lock = system.locks["lock_01"]
    mark = len(lock.lines)
    await publish_as_backend(system, "locks/lock_01/session", delivery(system.site, "lock_02"))
    await lock.wait_for(r"Rejected key delivery .*wrong_lock", after=mark)


async def test_expired_delivery_is_rejected(system: System) -> None:
    lock = system.locks["lock_01"]
    mark = len(lock.lines)
    stale = delivery(system.site, "lock_01", issued_at=time.time() - 1000)
    await publish_as_backend(system, "locks/lock_01/session", stale)
    await lock.wait_for(r"Rejected key delivery .*expired", after=mark)


async def test_malformed_deliveries_are_counted_and_the_lock_keeps_working(system: System) -> None:
    lock = system.locks["lock_01"]
    mark = len(lock.lines)
    good = delivery(system.site, "lock_01")
    cases = {
        "malformed": good[:100],
        "wrong_version": b"\x07" + good[1:],
        "wrong_type": good[:1] + b"\x05" + good[2:],
        "oversized": good + bytes(MAX_MESSAGE_BYTES),
    }
    await publish_as_backend(system, "locks/lock_01/session", *cases.values())
    for reason in cases:
        await lock.wait_for(rf"Rejected key delivery .*{reason}", after=mark)
    assert not lock.exited()
    guest = await run_guest(system.site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()
