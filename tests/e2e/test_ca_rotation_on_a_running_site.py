"""``smartlock rotate ca`` and ``rotate ca --finish`` on a running site: during the overlap a
lock that restarts and a guest that opens the door connect as before; after the finish the
broker shows a certificate from the new CA, nobody who was connected drops, new connections
verify against the new CA, and a client that trusts only the old CA is refused."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography import x509

from system_harness import (
    System,
    cli,
    copy_for_device,
    run_guest,
    run_guest_on_device,
    running_system,
)


@pytest_asyncio.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    async with running_system() as running:
        for lock_id in running.site.locks:
            await running.backend.wait_for(rf"Lock {lock_id} is online")
        yield running


def _served(system: System, ca_pem: bytes) -> x509.Certificate:
    """The certificate the broker shows a new TLS connection that trusts ``ca_pem`` only."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    with socket.create_connection((system.site.broker_host, system.site.broker_port), 5) as raw:
        with context.wrap_socket(raw, server_hostname=system.site.broker_host) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


async def _restart_lock(system: System, lock_id: str) -> None:
    mark = len(system.backend.lines)
    await system.locks[lock_id].stop()
    await system.start_lock(lock_id)  # returns once it is subscribed: it connected
    await system.backend.wait_for(rf"Lock {lock_id} is online", after=mark, timeout_s=10)


def _key_lines(pem: bytes) -> list[str]:
    return [line for line in pem.decode().splitlines() if "PRIVATE KEY" not in line]


async def test_the_ca_rotates_with_an_overlap_and_nobody_is_dropped(
    system: System, tmp_path: Path
) -> None:
    site = system.site
    phone = copy_for_device(site, tmp_path / "phone", "guest_01")  # keeps its own ca.crt
    old_ca = site.ca_cert.read_bytes()
    old_key = site.ca_key.read_bytes()
    before = await asyncio.to_thread(_served, system, old_ca)
    lock_mark = len(system.locks["lock_01"].lines)
    backend_mark = len(system.backend.lines)

    # --- start: ca.crt trusts both, the broker still shows its certificate from the old CA
    started = await cli(site, "rotate", "ca")
    assert started.returncode == 0, started.output()
    assert f"need the new bundle before you finish: {site.ca_cert}" in started.output()
    assert len(x509.load_pem_x509_certificates(site.ca_cert.read_bytes())) == 2
    next_key = site.next_ca_key.read_bytes()
    assert await asyncio.to_thread(_served, system, old_ca) == before

    await _restart_lock(system, "lock_02")  # connects trusting the bundle
    guest = await run_guest(site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()
    # a device with its own copy learns the bundle from the backend's signed CA notice
    device = await run_guest_on_device(site, phone, "lock_01", "guest_01")
    assert device.returncode == 0, device.output()
    assert "Trust: now trusts 2 site CA certificate(s)" in device.output()
    assert (phone / "ca.crt").read_bytes() == site.ca_cert.read_bytes()

    # --- finish: the broker's certificate comes from the new CA; ca.crt trusts it alone
    lock_02_mark = len(system.locks["lock_02"].lines)
    finished = await cli(site, "rotate", "ca", "--finish")
    assert finished.returncode == 0, finished.output()
    assert "no connection dropped" in finished.output()
    new_ca = site.ca_cert.read_bytes()
    (new_ca_cert,) = x509.load_pem_x509_certificates(new_ca)
    serial = int(
        re.search(r"broker certificate \(serial ([0-9a-f]+)\)", finished.output()).group(1), 16
    )  # type: ignore[union-attr]
    served = await asyncio.to_thread(_served, system, new_ca)  # at once: finish waited for it
    assert served.serial_number == serial
    served.verify_directly_issued_by(new_ca_cert)

    # nobody who was connected dropped: no lock subscribed again, the backend did not reconnect
    assert not [
        line for line in system.locks["lock_01"].lines[lock_mark:] if "Subscribed to" in line
    ]
    assert not [
        line for line in system.locks["lock_02"].lines[lock_02_mark:] if "Subscribed to" in line
    ]
    backend_lines = system.backend.lines[backend_mark:]
    assert not [line for line in backend_lines if "Backend listening" in line]
    assert not [line for line in backend_lines if "Lock lock_01 is OFFLINE" in line]

    # new connections: a restarted lock and another guest, against the new CA alone
    await _restart_lock(system, "lock_02")
    guest = await run_guest(site, "lock_02", "guest_02")
    assert guest.returncode == 0, guest.output()

    # the device connects with the bundle it learned, and is told the new CA alone
    device = await run_guest_on_device(site, phone, "lock_01", "guest_01")
    assert device.returncode == 0, device.output()
    assert "Trust: now trusts 1 site CA certificate(s)" in device.output()
    assert (phone / "ca.crt").read_bytes() == site.ca_cert.read_bytes()

    # a client that still trusts only the old CA is refused
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await asyncio.to_thread(_served, system, old_ca)

    doctor = await cli(site, "doctor")
    assert doctor.returncode == 0, doctor.output()
    assert "✓ CA certificate: valid until" in doctor.output()

    for child in (started, finished, doctor):  # no CA key in any output
        for key in (old_key, next_key):
            assert not [line for line in _key_lines(key) if line in child.output()]
