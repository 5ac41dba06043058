"""smartlock.broker: the rendered mosquitto.conf and ACL (least privilege per broker user), the
reachability check, reloading a running broker, and a real Mosquitto started and stopped through
BrokerProcess."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pwd
import shutil
import signal
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from smartlock import broker as broker_module
from smartlock.adapters.mqtt import BrokerUnavailable, MqttConnection
from smartlock.broker import (
    BROKER_USER,
    BrokerProcess,
    check_broker_can_reach,
    client_tls_context,
    free_port,
    pid_file,
    reload_broker,
    render_acl,
    render_config,
    topics_for,
)
from smartlock.core import topics
from smartlock.core.errors import ConfigError
from smartlock.site import Credentials, Site, add_identity, provision_site, remove_identity

ROOT = Path("/srv/smartlock/site")
LOCKS = ("lock_01", "lock_02")
USERS = ("owner", "resident", "guest_01", "guest_02")
PORT = 8883
HOST = "127.0.0.1"

requires_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="only a root broker drops privileges to user 'mosquitto'"
)


@pytest.fixture
def spec_site() -> Site:
    """A site as a value: rendering needs no files."""
    return Site(
        root=ROOT, name="site", broker_host=HOST, broker_port=PORT, locks=LOCKS, users=USERS
    )


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    root = Path(tempfile.mkdtemp(prefix="smartlock-test-"))
    yield provision_site(
        root, locks=["lock_01"], users=["guest_01"], broker_host=HOST, broker_port=free_port()
    )
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def hidden_site() -> Iterator[Site]:
    """A site inside a 0700 directory that user 'mosquitto' cannot enter."""
    parent = Path(tempfile.mkdtemp(prefix="smartlock-test-0700-"))
    parent.chmod(0o700)
    yield provision_site(
        parent / "site", locks=["lock_01"], users=[], broker_host=HOST, broker_port=free_port()
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


def test_config_makes_the_client_id_the_username_on_the_listener(spec_site: Site) -> None:
    lines = config_lines(spec_site)
    listener = next(i for i, line in enumerate(lines) if line.startswith("listener "))
    # before the listener line it would be a global option that opens a default plain listener
    assert lines.index("use_username_as_clientid true") > listener


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


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching: ``+`` is one level, ``#`` the rest."""
    levels, names = topic_filter.split("/"), topic.split("/")
    for index, level in enumerate(levels):
        if level == "#":
            return True
        if index >= len(names) or level not in ("+", names[index]):
            return False
    return len(levels) == len(names)


def test_topic_matcher_follows_mqtt_wildcards() -> None:
    assert matches("locks/+/events", "locks/lock_01/events")
    assert not matches("locks/+/events", "locks/lock_01/x/events")
    assert not matches("locks/+", "locks/lock_01/events")
    assert matches("locks/#", "locks/lock_01/events")
    assert not matches("users/a/session", "users/b/session")


def test_acl_parser_reads_bare_topics_as_readwrite_and_refuses_patterns() -> None:
    # the parser below is what the ACL tests rely on: make sure it cannot be fooled
    assert parse_acl("user a\ntopic x/y\n") == {"a": {("readwrite", "x/y")}}
    with pytest.raises(AssertionError, match="unexpected ACL line"):
        parse_acl("pattern read %u/#\n")
    with pytest.raises(AssertionError, match="belongs to no user"):
        parse_acl("topic read x\n")


def test_rendered_acl_is_exactly_topics_for_without_duplicates(spec_site: Site) -> None:
    entries = topics_for(spec_site)
    assert parse_acl(render_acl(spec_site)) == {user: set(e) for user, e in entries.items()}
    assert {user: len(e) for user, e in entries.items()} == {
        user: len(set(e)) for user, e in entries.items()
    }


def test_acl_names_exactly_the_backend_every_lock_and_every_user(spec_site: Site) -> None:
    assert set(topics_for(spec_site)) == {"backend", *LOCKS, *USERS}
    assert set(parse_acl(render_acl(spec_site))) == {"backend", *LOCKS, *USERS}


