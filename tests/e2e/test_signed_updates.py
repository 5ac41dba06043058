"""Signed updates end to end (issue "Updates that cannot be forged or rolled back"): real
broker, real radio, the lock under ``smartlock lock supervise``, bundles pushed with ``smartlock
update push`` and offered by the real backend over MQTT.

The tests run in order on one system: 0.2.0 is applied, a broken 0.3.0 is rolled back, older
and equal versions are refused, tampered and foreign bundles are refused by the CLI and by the
lock itself, and a download cut in the middle resumes where it stopped (and a truncated one is
never installed).  A valid guest opens the door after every step.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from smartlock import crypto
from smartlock.adapters.mqtt import MqttConnection
from smartlock.admin import open_store
from smartlock.core import topics
from smartlock.core.release import make_bundle, parse_version
from smartlock.core.update_transfer import CHUNK_BYTES, bundle_id, split_bundle
from smartlock.site import BACKEND_USER, Site, write_public
from system_harness import System, cli, cli_json, run_guest, running_system
from update_support import agent_wheel, signed_bundle

LOCK = "lock_01"
GUEST = "guest_01"
RELEASE_KEY = crypto.generate_private_key()
OTHER_KEY = crypto.generate_private_key()


def _trust_release_key(site: Site) -> None:
    write_public(site.release_public_path, crypto.public_key_to_pem(RELEASE_KEY.public_key()))


@pytest_asyncio.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    async with running_system(
        lock_verb="supervise",
        lock_args={LOCK: ["--grace-period", "20"]},
        prepare=_trust_release_key,
    ) as running:
        yield running


async def _guest_opens(system: System) -> None:
    guest = await run_guest(system.site, LOCK, GUEST)
    assert guest.returncode == 0, guest.output()


async def _push(system: System, bundle: bytes, tmp_path: Path, name: str) -> str:
    path = tmp_path / f"{name}.slu"
    path.write_bytes(bundle)
    pushed = await cli(system.site, "update", "push", str(path), "--lock", LOCK)
    assert pushed.returncode == 0, pushed.output()
    return "\n".join(pushed.stdout_lines)


async def _lock_status(system: System) -> dict[str, object]:
    rows = await cli_json(system.site, "status")
    [row] = [row for row in rows if row["lock"] == LOCK]
    assert isinstance(row, dict)
    return row


async def _update_audit(system: System) -> list[tuple[str, str]]:
    entries = await cli_json(system.site, "audit", "--lock", LOCK)
    return [(e["action"], e["reason"]) for e in entries if e["channel"] == "update"]


def _slots(system: System) -> dict[str, object]:
    raw = (system.site.identity_dir(LOCK) / "slots" / "slots.json").read_bytes()
    state = json.loads(raw)
    assert isinstance(state, dict)
    return state


async def test_a_signed_update_is_downloaded_installed_and_runs_after_a_healthy_trial(
    system: System, tmp_path: Path
) -> None:
    await _guest_opens(system)
    lock, mark = system.locks[LOCK], len(system.locks[LOCK].lines)
    said = await _push(system, signed_bundle(RELEASE_KEY, "0.2.0"), tmp_path, "v020")
    assert "Pushed update 0.2.0" in said
    await lock.wait_for(r"Downloading update 0\.2\.0 \(\d+ bytes in \d+ chunks\)", after=mark)
    await lock.wait_for(r"Installed update 0\.2\.0 into slot b", after=mark, timeout_s=30)
    await lock.wait_for(r"Supervisor: starting slot b \(0\.2\.0\) on trial", after=mark)
    await lock.wait_for(r"Supervisor: 0\.2\.0 reported healthy; slot b is active", after=mark)
    await system.backend.wait_for(rf"Lock {LOCK} update 0\.2\.0: healthy", timeout_s=30)
    await system.backend.wait_for(rf"Lock {LOCK} runs version 0\.2\.0")
    # the code that runs is the slot's: its __version__ is the release's
    slot_init = system.site.identity_dir(LOCK) / "slots" / "b" / "smartlock" / "__init__.py"
    assert '__version__ = "0.2.0"' in slot_init.read_text()
    assert _slots(system)["active"] == "b"
    assert _slots(system)["highest_installed"] == "0.2.0"
    await _guest_opens(system)
    status = await _lock_status(system)
    assert (status["software"], status["update"]) == ("0.2.0", "0.2.0 healthy")
    assert await _update_audit(system) == [
        ("downloading", "0.2.0"),
        ("installed", "0.2.0"),
        ("healthy", "0.2.0"),
    ]
    pushes = await cli_json(system.site, "audit", "--lock", LOCK)
    assert [e["reason"] for e in pushes if e["action"] == "update_push"] == [
        f"0.2.0 bundle {bundle_id((tmp_path / 'v020.slu').read_bytes())}"
    ]


async def test_a_new_version_that_fails_to_start_is_rolled_back_by_the_lock_itself(
    system: System, tmp_path: Path
) -> None:
    lock, mark = system.locks[LOCK], len(system.locks[LOCK].lines)
    await _push(system, signed_bundle(RELEASE_KEY, "0.3.0", broken=True), tmp_path, "v030")
    await lock.wait_for(r"Installed update 0\.3\.0 into slot a", after=mark, timeout_s=30)
    await lock.wait_for(r"this build of the lock agent cannot start", after=mark)
    await lock.wait_for(r"Supervisor: update 0\.3\.0 rolled back \(exited with code 1", after=mark)
    await lock.wait_for(r"Supervisor: starting slot b \(0\.2\.0\)", after=mark)
    await system.backend.wait_for(
        rf"Lock {LOCK} update 0\.3\.0: rolled_back \(exited\)", timeout_s=30
    )
    await _guest_opens(system)
    state = _slots(system)
    assert (state["active"], state["active_version"], state["trial"]) == ("b", "0.2.0", None)
    assert state["highest_installed"] == "0.3.0"  # a rolled-back version never comes back
    status = await _lock_status(system)
    assert (status["software"], status["update"]) == ("0.2.0", "0.3.0 rolled_back (exited)")
    assert (await _update_audit(system))[-3:] == [
        ("downloading", "0.3.0"),
        ("installed", "0.3.0"),
        ("rolled_back", "0.3.0 exited"),
    ]


@pytest.mark.parametrize(
    ("version", "why"),
    [("0.2.0", "equal to the running one"), ("0.3.0", "rolled back"), ("0.1.9", "older")],
)
async def test_an_older_equal_or_rolled_back_version_is_refused_before_any_download(
    system: System, tmp_path: Path, version: str, why: str
) -> None:
    lock, mark = system.locks[LOCK], len(system.locks[LOCK].lines)
    await _push(system, signed_bundle(RELEASE_KEY, version), tmp_path, f"old-{version}")
    escaped = version.replace(".", r"\.")
    await lock.wait_for(rf"Refused update {escaped} \(not_newer\)", after=mark, timeout_s=30)
    await system.backend.wait_for(rf"Lock {LOCK} update {escaped}: refused \(not_newer\)")
    assert not [line for line in lock.lines[mark:] if "Downloading update" in line], why
    assert (await _update_audit(system))[-1] == ("refused", f"{version} not_newer")
    assert _slots(system)["active_version"] == "0.2.0"
    await _guest_opens(system)


async def test_update_push_refuses_a_tampered_bundle_and_one_signed_by_another_key(
    system: System, tmp_path: Path
) -> None:
    tampered = bytearray(signed_bundle(RELEASE_KEY, "0.5.0"))
    tampered[-100] ^= 0x01  # one bit of the wheel
    foreign = signed_bundle(OTHER_KEY, "0.5.0")
    for name, data, reason in [
        ("tampered", tampered, "bad_hash"),
        ("foreign", foreign, "bad_signature"),
    ]:
        path = tmp_path / f"{name}.slu"
        path.write_bytes(bytes(data))
        pushed = await cli(system.site, "update", "push", str(path))
        assert pushed.returncode != 0
        assert f"refused ({reason})" in pushed.output()
        assert "Traceback" not in pushed.output()
    with open_store(system.site) as store:
        update = store.lock_update(LOCK)
    assert update is not None and update.version == "0.1.9"  # nothing new was pushed


async def test_the_lock_refuses_a_tampered_or_foreign_bundle_even_if_the_backend_offers_it(
    system: System,
) -> None:
    """A site directory or backend an attacker controls can offer anything: the lock checks the
    release signature (from the head, before fetching) and the signed hash (after)."""
    lock = system.locks[LOCK]
    tampered = bytearray(signed_bundle(RELEASE_KEY, "0.5.0"))
    tampered[-100] ^= 0x01
    foreign = signed_bundle(OTHER_KEY, "0.6.0")
    for data, version, reason in [
        (bytes(tampered), "0.5.0", "bad_hash"),
        (foreign, "0.6.0", "bad_signature"),
    ]:
        mark = len(lock.lines)
        name = bundle_id(data)
        write_public(system.site.bundle_path(name), data)  # past the CLI's own check
        with open_store(system.site) as store:
            store.push_update([LOCK], bundle_id=name, version=version, by="", now=0)
        escaped = version.replace(".", r"\.")
        await lock.wait_for(rf"Refused update {escaped} \({reason}\)", after=mark, timeout_s=30)
        fetched = [line for line in lock.lines[mark:] if "Downloading update" in line]
        assert bool(fetched) == (reason == "bad_hash")  # a forged head costs no download
        await system.backend.wait_for(rf"Lock {LOCK} update {escaped}: refused \({reason}\)")
    assert _slots(system)["active_version"] == "0.2.0"
    assert _slots(system)["trial"] is None
    await _guest_opens(system)


async def test_a_cut_download_resumes_where_it_stopped_and_a_truncated_one_is_never_installed(
    system: System,
) -> None:
    """The backend's part is played here (paused backend, its credentials) to stop the transfer
    after a few chunks; the payload itself is one byte short of what the release signed.  (The
    lock's reports of this bundle go to this stand-in, which reads none of them.)"""
    site, lock = system.site, system.locks[LOCK]
    whole = make_bundle(
        agent_wheel("0.7.0"), release_key=RELEASE_KEY, version=parse_version("0.7.0")
    )
    truncated = whole[:-1]
    offer, chunks = split_bundle(truncated)
    assert offer.chunk_count > 6 and offer.chunk_bytes == CHUNK_BYTES
    download = site.identity_dir(LOCK) / "download"
    async with (
        system.paused(BACKEND_USER),
        MqttConnection(site, site.credentials(BACKEND_USER)) as mqtt,
    ):
        mark = len(lock.lines)
        for chunk in chunks[:5]:
            await mqtt.publish(
                f"updates/{chunk.bundle_id}/{chunk.index}", bytes(chunk), retain=True
            )
        await mqtt.publish(topics.lock_topic(LOCK, "update"), bytes(offer), retain=True)
        await lock.wait_for(r"Downloading update 0\.7\.0", after=mark, timeout_s=20)
        await lock.wait_for(rf"Update download: 5 of {offer.chunk_count} chunks", after=mark)
        assert {path.name for path in download.glob("*.chunk")} == {f"{i}.chunk" for i in range(5)}
        await lock.stop()  # the lock restarts in the middle of the download
        mark = len(lock.lines)
        lock = await system.start_lock(LOCK)
        await lock.wait_for(
            rf"Resuming the update download: 5 of {offer.chunk_count} chunks already here",
            timeout_s=20,
        )
        for chunk in chunks[5:]:
            await mqtt.publish(
                f"updates/{chunk.bundle_id}/{chunk.index}", bytes(chunk), retain=True
            )
        await lock.wait_for(r"Refused update 0\.7\.0 \(bad_hash\)", timeout_s=20)
        await mqtt.publish(topics.lock_topic(LOCK, "update"), b"", retain=True)
        for chunk in chunks:
            await mqtt.publish(f"updates/{chunk.bundle_id}/{chunk.index}", b"", retain=True)
    assert not list(download.glob("*.chunk"))
    assert _slots(system)["active_version"] == "0.2.0"
    assert _slots(system)["trial"] is None
    await _guest_opens(system)
