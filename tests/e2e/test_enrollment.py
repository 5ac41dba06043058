"""A guest joins by invitation: the owner's one-time code (text and QR), the guest's own key pair
made on the guest's device, the broker account it receives -- and a door that opens for it.

The dashboard runs in the backend (``--http``); the guest's device is a directory of its own
that holds nothing of the site but what enrollment gave it."""

from __future__ import annotations

import asyncio
import re
import shutil
import stat
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from smartlock import crypto
from smartlock.adapters.mqtt import BrokerUnavailable, MqttConnection
from smartlock.adapters.processes import Child
from smartlock.admin import open_store
from smartlock.core.invitation import InvitationCode
from smartlock.site import Credentials, Site
from system_harness import System, cli, running_system

GUEST = "guest_01"  # pass 1, on lock_01


@pytest_asyncio.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    async with running_system(backend_args=["--http", "127.0.0.1:0"]) as running:
        yield running


async def _invite(system: System, pass_id: int, png: Path | None = None) -> str:
    args = ["pass", "invite", str(pass_id), "--url", str(system.dashboard_url)]
    if png is not None:
        args += ["--png", str(png)]
    child = await cli(system.site, *args)
    assert child.returncode == 0, child.output()
    found = re.search(r"(SLI1\.[A-Za-z0-9_-]+)", child.output())
    assert found, child.output()
    return found.group(1)


async def _enroll(invitation: str, directory: Path) -> Child:
    child = Child.smartlock("enroll", "guest", "enroll", invitation, "--dir", str(directory))
    await child.start()
    await child.wait(timeout_s=30)
    return child


async def test_a_guest_enrolls_by_invitation_and_opens_with_a_key_made_on_its_device(
    system: System, tmp_path: Path
) -> None:
    site = system.site
    old_password = site.credentials(GUEST).password
    qr = tmp_path / "invitation.png"
    invitation = await _invite(system, 1, qr)
    assert qr.read_bytes().startswith(b"\x89PNG")
    parsed = InvitationCode.parse(invitation)
    assert (parsed.guest, parsed.url) == (GUEST, system.dashboard_url)

    device = tmp_path / "phone"
    child = await _enroll(invitation, device)
    assert child.returncode == 0, child.output()
    assert f"Enrolled as {GUEST}" in child.output()

    # the private key exists only on the device; the site holds the matching public key
    phone = Site.load(device)
    key_file = phone.private_key_path(GUEST)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    device_public = crypto.public_key_to_pem(phone.private_key(GUEST).public_key())
    assert Site.load(site.root).public_key_path(GUEST).read_bytes() == device_public
    assert not Site.load(site.root).private_key_path(GUEST).exists()
    assert phone.ca_cert.read_bytes() == site.ca_cert.read_bytes()

    # the site's old password for the guest is dead, the new one works
    with pytest.raises(BrokerUnavailable):
        async with MqttConnection(site, Credentials(GUEST, old_password)):
            pass
    async with MqttConnection(phone, phone.credentials(GUEST)):
        pass

    # and the door opens for the enrolled device (the radio is the site's virtual one)
    guest = Child.smartlock(
        "phone",
        "guest",
        "unlock",
        "lock_01",
        "--id",
        GUEST,
        "--site",
        str(device),
        "--radio",
        site.virtual_radio(GUEST),
        "--timeout",
        "15",
    )
    await guest.start()
    await guest.wait(timeout_s=30)
    assert guest.returncode == 0, guest.output()
    await system.backend.wait_for(rf"Access event: lock_01 unlock for {GUEST}")

    with open_store(site) as store:
        entries = store.audit_entries(who=GUEST)
    actions = [(e.record.channel, e.record.action, e.record.result) for e in entries]
    assert ("admin", "invite", "info") in actions
    assert ("web", "enroll", "granted") in actions


async def test_an_invitation_works_once(system: System, tmp_path: Path) -> None:
    invitation = await _invite(system, 2)
    first = await _enroll(invitation, tmp_path / "first")
    assert first.returncode == 0, first.output()
    again = await _enroll(invitation, tmp_path / "second")
    assert again.returncode == 2
    assert "already used" in again.output()
    assert "Traceback" not in again.output()
    assert not (tmp_path / "second").exists()


async def test_an_expired_or_forged_invitation_is_refused_with_a_clear_message(
    system: System, tmp_path: Path
) -> None:
    invitation = InvitationCode.parse(await _invite(system, 2))
    forged = InvitationCode(
        invitation.site, invitation.guest, invitation.url, "A" * 22, invitation.ca_sha256
    )
    child = await _enroll(str(forged), tmp_path / "forged")
    assert child.returncode == 2
    assert "unknown invitation code" in child.output()

    with open_store(system.site) as store:  # an invitation whose time ran out
        code = "expired-code-0123456789"
        now = int(time.time())
        store.create_invitation(
            crypto.token_digest(code), 2, created_by="test", now=now - 120, expires_at=now - 60
        )
    expired = InvitationCode(
        invitation.site, invitation.guest, invitation.url, code, invitation.ca_sha256
    )
    child = await _enroll(str(expired), tmp_path / "expired")
    assert child.returncode == 2
    assert "expired" in child.output()

    child = await _enroll("SLI1.not-base64!", tmp_path / "garbage")
    assert child.returncode == 2
    assert "damaged" in child.output()
    assert "Traceback" not in child.output()


async def test_a_site_that_shows_another_ca_is_not_trusted(system: System, tmp_path: Path) -> None:
    invitation = InvitationCode.parse(await _invite(system, 2))
    other_ca = InvitationCode(
        invitation.site, invitation.guest, invitation.url, invitation.code, "0" * 64
    )
    child = await _enroll(str(other_ca), tmp_path / "mitm")
    assert child.returncode == 2
    assert "does not match the invitation" in child.output()
    assert not (tmp_path / "mitm").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)


async def test_metrics_count_what_the_backend_did(system: System) -> None:
    """``/metrics`` of the running backend, after the door opened above: Prometheus text."""

    def scrape() -> str:
        with urllib.request.urlopen(f"{system.dashboard_url}/metrics", timeout=10) as response:
            return response.read().decode()

    text = await asyncio.to_thread(scrape)
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values['smartlock_access_attempts_total{channel="ble",result="granted"}'] >= 2
    assert values["smartlock_key_issuance_seconds_count"] >= 1
    assert values["smartlock_locks_online"] == 2
    assert values["smartlock_locks"] == 2
    assert values['smartlock_rejected_messages_total{reason="replay"}'] >= 0  # every reason listed
    assert "guest_01" not in text  # counts only: no user names
