"""Forged, altered, replayed and downgraded backend messages at the lock.

The attacker holds the backend's broker password but none of its keys (or is the broker): it
publishes on ``locks/lock_01/commands``, ``locks/lock_01/revocations``, ``locks/lock_01/session``
and ``locks/lock_01/command_key`` as the backend while the real one is paused.  The lock must
refuse everything that is not made with the backend's pinned key (or the lock's command key),
that was already used, that is too old, or that is of an older protocol version -- and the door
must not move.  (Forged key deliveries: test_forged_key_delivery.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

from smartlock import crypto
from smartlock.adapters.mqtt import MqttConnection
from smartlock.admin import open_store
from smartlock.core.commands import (
    LABEL_COMMAND_KEY_DELIVERY,
    LABEL_LOCK_COMMAND,
    command_key,
    make_command_key_delivery,
    seal_lock_command,
)
from smartlock.core.issuance import issue_session_key
from smartlock.core.messages import (
    ID_BYTES,
    PROTOCOL_VERSION,
    Action,
    MessageType,
    SessionRequest,
)
from smartlock.core.revocation import make_revocation_list
from smartlock.core.wire import Writer
from smartlock.services.guest_app import GuestApp
from smartlock.site import BACKEND_USER, Site
from system_harness import OWNER, System, cli, cli_json, collect, run_guest

LOCK = "lock_01"
COMMANDS = f"locks/{LOCK}/commands"
REVOCATIONS = f"locks/{LOCK}/revocations"
UNLOCKED = rf"UNLOCKED {LOCK}"
REMOTE_UNLOCKED = rf"UNLOCKED {LOCK} for remote command"


@contextlib.asynccontextmanager
async def as_backend(system: System) -> AsyncIterator[MqttConnection]:
    """A broker session with the backend's credentials (the real backend is paused)."""
    site = system.site
    async with (
        system.paused(BACKEND_USER),
        MqttConnection(site, site.credentials(BACKEND_USER)) as mqtt,
    ):
        yield mqtt


def real_command_key(site: Site, lock_id: str) -> tuple[bytes, int]:
    """The lock's command key and epoch, derived as the backend does (master key file, store)."""
    with open_store(site) as store:
        lock = store.get_lock(lock_id)
    assert lock is not None
    master = site.secret(site.command_master_key_path)
    return command_key(master, lock_id, lock.command_epoch), lock.command_epoch


def genuine_command(
    site: Site, *, action: Action = Action.UNLOCK, at: float | None = None
) -> bytes:
    key, epoch = real_command_key(site, LOCK)
    payload, _ = seal_lock_command(
        key=key,
        lock_id=LOCK,
        epoch=epoch,
        action=action,
        now=time.time() if at is None else at,
        random_bytes=crypto.random_bytes,
    )
    return payload


def applied_revocation_version(site: Site, lock_id: str) -> int:
    """The revocation list version the lock holds, from its durable state."""
    state = json.loads((site.identity_dir(lock_id) / "state.json").read_bytes())
    return int(json.loads(state["verifier"])["revocation_version"])


