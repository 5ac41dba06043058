"""The broker as users get it: TLS only, no anonymous clients, passwords, least privilege."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import shutil
import socket
import ssl

import aiomqtt
import pytest

from smartlock.adapters.mqtt import BrokerUnavailable, MqttConnection, close_refused_socket
from smartlock.broker import client_tls_context
from smartlock.core import topics
from smartlock.site import Credentials
from system_harness import System, collect, new_site_dir, provision, run_guest


async def test_wrong_password_is_refused(system: System) -> None:
    wrong = Credentials("guest_01", "not-the-password")
    with pytest.raises(BrokerUnavailable, match="not authorized"):
        async with MqttConnection(system.site, wrong):
            pass


async def test_empty_password_is_refused(system: System) -> None:
    with pytest.raises(BrokerUnavailable, match="not authorized"):
        async with MqttConnection(system.site, Credentials("guest_01", "")):
            pass


async def test_anonymous_client_is_refused(system: System) -> None:
    site = system.site
    client = aiomqtt.Client(
        site.broker_host,
        site.broker_port,
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=client_tls_context(site),
    )
    try:
        with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed"):
            async with client:
                pass
    finally:
        close_refused_socket(client)


# paho 2.2 does not close the TLS socket whose handshake failed; it is finalised here by gc.
@pytest.mark.filterwarnings("ignore:Exception ignored in.*SSLSocket")
async def test_client_trusting_another_ca_refuses_the_broker(system: System) -> None:
    other_root = new_site_dir()
    try:
        other = provision(other_root)
        pointed_at_ours = dataclasses.replace(other, broker_port=system.site.broker_port)
        with pytest.raises(BrokerUnavailable, match="not signed by the site CA"):
            async with MqttConnection(pointed_at_ours, other.credentials("guest_01")):
                pass
        gc.collect()
    finally:
        shutil.rmtree(other_root, ignore_errors=True)


def test_broker_certificate_is_checked_against_the_host_name(system: System) -> None:
    site = system.site
    context = client_tls_context(site)
    with socket.create_connection((site.broker_host, site.broker_port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|doesn.t match"):
            context.wrap_socket(raw, server_hostname="not-the-broker.example")


async def test_plain_mqtt_to_the_tls_port_is_refused(system: System) -> None:
    site = system.site
    password = site.credentials("guest_01").password
    client = aiomqtt.Client(
        site.broker_host, site.broker_port, username="guest_01", password=password, timeout=3
    )
    try:
        with pytest.raises(aiomqtt.MqttError):
            async with client:
                pass
    finally:
        close_refused_socket(client)


async def test_other_clients_cannot_read_the_guests_key(system: System) -> None:
    """Two other guests subscribe to everything; guest_01 then gets a key.

    (A lock's credentials cannot be borrowed for this while that lock runs: the broker allows
    one session per user, see test_a_client_cannot_take_over_another_users_session.)
    """
    site = system.site
    async with (
        MqttConnection(site, site.credentials("guest_02")) as spy_guest,
        MqttConnection(site, site.credentials("guest_03")) as spy_other,
    ):
        for spy in (spy_guest, spy_other):
            for topic in (
                "#",
                "users/guest_01/#",
                "users/owner/alerts",
                "locks/lock_01/#",  # incl. the retained command key and revocation list
                "locks/+/commands",
                "backend/#",
                "users/+/session",
                "users/+/replies",
            ):
                await spy.subscribe(topic)
        guest_task = asyncio.create_task(run_guest(site, "lock_01", "guest_01"))
        seen_by_guest, seen_by_other = await asyncio.gather(
            collect(spy_guest, 6.0), collect(spy_other, 6.0)
        )
        guest = await guest_task
    assert guest.returncode == 0, guest.output()
    # all each spy gets is its own retained trust notices (public, signed: see the CA notice)
    assert [m.topic for m in seen_by_guest if m.topic not in _own("guest_02")] == []
    assert [m.topic for m in seen_by_other if m.topic not in _own("guest_03")] == []


def _own(user: str) -> tuple[str, ...]:
    return topics.user_trust_topics(user)


async def test_guest_cannot_publish_to_a_lock(system: System) -> None:
    site = system.site
    lock = system.locks["lock_01"]
    mark = len(lock.lines)
    async with MqttConnection(site, site.credentials("guest_02")) as mqtt:
        await mqtt.publish("locks/lock_01/session", b"\x01\x02 forged by guest_02")
    # The broker delivers in order: had it passed the forgery on, the lock would refuse it
    # before the genuine delivery that this unlock makes it receive.
    guest = await run_guest(site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()
    await lock.wait_for(r"Received session key", after=mark)
    assert not any("Rejected key delivery" in line for line in lock.lines[mark:])


async def test_a_client_cannot_take_over_another_users_session(system: System) -> None:
    site = system.site
    lock = system.locks["lock_01"]
    mark, broker_mark = len(lock.lines), len(system.broker.lines)
    client = aiomqtt.Client(
        site.broker_host,
        site.broker_port,
        username="guest_02",
        password=site.credentials("guest_02").password,
        identifier="lock_01",
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=client_tls_context(site),
    )
    async with client:
        await asyncio.sleep(0.5)
    await system.broker.wait_for(r"as guest_02 ", after=broker_mark)
    assert not any(
        "lock_01 already connected" in line for line in system.broker.lines[broker_mark:]
    )
    assert not any("lost the broker" in line for line in lock.lines[mark:])
    guest = await run_guest(site, "lock_01", "guest_01")
    assert guest.returncode == 0, guest.output()


async def test_guest_cannot_ask_for_a_key_in_another_guests_name(system: System) -> None:
    site = system.site
    from smartlock import crypto
    from smartlock.core.messages import ID_BYTES, SessionRequest

    backend = system.backend
    mark = len(backend.lines)
    now = int(asyncio.get_running_loop().time())  # any value: it must never be looked at
    request = bytes(SessionRequest(crypto.random_bytes(ID_BYTES), now, "lock_01"))
    async with MqttConnection(site, site.credentials("guest_02")) as mqtt:
        await mqtt.publish("backend/session_requests/guest_01", request)
        await mqtt.publish("backend/session_requests/guest_02", b"\x00 marker")
    await backend.wait_for(r"Rejected message from backend/session_requests/guest_02", after=mark)
    assert not any("guest_01" in line for line in backend.lines[mark:])


async def test_lock_cannot_speak_for_another_lock(system: System) -> None:
    site = system.site
    backend = system.backend
    mark = len(backend.lines)
    async with system.paused("lock_02"), MqttConnection(site, site.credentials("lock_02")) as mqtt:
        await mqtt.publish("locks/lock_01/events", b"\x01\x04 forged by lock_02")
        await mqtt.publish("locks/lock_02/events", b"\x01\x04 marker")
    await backend.wait_for(r"Rejected message from locks/lock_02/events", after=mark)
    assert not any("locks/lock_01" in line for line in backend.lines[mark:])
