"""Relay: the known limit of BLE proximity, and the RSSI floor that narrows it.

A relay attacker stands near the guest's phone, far from the door, and forwards a live token to
a partner at the door within its time slot.  Here the token is made from the guest's held key
exactly as the phone makes it, at this moment, and the door never heard the phone: that is what
a relay delivers.  Without a floor it opens the door -- the documented limit (SECURITY.md,
"Relay").  What bounds it: the key lives minutes, each token one 2-second slot, and a lock
started with ``--min-rssi`` refuses tokens heard below its floor, so the relay must transmit
close to the door and loudly.  bumble's virtual radio reports every advertisement at -50 dBm,
so a floor of -40 dBm stands for "the relay is too far", and -60 dBm for a guest at the door.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from smartlock.adapters.processes import ChildFailed
from smartlock.core.token import advertising_data, make_token, token_slot
from smartlock.services.guest_app import GuestApp, HeldKey
from system_harness import Sniffer, System, run_guest, running_system

VIRTUAL_RADIO_RSSI = -50


@pytest_asyncio.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    async with running_system() as running:
        yield running


async def _restart_lock_with(system: System, *args: str) -> None:
    await system.locks["lock_01"].stop()
    system.lock_args["lock_01"] = list(args)
    await system.start_lock("lock_01")


async def _relay_live_token(system: System, held: HeldKey) -> None:
    """Transmit, at the door, the token the phone makes now under ``held``."""
    key = held.key
    frame = make_token(key, token_slot(key.header.issued_at, time.time()))
    async with Sniffer(system.site) as relay:
        await relay.replay(advertising_data(frame), seconds=1.0)


async def test_a_live_token_relayed_within_its_slot_opens_a_lock_without_a_floor(
    system: System,
) -> None:
    held = await GuestApp(system.site, "guest_01").obtain_key("lock_01")
    lock = system.locks["lock_01"]
    mark = len(lock.lines)
    await _relay_live_token(system, held)
    await lock.wait_for(r"UNLOCKED lock_01 for guest_01", after=mark)  # the known limit


async def test_the_rssi_floor_refuses_a_relayed_token_heard_too_faintly(system: System) -> None:
    await _restart_lock_with(system, "--min-rssi", str(VIRTUAL_RADIO_RSSI + 10))
    lock = system.locks["lock_01"]
    held = await GuestApp(system.site, "guest_01").obtain_key("lock_01")
    await _relay_live_token(system, held)
    refused = await lock.wait_for(r"Rejected advertisement .*weak_signal")
    assert f"heard at {VIRTUAL_RADIO_RSSI} dBm" in refused.string
    assert lock.count(r"UNLOCKED lock_01") == 0
    # a weak signal is distance, not a guess: it counts toward no lockout
    assert lock.count(r"INTRUSION") == 0


async def test_a_guest_heard_above_the_floor_gets_in(system: System) -> None:
    await _restart_lock_with(system, "--min-rssi", str(VIRTUAL_RADIO_RSSI - 10))
    guest = await run_guest(system.site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()
    await system.locks["lock_01"].wait_for(r"UNLOCKED lock_01 for guest_01")


async def test_a_floor_no_radio_can_report_is_refused_at_start(system: System) -> None:
    await system.locks["lock_01"].stop()
    system.lock_args["lock_01"] = ["--min-rssi", "30"]
    with pytest.raises(ChildFailed) as refused:  # it exits instead of scanning
        await system.start_lock("lock_01")
    message = str(refused.value)
    assert "--min-rssi must be between -127 and 20 dBm" in message, message
    assert "Traceback" not in message
    system.lock_args["lock_01"] = []
    await system.start_lock("lock_01")
