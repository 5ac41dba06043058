"""Malformed, truncated, oversized and wrong-version input is dropped, logged and counted."""

from __future__ import annotations

from smartlock import crypto
from smartlock.adapters.mqtt import MqttConnection
from smartlock.core.messages import ID_BYTES, MAX_MESSAGE_BYTES, SessionRequest
from system_harness import Sniffer, System, run_guest


async def test_bad_requests_are_rejected_and_the_backend_keeps_working(system: System) -> None:
    site = system.site
    good = bytes(SessionRequest(crypto.random_bytes(ID_BYTES), 0, "lock_01"))
    cases = {
        "malformed": good[:-3],
        "wrong_version": b"\x01" + good[1:],  # the protocol before roles and passes
        "oversized": bytes(MAX_MESSAGE_BYTES + 1),
        "stale": good,  # sent_at = 1970
    }
    backend = system.backend
    mark = len(backend.lines)
    async with MqttConnection(site, site.credentials("guest_01")) as mqtt:
        for payload in cases.values():
            await mqtt.publish("backend/session_requests/guest_01", payload)
    for reason in ("malformed", "wrong_version", "oversized"):
        await backend.wait_for(
            rf"Rejected message from backend/session_requests/guest_01: {reason}", after=mark
        )
    await backend.wait_for(r"Denied session key to guest_01: stale", after=mark)
    assert not backend.exited()
    guest = await run_guest(site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()


async def test_bad_advertisements_are_rejected_and_the_lock_keeps_working(system: System) -> None:
    lock = system.locks["lock_01"]
    mark = len(lock.lines)
    flags = bytes([2, 0x01, 0x06])

    def manufacturer(payload: bytes) -> bytes:
        return flags + bytes([len(payload) + 3, 0xFF, 0xFF, 0xFF]) + payload

    cases = {
        "malformed": manufacturer(b"\x01\x01\x00"),  # truncated frame
        "wrong_version": manufacturer(bytes([9]) + bytes(23)),
        "unknown_key": manufacturer(bytes([1, 1]) + crypto.random_bytes(22)),
    }
    async with Sniffer(system.site) as attacker:
        for data in cases.values():
            await attacker.replay(data, seconds=0.3)
        await attacker.replay(flags + bytes([27, 0xFF, 0xFF, 0xFF, 1, 1]), seconds=0.3)  # cut off
        await attacker.replay(flags + bytes([30]), seconds=0.3)  # not ours: ignored, not counted
    for reason in cases:
        await lock.wait_for(rf"Rejected advertisement .*{reason}", after=mark)
    assert sum("malformed" in line for line in lock.lines[mark:]) == 2
    assert not any("UNLOCKED" in line for line in lock.lines[mark:])
    guest = await run_guest(system.site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()