async def until(condition: Callable[[], bool], *, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 -- a log offers no event to wait on
            await asyncio.sleep(0.05)


async def owner_unlocks_remotely(system: System) -> None:
    """The genuine path: the owner's remote unlock through the real backend still works."""
    lock = system.locks[LOCK]
    before = lock.count(REMOTE_UNLOCKED)
    answer = await cli_json(system.site, "remote", "unlock", LOCK, "--id", OWNER)
    assert answer["result"] == "done", answer
    assert lock.count(REMOTE_UNLOCKED) == before + 1


async def test_command_sealed_under_another_key_is_refused_as_bad_mac(system: System) -> None:
    """A random key, and lock_02's real key (a broker relaying lock_02's command to lock_01)."""
    lock = system.locks[LOCK]
    _, epoch = real_command_key(system.site, LOCK)
    other_key, other_epoch = real_command_key(system.site, "lock_02")
    before, mark = lock.count(UNLOCKED), len(lock.lines)
    async with as_backend(system) as mqtt:
        forged = [
            seal_lock_command(
                key=key,
                lock_id=lock_id,
                epoch=key_epoch,
                action=Action.UNLOCK,
                now=time.time(),
                random_bytes=crypto.random_bytes,
            )[0]
            for key, lock_id, key_epoch in (
                (crypto.random_bytes(32), LOCK, epoch),
                (other_key, "lock_02", other_epoch),
            )
        ]
        for payload in forged:
            await mqtt.publish(COMMANDS, payload)

        def refused() -> list[str]:
            return [line for line in lock.lines[mark:] if "Rejected remote command" in line]

        await until(lambda: len(refused()) >= 2)
    assert len(refused()) == 2
    assert all("Rejected remote command: bad_mac" in line for line in refused())
    assert lock.count(UNLOCKED) == before
    await owner_unlocks_remotely(system)


async def test_genuine_command_acts_once_and_its_replay_is_refused_even_after_a_restart(
    system: System,
) -> None:
    lock = system.locks[LOCK]
    before, mark = lock.count(UNLOCKED), len(lock.lines)
    async with as_backend(system) as mqtt:
        command = genuine_command(system.site)  # made now: the pause took some of its window
        await mqtt.publish(COMMANDS, command)
        await lock.wait_for(REMOTE_UNLOCKED, after=mark)  # the path is real: it opens once
        await mqtt.publish(COMMANDS, command)
        await lock.wait_for(r"Rejected remote command: replay", after=mark)
        assert lock.count(UNLOCKED) == before + 1
        # the spent nonce is on disk: a restarted lock refuses the replay too
        await lock.stop()
        lock = await system.start_lock(LOCK)
        await mqtt.publish(COMMANDS, command)
        await lock.wait_for(r"Rejected remote command: replay")
    assert lock.count(UNLOCKED) == 0  # the restarted lock never opened


async def test_every_single_bit_flip_of_a_genuine_command_is_refused(system: System) -> None:
    lock = system.locks[LOCK]
    # header: version (1), type (1), epoch (2); then nonce (12) and the AEAD (5 + 16)
    expected = Counter({"wrong_version": 8, "wrong_type": 8, "unknown_key": 16, "bad_mac": 264})
    before, mark = lock.count(UNLOCKED), len(lock.lines)
    pattern = r"Rejected remote command: (\w+)"

    def refusals() -> Counter[str]:
        return Counter(
            match.group(1) for line in lock.lines[mark:] if (match := re.search(pattern, line))
        )

    async with as_backend(system) as mqtt:
        command = genuine_command(system.site)
        assert len(command) == 37
        flipped = [
            command[:index] + bytes([command[index] ^ (1 << bit)]) + command[index + 1 :]
            for index in range(len(command))
            for bit in range(8)
        ]
        started = time.monotonic()
        for payload in flipped:
            await mqtt.publish(COMMANDS, payload)
        await until(lambda: refusals().total() >= len(flipped), timeout_s=60)
        print(f"{len(flipped)} flipped commands refused in {time.monotonic() - started:.1f} s")
        assert refusals() == expected
        assert lock.count(UNLOCKED) == before
        # the original, still unused and within the window, opens: the flips were refused for
        # their flip alone
        await mqtt.publish(COMMANDS, command)
        await lock.wait_for(REMOTE_UNLOCKED, after=mark)
    assert lock.count(UNLOCKED) == before + 1


async def test_command_outside_the_time_window_is_refused(system: System) -> None:
    lock = system.locks[LOCK]
    window = system.site.command_window_s
    before, mark = lock.count(UNLOCKED), len(lock.lines)
    async with as_backend(system) as mqtt:
        # made here, not before the pause: a command only grows older on its way, and one
        # from the future falls into the window if it waits long enough (so 20 s of margin)
        stale = genuine_command(system.site, at=time.time() - window - 1)
        future = genuine_command(system.site, at=time.time() + window + 20)
        await mqtt.publish(COMMANDS, stale)
        await lock.wait_for(r"Rejected remote command: stale", after=mark)
        await mqtt.publish(COMMANDS, future)
        await lock.wait_for(r"Rejected remote command: not_yet_valid", after=mark)
    assert lock.count(UNLOCKED) == before
    await owner_unlocks_remotely(system)


async def test_revocation_list_signed_by_another_key_is_refused_and_the_version_stays(
    system: System,
) -> None:
    lock = system.locks[LOCK]
    version = applied_revocation_version(system.site, LOCK)
    with open_store(system.site) as store:
        pass_id = store.list_passes(guest="guest_01", lock_id=LOCK, now=0)[0].pass_id
    # a list that would revoke the guest's pass and lock the owner out, far ahead in version
    forged = make_revocation_list(
        version=version + 1000,
        lock_id=LOCK,
        pass_ids=[pass_id],
        users=[(OWNER, int(time.time()) + 3600)],
        now=time.time(),
        backend_key=crypto.generate_private_key(),
    )
    mark = len(lock.lines)
    async with as_backend(system) as mqtt:
        await mqtt.publish(REVOCATIONS, bytes(forged), retain=True)
        await lock.wait_for(r"Rejected revocation list: bad_signature", after=mark)
    assert not [line for line in lock.lines[mark:] if "Applied revocation list" in line]
    assert applied_revocation_version(system.site, LOCK) == version
    guest = await run_guest(system.site, LOCK, "guest_01")
    assert guest.returncode == 0, guest.output()
    await owner_unlocks_remotely(system)


async def test_older_revocation_list_republished_retained_is_refused_as_a_rollback(
    system: System,
) -> None:
    site = system.site
    # guest_03 gets a pass for lock_01 and a key under it
    granted = await cli(site, "pass", "grant", "guest_03", LOCK, "--until", "+1h")
    assert granted.returncode == 0, granted.output()
    held = await GuestApp(site, "guest_03").obtain_key(LOCK)
    # capture the current retained list as the lock receives it
    async with system.paused(LOCK), MqttConnection(site, site.credentials(LOCK)) as as_lock:
        await as_lock.subscribe(REVOCATIONS)
        retained = await collect(as_lock, 1.0)
    assert len(retained) == 1
    old_list = retained[0].payload
    old_version = applied_revocation_version(site, LOCK)
    # the pass is revoked: the version moves and the held key is dropped
    lock = system.locks[LOCK]
    mark = len(lock.lines)
    with open_store(site) as store:
        pass_id = store.list_passes(guest="guest_03", lock_id=LOCK, now=0)[0].pass_id
    revoked = await cli(site, "pass", "revoke", str(pass_id))
    assert revoked.returncode == 0, revoked.output()
    await lock.wait_for(r"Applied revocation list v\d+: 1 passes .* 1 keys dropped", after=mark)
    new_version = applied_revocation_version(site, LOCK)
    assert new_version > old_version
    # the broker (or the backend's password) replays the old list, retained
    mark = len(lock.lines)
    async with as_backend(system) as mqtt:
        await mqtt.publish(REVOCATIONS, old_list, retain=True)
        await lock.wait_for(r"Rejected revocation list: replay", after=mark)
        # a lock that reconnects now receives the old list first: refused again
        await lock.stop()
        lock = await system.start_lock(LOCK)
        await lock.wait_for(r"Rejected revocation list: replay")
        assert applied_revocation_version(site, LOCK) == new_version
        advertised = await GuestApp(site, "guest_03").advertise_held_key(held, seconds=2.5)
        assert advertised >= 1
        await lock.wait_for(r"Rejected advertisement .*pass_revoked")
    assert lock.count(r"UNLOCKED lock_01 for guest_03") == 0
    assert applied_revocation_version(site, LOCK) == new_version
    guest = await run_guest(site, LOCK, "guest_01")  # another guest's pass still works
    assert guest.returncode == 0, guest.output()


def previous_version_command(site: Site) -> bytes:
    """A command made under protocol version N-1 from end to end: header and associated data."""
    old = PROTOCOL_VERSION - 1
    key, epoch = real_command_key(site, LOCK)
    nonce = crypto.random_bytes(crypto.NONCE_BYTES)
    associated = (
        Writer()
        .raw(LABEL_LOCK_COMMAND)
        .u8(0)
        .u8(old)
        .u8(MessageType.LOCK_COMMAND)
        .text(LOCK)
        .u16(epoch)
        .getvalue()
    )
    plaintext = Writer().u32(int(time.time())).u8(Action.UNLOCK).getvalue()
    sealed = crypto.seal(key, nonce, plaintext, associated)
    return (
        Writer().u8(old).u8(MessageType.LOCK_COMMAND).u16(epoch).raw(nonce).raw(sealed).getvalue()
    )


def previous_version_command_key(site: Site) -> bytes:
    """A command key delivery of the next epoch, signed by the real backend key over N-1."""
    _, epoch = real_command_key(site, LOCK)
    backend_key = site.private_key(BACKEND_USER)
    delivery = make_command_key_delivery(
        master=crypto.random_bytes(32),
        lock_id=LOCK,
        epoch=epoch + 1,
        now=time.time(),
        lock_public=site.public_key(LOCK),
        backend_key=backend_key,
    )
    signed = bytearray(delivery.signed_bytes())
    version_at = len(LABEL_COMMAND_KEY_DELIVERY) + 1  # label, 0x00, version
    signed[version_at] = PROTOCOL_VERSION - 1
    payload = bytearray(bytes(delivery))
    payload[0] = PROTOCOL_VERSION - 1
    signature = crypto.sign(backend_key, bytes(signed))
    return bytes(payload[: -len(signature)]) + signature


def previous_version_key_delivery(site: Site) -> bytes:
    now = time.time()
    issuance = issue_session_key(
        request=SessionRequest(crypto.random_bytes(ID_BYTES), int(now), LOCK),
        guest_id="guest_03",
        now=now,
        ttl_s=300,
        backend_key=site.private_key(BACKEND_USER),
        lock_public=site.public_key(LOCK),
        guest_public=site.public_key("guest_03"),
        random_bytes=crypto.random_bytes,
    )
    payload = bytearray(bytes(issuance.lock_delivery))
    payload[0] = PROTOCOL_VERSION - 1
    return bytes(payload)


async def test_messages_of_the_previous_protocol_version_are_refused(system: System) -> None:
    site = system.site
    lock = system.locks[LOCK]
    command = previous_version_command(site)
    key_delivery = previous_version_key_delivery(site)
    command_key_delivery = previous_version_command_key(site)
    old = PROTOCOL_VERSION - 1
    assert command[0] == key_delivery[0] == command_key_delivery[0] == old
    before, mark = lock.count(UNLOCKED), len(lock.lines)
    async with as_backend(system) as mqtt:
        await mqtt.publish(COMMANDS, command)
        await lock.wait_for(rf"Rejected remote command: wrong_version: version {old}", after=mark)
        await mqtt.publish(f"locks/{LOCK}/session", key_delivery)
        await lock.wait_for(rf"Rejected key delivery .*: wrong_version: version {old}", after=mark)
        await mqtt.publish(f"locks/{LOCK}/command_key", command_key_delivery)
        await lock.wait_for(rf"Rejected command key: wrong_version: version {old}", after=mark)
    assert lock.count(UNLOCKED) == before
    assert not [line for line in lock.lines[mark:] if "Received session key" in line]
    assert not [line for line in lock.lines[mark:] if "Installed command key" in line]
    await owner_unlocks_remotely(system)  # the lock still holds the current command key
