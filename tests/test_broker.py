"""smartlock.broker: the rendered mosquitto.conf and ACL, the reachability check, and a real
Mosquitto started and stopped through BrokerProcess."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartlock import broker as broker_module
from smartlock.broker import (
    BROKER_USER,
    BrokerProcess,
    check_broker_can_reach,
    client_tls_context,
    free_port,
    render_acl,
    render_config,
)
from smartlock.core.errors import ConfigError
from smartlock.site import Site, provision_site

ROOT = Path("/srv/smartlock/site")
LOCKS = ("lock_01", "lock_02")
GUESTS = ("guest_01", "guest_02", "guest_03")
PORT = 8883
HOST = "127.0.0.1"

requires_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="only a root broker drops privileges to user 'mosquitto'"
)


@pytest.fixture
def spec_site() -> Site:
    """A site as a value: rendering needs no files."""
    return Site(
        root=ROOT,
        name="site",
        broker_host=HOST,
        broker_port=PORT,
        locks=LOCKS,
        guests=GUESTS,
        grants=(("guest_01", "lock_01"), ("guest_02", "lock_02")),
    )


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    root = Path(tempfile.mkdtemp(prefix="smartlock-test-"))
    yield provision_site(
        root,
        locks=["lock_01"],
        guests=["guest_01"],
        grants=[("guest_01", "lock_01")],
        broker_host=HOST,
        broker_port=free_port(),
    )
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def hidden_site() -> Iterator[Site]:
    """A site inside a 0700 directory that user 'mosquitto' cannot enter."""
    parent = Path(tempfile.mkdtemp(prefix="smartlock-test-0700-"))
    parent.chmod(0o700)
    yield provision_site(
        parent / "site",
        locks=["lock_01"],
        guests=[],
        grants=[],
        broker_host=HOST,
        broker_port=free_port(),
    )
    shutil.rmtree(parent, ignore_errors=True)


# --- mosquitto.conf ----------------------------------------------------------------------------


def config_lines(site: Site, **kwargs: int) -> list[str]:
    return [line.strip() for line in render_config(site, **kwargs).splitlines()]


def test_config_refuses_anonymous_clients_and_names_password_and_acl_files(
    spec_site: Site,
) -> None:
    lines = config_lines(spec_site)
    assert "allow_anonymous false" in lines
    assert "allow_anonymous true" not in lines
    assert f"password_file {ROOT / 'broker' / 'passwd'}" in lines
    assert f"acl_file {ROOT / 'broker' / 'acl'}" in lines


def test_config_disables_nagle_and_sizes_queues_and_packets(spec_site: Site) -> None:
    lines = config_lines(spec_site)
    assert "set_tcp_nodelay true" in lines
    assert "max_queued_messages 100000" in lines  # the default 1000 drops QoS 1 messages
    [packet] = [line for line in lines if line.startswith("max_packet_size ")]
    assert 0 < int(packet.split()[1]) <= 65_536  # the default is 256 MB


def test_config_has_exactly_one_listener_and_it_serves_tls(spec_site: Site) -> None:
    lines = config_lines(spec_site)
    listeners = [i for i, line in enumerate(lines) if line.startswith("listener ")]
    assert [lines[i] for i in listeners] == [f"listener {PORT} {HOST}"]
    # a 'port' line would open a second, plain listener on all interfaces
    assert not [line for line in lines if line.startswith(("port ", "bind_address "))]
    section = lines[listeners[0] + 1 :]
    assert f"certfile {ROOT / 'broker' / 'broker.crt'}" in section
    assert f"keyfile {ROOT / 'broker' / 'broker.key'}" in section
    assert "tls_version tlsv1.2" in section
    before = lines[: listeners[0]]
    assert not [line for line in before if line.startswith(("certfile", "keyfile"))]


def test_config_listens_on_the_port_it_is_given_instead_of_the_sites(spec_site: Site) -> None:
    lines = config_lines(spec_site, port=40123)
    assert [line for line in lines if line.startswith("listener ")] == [f"listener 40123 {HOST}"]


def test_config_drops_to_user_mosquitto_when_started_as_root(
    spec_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_module, "_running_as_root", lambda: True)
    lines = config_lines(spec_site)
    assert [line for line in lines if line.startswith("user ")] == [f"user {BROKER_USER}"]


def test_config_names_no_user_when_not_root(
    spec_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_module, "_running_as_root", lambda: False)
    lines = config_lines(spec_site)
    assert not [line for line in lines if line.startswith("user")]
    assert "allow_anonymous false" in lines


def test_provisioned_config_and_acl_on_disk_are_the_rendered_ones(site: Site) -> None:
    assert (site.broker_dir / "acl").read_text() == render_acl(site)
    assert (site.broker_dir / "mosquitto.conf").read_text() == render_config(site)


# --- the ACL ------------------------------------------------------------------------------------

ACCESS = ("read", "write", "readwrite", "deny")


def parse_acl(text: str) -> dict[str, set[tuple[str, str]]]:
    """{user: {(access, topic)}}; fails on anything but comments, 'user' and 'topic' lines."""
    acl: dict[str, set[tuple[str, str]]] = {}
    user: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "user":
            user = rest
            assert user not in acl, f"user {user} appears twice"
            acl[user] = set()
        elif keyword == "topic":
            # a topic line before any 'user' applies to anonymous clients
            assert user is not None, f"{line!r} belongs to no user"
            access, _, topic = rest.partition(" ")
            if access not in ACCESS:  # 'topic x' alone means readwrite
                access, topic = "readwrite", rest
            acl[user].add((access, topic))
        else:
            raise AssertionError(f"unexpected ACL line {line!r}")
    return acl


def test_acl_parser_reads_bare_topics_as_readwrite_and_refuses_patterns() -> None:
    # the parser below is what the ACL tests rely on: make sure it cannot be fooled
    assert parse_acl("user a\ntopic x/y\n") == {"a": {("readwrite", "x/y")}}
    with pytest.raises(AssertionError, match="unexpected ACL line"):
        parse_acl("pattern read %u/#\n")
    with pytest.raises(AssertionError, match="belongs to no user"):
        parse_acl("topic read x\n")


def test_acl_names_exactly_the_backend_every_lock_and_every_guest(spec_site: Site) -> None:
    assert set(parse_acl(render_acl(spec_site))) == {"backend", *LOCKS, *GUESTS}


@pytest.mark.parametrize("guest", GUESTS)
def test_acl_lets_a_guest_ask_for_keys_and_read_replies_under_its_own_id_only(
    spec_site: Site, guest: str
) -> None:
    entries = parse_acl(render_acl(spec_site))[guest]
    assert entries == {
        ("write", f"backend/session_requests/{guest}"),
        ("read", f"guests/{guest}/session"),
        ("read", f"guests/{guest}/events"),
    }


@pytest.mark.parametrize("lock", LOCKS)
def test_acl_lets_a_lock_read_its_keys_and_write_its_events_only(
    spec_site: Site, lock: str
) -> None:
    entries = parse_acl(render_acl(spec_site))[lock]
    assert entries == {("read", f"locks/{lock}/session"), ("write", f"locks/{lock}/events")}


def test_acl_gives_the_backend_the_service_topics_and_nothing_to_write_to_itself(
    spec_site: Site,
) -> None:
    entries = parse_acl(render_acl(spec_site))["backend"]
    assert entries == {
        ("read", "backend/session_requests/+"),
        ("write", "locks/+/session"),
        ("read", "locks/+/events"),
        ("write", "guests/+/session"),
        ("write", "guests/+/events"),
    }


def test_acl_has_no_pattern_lines_and_no_multilevel_wildcard(spec_site: Site) -> None:
    rules = [
        line.strip()
        for line in render_acl(spec_site).splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert rules
    assert not [line for line in rules if line.startswith("pattern")]
    assert not [line for line in rules if "#" in line]


def test_acl_grants_no_wildcard_to_a_lock_or_guest(spec_site: Site) -> None:
    acl = parse_acl(render_acl(spec_site))
    devices = {user: entries for user, entries in acl.items() if user != "backend"}
    assert not [
        (user, topic)
        for user, entries in devices.items()
        for _, topic in entries
        if "+" in topic or "#" in topic
    ]


# --- can the unprivileged broker reach its files? ------------------------------------------


@requires_root
def test_reachability_check_names_the_directory_the_broker_cannot_enter(
    hidden_site: Site,
) -> None:
    parent = hidden_site.root.parent
    with pytest.raises(ConfigError, match=f"cannot enter {parent};") as raised:
        check_broker_can_reach(hidden_site)
    assert f"chmod o+x {parent}" in str(raised.value)
    assert "Traceback" not in str(raised.value)


@requires_root
def test_reachability_check_passes_once_the_directory_is_traversable(hidden_site: Site) -> None:
    parent = hidden_site.root.parent
    parent.chmod(0o701)  # the advice of the error message
    try:
        check_broker_can_reach(hidden_site)
    finally:
        parent.chmod(0o700)


def test_reachability_check_passes_for_a_site_in_tmp(site: Site) -> None:
    check_broker_can_reach(site)


def test_reachability_is_not_checked_when_the_broker_keeps_our_user(
    hidden_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_module, "_running_as_root", lambda: False)
    check_broker_can_reach(hidden_site)


@requires_root
def test_reachability_check_without_a_mosquitto_user_is_a_config_error(
    hidden_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_getpwnam = pwd.getpwnam

    def getpwnam(name: str) -> pwd.struct_passwd:
        if name == BROKER_USER:  # a system with the group but not the user
            raise KeyError(name)
        return real_getpwnam(name)

    monkeypatch.setattr(pwd, "getpwnam", getpwnam)
    with pytest.raises(ConfigError, match="cannot enter"):
        check_broker_can_reach(hidden_site)


# --- the real broker ----------------------------------------------------------------------------


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # effective uid
    raise AssertionError("no Uid line")


async def test_broker_process_serves_tls_for_the_site_and_stops_with_the_block(
    site: Site,
) -> None:
    port = free_port()
    async with asyncio.timeout(30):
        async with BrokerProcess(site, port=port) as broker:
            assert broker.process is not None
            assert broker.process.returncode is None
            _, writer = await asyncio.open_connection(
                HOST, port, ssl=client_tls_context(site), server_hostname=HOST
            )
            writer.close()
            await writer.wait_closed()
            # a client that does not pin the site CA cannot verify the broker
            with pytest.raises(ssl.SSLCertVerificationError):
                await asyncio.open_connection(
                    HOST, port, ssl=ssl.create_default_context(), server_hostname=HOST
                )
            if os.geteuid() == 0:
                assert _uid_of(broker.process.pid) == pwd.getpwnam(BROKER_USER).pw_uid
            # exactly the one TLS listener: a listener option misplaced in the config would
            # silently add a plain-text default listener on 1883
            listening = [line for line in broker.log if "listen socket on port" in line]
            assert len(listening) == 1, listening
            assert f"port {port}." in listening[0]
        assert broker.process.returncode == 0
    assert any("terminating" in line for line in broker.log)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(HOST, port)


async def test_broker_process_on_a_taken_port_fails_fast_with_config_error(site: Site) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, 0))
        port = taken.getsockname()[1]
        broker = BrokerProcess(site, port=port, ready_timeout_s=20)
        try:
            async with asyncio.timeout(10):  # well inside ready_timeout_s: no waiting it out
                with pytest.raises(ConfigError, match="mosquitto exited with code") as raised:
                    await broker.start()
        finally:
            await broker.stop()
    assert "Address already in use" in str(raised.value)


async def test_broker_process_on_a_port_another_server_listens_on_fails_fast(
    site: Site,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, 0))
        taken.listen()  # accepts TCP connections but never answers a TLS handshake
        port = taken.getsockname()[1]
        broker = BrokerProcess(site, port=port, ready_timeout_s=1)
        try:
            async with asyncio.timeout(4):
                with pytest.raises(ConfigError, match="Address already in use"):
                    await broker.start()
        finally:
            await broker.stop()