@pytest.mark.parametrize("user", USERS)
def test_a_user_writes_only_its_own_requests_and_reads_only_its_own_topics(
    spec_site: Site, user: str
) -> None:
    # the same for owners, residents and guests: what each may do is the backend's decision
    assert set(topics_for(spec_site)[user]) == {
        ("write", f"backend/session_requests/{user}"),
        ("write", f"backend/commands/{user}"),
        ("read", f"users/{user}/session"),
        ("read", f"users/{user}/events"),
        ("read", f"users/{user}/replies"),
        ("read", f"users/{user}/alerts"),
        ("read", f"users/{user}/backend_key"),
        ("read", f"users/{user}/ca"),
    }


@pytest.mark.parametrize("lock", LOCKS)
def test_a_lock_reads_only_its_own_keys_and_commands_and_writes_only_its_reports(
    spec_site: Site, lock: str
) -> None:
    assert set(topics_for(spec_site)[lock]) == {
        ("read", f"locks/{lock}/session"),
        ("read", f"locks/{lock}/command_key"),
        ("read", f"locks/{lock}/revocations"),
        ("read", f"locks/{lock}/commands"),
        ("read", f"locks/{lock}/update"),
        ("read", f"locks/{lock}/backend_key"),
        ("read", f"locks/{lock}/ca"),
        ("read", "updates/+/+"),  # signed software, the same for all: nothing secret
        ("write", f"locks/{lock}/events"),
        ("write", f"locks/{lock}/availability"),
    }


def test_acl_gives_the_backend_the_service_topics_and_nothing_to_write_to_itself(
    spec_site: Site,
) -> None:
    assert set(topics_for(spec_site)["backend"]) == {
        ("read", "backend/session_requests/+"),
        ("read", "backend/commands/+"),
        ("write", "locks/+/session"),
        ("write", "locks/+/command_key"),
        ("write", "locks/+/revocations"),
        ("write", "locks/+/commands"),
        ("write", "locks/+/update"),
        ("write", "locks/+/backend_key"),
        ("write", "locks/+/ca"),
        ("write", "updates/+/+"),
        ("read", "locks/+/events"),
        ("read", "locks/+/availability"),
        ("write", "users/+/session"),
        ("write", "users/+/events"),
        ("write", "users/+/replies"),
        ("write", "users/+/alerts"),
        ("write", "users/+/backend_key"),
        ("write", "users/+/ca"),
    }


def test_every_device_topic_has_the_backend_at_its_other_end(spec_site: Site) -> None:
    acl = topics_for(spec_site)
    backend = acl.pop("backend")
    for device, entries in acl.items():
        for access, topic in entries:
            other = "read" if access == "write" else "write"
            assert any(a == other and matches(f, topic) for a, f in backend), (device, topic)
    for access, topic_filter in backend:  # and each backend topic reaches every device it names
        if topic_filter == topics.UPDATE_CHUNKS:  # the same filter for every lock
            assert all(("read", topic_filter) in acl[lock] for lock in LOCKS)
            continue
        kind = LOCKS if topic_filter.startswith("locks/") else USERS
        other = "read" if access == "write" else "write"
        for device in kind:
            assert (other, topic_filter.replace("+", device)) in acl[device], topic_filter


def test_no_device_can_reach_another_devices_topics(spec_site: Site) -> None:
    """Locks and users talk only to the backend: nothing one writes, another may read."""
    acl = topics_for(spec_site)
    devices = [*LOCKS, *USERS]
    for writer in devices:
        for reader in devices:
            if writer == reader:
                continue
            written = [t for a, t in acl[writer] if a == "write"]
            read = [t for a, t in acl[reader] if a == "read"]
            assert not [(w, r) for w in written for r in read if matches(r, w)], (writer, reader)
        own = [t for _, t in acl[writer] if t != topics.UPDATE_CHUNKS]  # public, read-only
        assert all(writer in topic.split("/") for topic in own), writer


