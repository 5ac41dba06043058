"""Forged tokens over the real BLE stack, and a captured advertisement replayed minutes later.

An attacker on the virtual air transmits, next to lock_01: every single-bit flip of a token the
guest's phone would make right now, the token with its MAC cut short, a token made for lock_02,
and -- after three (simulated) minutes -- an advertisement it recorded during a genuine unlock.
Nothing opens, each is refused with its reason, and the genuine token still opens afterwards.
The whole system runs on a simulated clock (libfaketime) so that "minutes later" takes no time.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest_asyncio

from smartlock.core.token import FRAME_BYTES, TokenFrame, advertising_data, make_token, token_slot
from smartlock.services.guest_app import GuestApp, HeldKey
from system_harness import SimulatedClock, Sniffer, System, run_guest, running_system

MINUTES_LATER_S = 180
FLIP_SECONDS = 0.08  # on the air per forged advertisement: a few advertising events


@pytest_asyncio.fixture(scope="module")
async def system(clock: SimulatedClock) -> AsyncIterator[System]:
    # every forgery counts as a failed attempt: no lockout may hide what each one gets
    async with running_system(max_failures=1000) as running:
        yield running


def _live_token(held: HeldKey) -> bytes:
    key = held.key
    return bytes(make_token(key, token_slot(key.header.issued_at, time.time())))


def _advertising_data(frame: bytes) -> bytes:
    """Advertising data carrying ``frame`` as it is (even broken or cut short), laid out as the
    guest app lays out a genuine token."""
    manufacturer = b"\xff\xff" + frame
    return bytes([2, 0x01, 0x06, len(manufacturer) + 1, 0xFF]) + manufacturer


async def _transmit(system: System, frames: list[bytes]) -> None:
    async with Sniffer(system.site) as attacker:
        for frame in frames:
            await attacker.replay(_advertising_data(frame), seconds=FLIP_SECONDS)


async def test_every_bit_flip_of_a_live_token_is_refused_and_the_genuine_one_opens(
    system: System,
) -> None:
    lock = system.locks["lock_01"]
    held = await GuestApp(system.site, "guest_01").obtain_key("lock_01")
    genuine = _live_token(held)
    assert _advertising_data(genuine) == advertising_data(TokenFrame.from_bytes(genuine))
    flipped = [
        bytes(genuine[:i] + bytes([genuine[i] ^ (1 << bit)]) + genuine[i + 1 :])
        for i in range(FRAME_BYTES)
        for bit in range(8)
    ]
    mark = len(lock.lines)
    await _transmit(system, flipped)
    rejected = [line for line in lock.lines[mark:] if "Rejected advertisement" in line]
    assert lock.count(r"UNLOCKED lock_01") == 0
    assert len(rejected) >= len(flipped) - 8, len(rejected)  # at most a few lost on the air
    reasons = {line.split(": ")[2].split(":")[0] for line in rejected}
    assert "bad_mac" in reasons, reasons
    assert reasons <= {"bad_mac", "malformed", "wrong_version", "unknown_key", "stale"}, reasons
    # the genuine token of the same moment still opens
    await _transmit(system, [_live_token(held)])
    await lock.wait_for(r"UNLOCKED lock_01 for guest_01", after=mark)


async def test_a_truncated_mac_and_a_token_for_another_lock_are_refused(system: System) -> None:
    lock = system.locks["lock_01"]
    held = await GuestApp(system.site, "guest_01").obtain_key("lock_01")
    other = await GuestApp(system.site, "guest_02").obtain_key("lock_02")
    mark = len(lock.lines)
    unlocks = lock.count(r"UNLOCKED lock_01")
    genuine = _live_token(held)
    await _transmit(system, [genuine[:-n] for n in (1, 8, 16)])
    await lock.wait_for(r"Rejected advertisement .*malformed", after=mark)
    await _transmit(system, [_live_token(other)])
    await lock.wait_for(r"Rejected advertisement .*unknown_key", after=mark)
    assert lock.count(r"UNLOCKED lock_01") == unlocks


async def test_an_advertisement_replayed_minutes_later_is_refused(
    system: System, clock: SimulatedClock
) -> None:
    lock = system.locks["lock_01"]
    async with Sniffer(system.site) as sniffer:
        guest = await run_guest(system.site, "lock_01", "guest_01")
        assert guest.returncode == 0, guest.output()
    captured = sniffer.captured[-1].data
    unlocks = lock.count(r"UNLOCKED lock_01")
    clock.advance(MINUTES_LATER_S)
    mark = len(lock.lines)
    async with Sniffer(system.site) as attacker:
        await attacker.replay(captured, seconds=1.0)
    refused = await lock.wait_for(r"Rejected advertisement .*(stale|replay|expired)", after=mark)
    assert "stale" in refused.string or "expired" in refused.string, refused.string
    assert lock.count(r"UNLOCKED lock_01") == unlocks
