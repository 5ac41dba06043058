"""``smartlock rotate broker-cert`` on a running site: the broker switches to the new
certificate at once, no lock or backend connection drops, and new connections (a guest opening
the door) get the new certificate."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import AsyncIterator

import pytest_asyncio
from cryptography import x509

from system_harness import System, cli, run_guest, running_system


@pytest_asyncio.fixture(scope="module")
async def system() -> AsyncIterator[System]:
    async with running_system() as running:
        yield running


def _served_serial(system: System) -> int:
    """The serial of the certificate the broker shows a new TLS connection (verified)."""
    context = ssl.create_default_context(cafile=str(system.site.ca_cert))
    with socket.create_connection((system.site.broker_host, system.site.broker_port), 5) as raw:
        with context.wrap_socket(raw, server_hostname=system.site.broker_host) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_a_rotated_broker_certificate_is_served_at_once_and_nobody_is_dropped(
    system: System,
) -> None:
    before = await asyncio.to_thread(_served_serial, system)
    marks = {lock_id: len(child.lines) for lock_id, child in system.locks.items()}
    backend_mark = len(system.backend.lines)

    child = await cli(system.site, "rotate", "broker-cert")
    assert child.returncode == 0, child.output()
    assert "no connection dropped" in child.output()
    serial = int(re.search(r"serial ([0-9a-f]+)", child.output()).group(1), 16)  # type: ignore[union-attr]
    assert serial != before

    async with asyncio.timeout(10):  # SIGHUP is asynchronous: the broker reloads very soon
        while await asyncio.to_thread(_served_serial, system) != serial:  # noqa: ASYNC110 -- another process: nothing to wait on but its answers
            await asyncio.sleep(0.1)

    guest = await run_guest(system.site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()
    for lock_id, child_lock in system.locks.items():
        new_lines = child_lock.lines[marks[lock_id] :]
        assert not [line for line in new_lines if "Subscribed to" in line], lock_id  # no reconnect
    backend_lines = system.backend.lines[backend_mark:]
    assert not [line for line in backend_lines if "Backend listening" in line]
    assert not [line for line in backend_lines if "is OFFLINE" in line]

    doctor = await cli(system.site, "doctor")
    assert "✓ broker certificate" in doctor.output(), doctor.output()