def test_acl_has_no_pattern_lines_and_no_multilevel_wildcard(spec_site: Site) -> None:
    rules = [
        line.strip()
        for line in render_acl(spec_site).splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert rules
    assert not [line for line in rules if line.startswith("pattern")]
    assert not [line for line in rules if "#" in line]


def test_acl_grants_no_wildcard_to_a_lock_or_user(spec_site: Site) -> None:
    acl = topics_for(spec_site)
    wildcards = {
        (user, topic) for user, entries in acl.items() for _, topic in entries if "+" in topic
    }
    assert wildcards
    # the one exception: locks read the chunks of signed software updates, the same public
    # bytes for every lock (kept once on the broker, not once per lock); only the backend writes
    assert {user for user, topic in wildcards if topic != topics.UPDATE_CHUNKS} == {"backend"}
    assert {
        (access, user) for user, e in acl.items() for access, t in e if t == topics.UPDATE_CHUNKS
    } == {
        ("write", "backend"),
        *(("read", lock) for lock in LOCKS),
    }
    assert not [topic for entries in acl.values() for _, topic in entries if "#" in topic]


def test_acl_of_a_site_without_users_names_the_backend_and_the_locks(spec_site: Site) -> None:
    empty = dataclasses.replace(spec_site, users=())
    assert set(parse_acl(render_acl(empty))) == {"backend", *LOCKS}


# --- reloading a running broker -----------------------------------------------------------------


@pytest.fixture
def bare_site(spec_site: Site, tmp_path: Path) -> Site:
    """A site value whose broker directory exists (for the pid file) and holds nothing else."""
    value = dataclasses.replace(spec_site, root=tmp_path)
    value.broker_dir.mkdir()
    return value


def test_reload_without_a_pid_file_says_no_broker_runs(bare_site: Site) -> None:
    assert not pid_file(bare_site).exists()
    assert reload_broker(bare_site) is False


def test_reload_with_a_stale_pid_file_signals_nobody(bare_site: Site) -> None:
    """The pid names a live process that is not this site's mosquitto: ours."""
    received: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    pid_file(bare_site).write_text(f"{os.getpid()}\n")
    previous = signal.signal(signal.SIGHUP, record)
    try:
        assert reload_broker(bare_site) is False
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert received == []


@pytest.mark.parametrize("content", ["", "not a pid", "0", "-1", "4194305"])
def test_reload_with_an_unreadable_or_dead_pid_file_says_no_broker_runs(
    bare_site: Site, content: str
) -> None:
    pid_file(bare_site).write_text(content)
    assert reload_broker(bare_site) is False


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
            # the pid file names this very process, so reload_broker can find it
            assert pid_file(site).read_text().strip() == str(broker.process.pid)
        assert broker.process.returncode == 0
        assert not pid_file(site).exists()
        assert reload_broker(site) is False
    assert any("terminating" in line for line in broker.log)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(HOST, port)


async def connects(site: Site, credentials: Credentials, port: int) -> bool:
    """Whether the broker takes ``credentials``; False only for a refusal, never a timeout."""
    try:
        async with MqttConnection(site, credentials, port=port, timeout_s=5):
            return True
    except BrokerUnavailable as exc:
        if not exc.refused:
            raise
    return False


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Until ``check`` holds: the broker reloads its files after our SIGHUP, not during it."""
    while not await check():  # noqa: ASYNC110 -- the broker offers no event to wait on
        await asyncio.sleep(0.05)


@pytest.fixture
def live_site(site: Site) -> Iterator[Site]:
    """A copy of the module's site that a test may change, in a directory the broker can reach."""
    root = Path(tempfile.mkdtemp(prefix="smartlock-test-"))
    shutil.copytree(site.root, root, symlinks=True, dirs_exist_ok=True)
    yield Site.load(root)
    shutil.rmtree(root, ignore_errors=True)


async def test_reload_lets_a_new_user_in_and_a_removed_one_out_without_a_restart(
    live_site: Site,
) -> None:
    live = live_site
    leaving = live.credentials("guest_01")
    port = free_port()
    async with asyncio.timeout(40), BrokerProcess(live, port=port) as broker:
        assert broker.process is not None
        async with MqttConnection(live, live.credentials("lock_01"), port=port) as lock:
            assert await connects(live, leaving, port)
            live = add_identity(live, "carol", lock=False)
            live = remove_identity(live, "guest_01")
            assert reload_broker(live) is True
            await eventually(lambda: connects(live, live.credentials("carol"), port))
            await eventually(lambda: _not(connects(live, leaving, port)))
            assert any("Reloading config" in line for line in broker.log)
            # the reload dropped nobody: the lock's connection still publishes (QoS 1, acked)
            await lock.publish("locks/lock_01/availability", b"online")
        assert broker.process.pid == int(pid_file(live).read_text())  # never restarted


async def _not(result: Awaitable[bool]) -> bool:
    return not await result


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


# --- the Home Assistant user -------------------------------------------------------------------

HA_USER = "resident"
HA_READS = {
    ("read", "homeassistant/lock/+/config"),
    ("read", "smartlock/ha/+/state"),
    ("read", "locks/+/availability"),
}
HA_WRITES = {("write", "smartlock/ha/+/set")}
BACKEND_HA = {
    ("write", "homeassistant/lock/+/config"),
    ("write", "smartlock/ha/+/state"),
    ("read", "smartlock/ha/+/set"),
}


@pytest.fixture
def ha_site(spec_site: Site) -> Site:
    return dataclasses.replace(spec_site, home_assistant_user=HA_USER)


def test_the_home_assistant_user_reads_discovery_state_and_availability_and_writes_commands(
    spec_site: Site, ha_site: Site
) -> None:
    acl = topics_for(ha_site)
    ordinary = set(topics_for(spec_site)[HA_USER])
    assert set(acl[HA_USER]) == ordinary | HA_READS | HA_WRITES  # and still its own topics


def test_with_home_assistant_the_backend_publishes_config_and_state_and_reads_commands(
    spec_site: Site, ha_site: Site
) -> None:
    assert set(topics_for(ha_site)["backend"]) == set(topics_for(spec_site)["backend"]) | BACKEND_HA


def test_only_the_home_assistant_user_gains_anything(spec_site: Site, ha_site: Site) -> None:
    without, with_ha = topics_for(spec_site), topics_for(ha_site)
    assert set(with_ha) == set(without)
    for user in without:
        if user not in ("backend", HA_USER):
            assert with_ha[user] == without[user], user


def test_without_a_home_assistant_user_no_home_assistant_topic_is_in_the_acl(
    spec_site: Site,
) -> None:
    assert spec_site.home_assistant_user is None
    text = render_acl(spec_site)
    assert "homeassistant/" not in text
    assert "smartlock/ha/" not in text
    acl = topics_for(spec_site)
    wildcard_users = {
        user for user, e in acl.items() for _, t in e if "+" in t and t != topics.UPDATE_CHUNKS
    }
    assert wildcard_users == {"backend"}


def test_the_rendered_acl_holds_the_home_assistant_lines_once(ha_site: Site) -> None:
    parsed = parse_acl(render_acl(ha_site))
    assert parsed == {user: set(e) for user, e in topics_for(ha_site).items()}
    assert parsed[HA_USER] >= HA_READS | HA_WRITES
    assert parsed["backend"] >= BACKEND_HA
    for user, entries in topics_for(ha_site).items():
        assert len(entries) == len(set(entries)), user


def test_commands_from_home_assistant_reach_only_the_backend(ha_site: Site) -> None:
    acl = topics_for(ha_site)
    command = "smartlock/ha/lock_01/set"
    readers = {u for u, e in acl.items() if any(a == "read" and matches(t, command) for a, t in e)}
    writers = {u for u, e in acl.items() if any(a == "write" and matches(t, command) for a, t in e)}
    assert readers == {"backend"}
    assert writers == {HA_USER}


def test_home_assistant_states_are_written_by_the_backend_alone(ha_site: Site) -> None:
    acl = topics_for(ha_site)
    for topic in ("smartlock/ha/lock_01/state", "homeassistant/lock/lock_01/config"):
        writers = {
            u for u, e in acl.items() if any(a == "write" and matches(t, topic) for a, t in e)
        }
        readers = {
            u for u, e in acl.items() if any(a == "read" and matches(t, topic) for a, t in e)
        }
        assert writers == {"backend"}, topic
        assert readers == {HA_USER}, topic


def test_home_assistant_reads_no_lock_traffic_but_its_availability(ha_site: Site) -> None:
    acl = topics_for(ha_site)
    for leaf in ("session", "command_key", "revocations", "commands", "events"):
        topic = f"locks/lock_01/{leaf}"
        assert not any(matches(t, topic) for _, t in acl[HA_USER]), topic
    assert any(a == "read" and matches(t, "locks/lock_01/availability") for a, t in acl[HA_USER])
    assert not any(a == "write" and t.startswith("locks/") for a, t in acl[HA_USER])
