"""The system under test: a real site, the real Mosquitto, the real bumble radio hub, and the
backend and lock agents as separate ``smartlock`` processes -- started exactly as users do.

Shared by the end-to-end (tests/e2e), attack (tests/attacks) and fault (tests/faults) suites;
``tests/conftest.py`` registers its fixtures and marks those suites ``e2e``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import glob
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from smartlock.adapters.mqtt import Incoming, MqttConnection
from smartlock.adapters.processes import Child
from smartlock.adapters.radio import AdvertisingReport, open_radio
from smartlock.admin import create_site, with_settings
from smartlock.broker import free_port
from smartlock.core.token import token_payload
from smartlock.site import Site

SNIFFER = "sniffer"
LOCKS = ["lock_01", "lock_02"]
GUESTS = ["guest_01", "guest_02", "guest_03"]
GRANTS = [("guest_01", "lock_01"), ("guest_02", "lock_02")]  # guest_03 has no pass
OWNER = "owner"
RESIDENT = "resident"


class Logs:
    """Every smartlock process the suites start, and this test process's own log records: what
    an operator or an attacker with the logs would see.  ``tests/conftest.py`` feeds it."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.records: list[str] = []

    def text(self, first_child: int = 0) -> str:
        lines = [line for child in self.children[first_child:] for line in child.lines]
        return "\n".join([*lines, *self.records])


LOGS = Logs()


def site_secrets(site: Site) -> dict[str, str]:
    """What must never be logged, as a log line would show it: name -> text."""
    found: dict[str, str] = {}
    for identity in ("backend", *site.locks, *site.users):
        with contextlib.suppress(OSError):
            found[f"{identity} password"] = site.credentials(identity).password
        with contextlib.suppress(OSError):
            pem = site.private_key_path(identity).read_text().splitlines()
            body = [line for line in pem if "PRIVATE KEY" not in line]
            for number, line in enumerate(body):
                found[f"{identity} private key line {number}"] = line
    for secret_file in (site.audit_key_path, site.command_master_key_path):
        with contextlib.suppress(OSError):
            raw = secret_file.read_bytes()
            found[secret_file.name] = raw.hex()
            found[f"{secret_file.name} (base64)"] = base64.b64encode(raw).decode()
    for lock_id in site.locks:
        with contextlib.suppress(OSError, ValueError):
            state = (site.identity_dir(lock_id) / "state.json").read_text()
            for number, key in enumerate(re.findall(r'"(?:secret|key)": "([0-9a-f]{64})"', state)):
                found[f"{lock_id} held key {number}"] = key
                found[f"{lock_id} held key {number} (base64)"] = base64.b64encode(
                    bytes.fromhex(key)
                ).decode()
    return found


def assert_no_secret_logged(site: Site, first_child: int = 0) -> None:
    """No password, private key, audit or command key, or session key of ``site`` appears in
    the output of any process started since ``first_child``, nor in this process's log."""
    logs = LOGS.text(first_child)
    leaked = [name for name, secret in site_secrets(site).items() if secret and secret in logs]
    assert leaked == [], f"secrets in the logs: {leaked}"


def new_site_dir() -> Path:
    """Under /tmp so that Mosquitto, dropping root to user 'mosquitto', can reach its files."""
    return Path(tempfile.mkdtemp(prefix="smartlock-test-"))


@pytest.fixture(scope="module")
def site_dir() -> Iterator[Path]:
    root = new_site_dir()
    yield root
    shutil.rmtree(root, ignore_errors=True)


POSTGRES_URL = os.environ.get(
    "SMARTLOCK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh schema on the machine's PostgreSQL for one module's site; skipped (loudly, in
    the summary) where no server answers."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    from smartlock.adapters.store import database

    url = database.parse_url(POSTGRES_URL)
    engine = create_engine(
        url, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    schema = f"smartlock_e2e_{secrets.token_hex(4)}"
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except SQLAlchemyError as exc:
        pytest.skip(f"PostgreSQL variant SKIPPED: no server at {database.safe_url(url)} ({exc})")
    try:
        yield url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@dataclass
class System:
    site: Site
    broker: Child
    radio: Child
    backend: Child
    locks: dict[str, Child] = field(default_factory=dict)
    extra_lock_args: list[str] = field(default_factory=list)
    lock_args: dict[str, list[str]] = field(default_factory=dict)  # per lock, after the above
    started_at: int = field(default_factory=lambda: len(LOGS.children))  # its first child
    backend_args: list[str] = field(default_factory=list)  # e.g. ["--http", "127.0.0.1:0"]
    dashboard_url: str | None = None  # the backend's dashboard, when started with --http
    lock_verb: str = "run"  # "supervise": locks run under 'smartlock lock supervise' (updates)

    async def start_backend(self) -> Child:
        self.backend, self.dashboard_url = await _start_backend(self.site, self.backend_args)
        return self.backend

    async def start_lock(self, lock_id: str) -> Child:
        child = Child.smartlock(
            lock_id,
            "lock",
            self.lock_verb,
            "--id",
            lock_id,
            "--site",
            str(self.site.root),
            "--duplicate-window",
            "0.5",
            *self.extra_lock_args,
            *self.lock_args.get(lock_id, []),
        )
        await child.start()
        await child.wait_for(r"Subscribed to locks/.*/session")
        await child.wait_for(r"Scanning for BLE advertisements")
        self.locks[lock_id] = child
        return child

    @contextlib.asynccontextmanager
    async def paused(self, identity: str) -> AsyncIterator[None]:
        """Stop the backend or a lock for the block, so a test can use its credentials.

        The broker allows one session per user: borrowing a running service's credentials
        would kick that service off the broker.
        """
        if identity == "backend":
            await self.backend.stop()
        else:
            await self.locks[identity].stop()
        try:
            yield
        finally:
            if identity == "backend":
                await self.start_backend()
            else:
                await self.start_lock(identity)

    async def stop(self) -> None:
        for child in [*self.locks.values(), self.backend, self.radio, self.broker]:
            await child.stop()
        assert_no_secret_logged(self.site, self.started_at)


async def _start_backend(site: Site, args: list[str]) -> tuple[Child, str | None]:
    backend = await Child.smartlock("backend", "backend", "--site", str(site.root), *args).start()
    url = None
    if "--http" in args:
        url = (await backend.wait_for(r"Dashboard on (\S+)")).group(1).rstrip("/")
    await backend.wait_for(r"Backend listening for session requests")
    return backend, url


async def start_system(
    site: Site,
    *,
    backend_args: list[str] | None = None,
    lock_verb: str = "run",
    lock_args: dict[str, list[str]] | None = None,
) -> System:
    """Broker, radio hub, backend (with ``backend_args``) and every lock of ``site`` (``smartlock
    lock run``, or ``lock supervise`` with ``lock_verb``; ``lock_args`` per lock)."""
    root = str(site.root)
    first_child = len(LOGS.children)
    broker = await Child.smartlock("broker", "broker", "--site", root).start()
    await broker.wait_for(r"Broker listening")
    radio = await Child.smartlock("radio", "radio-hub", "--site", root, "--extra", SNIFFER).start()
    await radio.wait_for(r"Radio hub ready")
    backend, url = await _start_backend(site, backend_args or [])
    system = System(
        site,
        broker,
        radio,
        backend,
        started_at=first_child,
        backend_args=backend_args or [],
        dashboard_url=url,
        lock_verb=lock_verb,
        lock_args=lock_args or {},
    )
    for lock_id in site.locks:
        await system.start_lock(lock_id)
    return system


def provision(
    root: Path,
    *,
    session_ttl_s: int = 300,
    heartbeat_s: int = 60,
    db: str | None = None,
    max_failures: int = 50,
    **settings: Any,
) -> Site:
    """The test site.  Lockouts are the intrusion tests' business: elsewhere a lock tolerates
    ``max_failures`` refused tokens (the replay tests make some) before it locks out."""
    site = create_site(
        root,
        locks=LOCKS,
        owners=[OWNER],
        residents=[RESIDENT],
        guests=GUESTS,
        passes=GRANTS,
        broker_host="127.0.0.1",
        broker_port=free_port(),
        session_ttl_s=session_ttl_s,
        heartbeat_s=heartbeat_s,
        db=db,
    )
    return with_settings(site, max_failures=max_failures, **settings)


@contextlib.asynccontextmanager
async def running_system(
    *,
    backend_args: list[str] | None = None,
    lock_verb: str = "run",
    lock_args: dict[str, list[str]] | None = None,
    prepare: Callable[[Site], None] | None = None,
    **settings: Any,
) -> AsyncIterator[System]:
    """A fresh site (``provision(**settings)``, then ``prepare(site)``) with everything running,
    for one module."""
    root = new_site_dir()
    site = provision(root, **settings)
    if prepare is not None:
        prepare(site)
    running = await start_system(
        site, backend_args=backend_args, lock_verb=lock_verb, lock_args=lock_args
    )
    try:
        yield running
    finally:
        await running.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest_asyncio.fixture(scope="module")
async def system(site_dir: Path) -> AsyncIterator[System]:
    running = await start_system(provision(site_dir))
    yield running
    await running.stop()


async def watch(system: System, user: str, count: int) -> Child:
    """``smartlock watch --id USER --count N`` as a process, returned once it is subscribed."""
    child = Child.smartlock(
        f"watch-{user}",
        "watch",
        "--id",
        user,
        "--count",
        str(count),
        "--timeout",
        "20",
        "--site",
        str(system.site.root),
    )
    await child.start()
    await child.wait_for(rf"Watching alerts for {user}")
    return child


async def cli(site: Site, *args: str, timeout_s: float = 30) -> Child:
    """``smartlock ARGS --site SITE`` as a process, like a user at a shell; returns it after it
    exits."""
    child = Child.smartlock(args[0], *args, "--site", str(site.root))
    await child.start()
    await child.wait(timeout_s=timeout_s)
    return child


async def cli_json(site: Site, *args: str) -> Any:
    """The JSON a ``smartlock ... --json`` command printed last."""
    child = await cli(site, *args, "--json")
    assert child.returncode == 0, child.output()
    return json.loads("\n".join(child.stdout_lines))


async def run_guest(site: Site, lock_id: str, guest_id: str, *, timeout_s: float = 15) -> Child:
    """``smartlock guest unlock`` as a process; returns it after it exits."""
    child = Child.smartlock(
        guest_id,
        "guest",
        "unlock",
        lock_id,
        "--id",
        guest_id,
        "--site",
        str(site.root),
        "--timeout",
        str(timeout_s),
        "--json",
    )
    await child.start()
    await child.wait(timeout_s=timeout_s + 15)
    return child


def copy_for_device(site: Site, target: Path, user: str) -> Path:
    """What a device of ``user`` keeps of the site (an enrolled phone): site.json, ca.crt, the
    public keys and its own directory; from now on it trusts what its own files say."""
    target.mkdir(parents=True)
    shutil.copy2(site.root / "site.json", target / "site.json")
    shutil.copy2(site.ca_cert, target / site.ca_cert.name)
    shutil.copytree(site.root / "public", target / "public")
    own = site.identity_dir(user)
    shutil.copytree(own, target / own.relative_to(site.root))
    return target


async def run_guest_on_device(
    site: Site, device: Path, lock_id: str, guest_id: str, *, timeout_s: float = 15
) -> Child:
    """``smartlock guest unlock`` from a device's own copy of the site (see
    :func:`copy_for_device`), on the site's virtual radio; returns it after it exits."""
    child = Child.smartlock(
        f"{guest_id}-device",
        "guest",
        "unlock",
        lock_id,
        "--id",
        guest_id,
        "--site",
        str(device),
        "--radio",
        site.virtual_radio(guest_id),
        "--timeout",
        str(timeout_s),
    )
    await child.start()
    await child.wait(timeout_s=timeout_s + 15)
    return child


class Sniffer:
    """An attacker's radio on the same virtual air: records every smartlock advertisement."""

    def __init__(self, site: Site) -> None:
        self.radio = open_radio(site.virtual_radio(SNIFFER), name=SNIFFER)
        self.captured: list[AdvertisingReport] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sniffer:
        await self.radio.__aenter__()
        self._task = asyncio.create_task(self._listen())
        return self

    async def _listen(self) -> None:
        async for report in self.radio.scan():
            try:
                if token_payload(report.data) is not None:
                    self.captured.append(report)
            except Exception:  # sniffers keep everything, even garbage
                self.captured.append(report)

    async def replay(self, data: bytes, *, seconds: float) -> None:
        await self.radio.advertise(data, interval_ms=20)
        await asyncio.sleep(seconds)
        await self.radio.stop_advertising()

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.radio.__aexit__(None, None, None)


async def collect(mqtt: MqttConnection, seconds: float) -> list[Incoming]:
    """Everything delivered to ``mqtt`` during ``seconds``."""
    received: list[Incoming] = []

    async def gather_messages() -> None:
        async for message in mqtt.messages():
            received.append(message)

    try:
        async with asyncio.timeout(seconds):
            await gather_messages()
    except TimeoutError:
        pass
    return received


class NetworkLink:
    """A TCP relay standing for one device's network link to the broker: ``cut()`` drops every
    connection through it and refuses new ones (the device is off the network) until
    ``restore()``.  Point a lock at it with ``lock run --broker-port LINK.port``."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = 0
        self.up = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> NetworkLink:
        self._server = await asyncio.start_server(self._relay, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.up = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.up = True

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))


FAKETIME_LIBRARIES = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))


class SimulatedClock:
    """The wall clock of every process started while ``env`` is in the environment: it runs
    with real time, plus an offset this test moves (monotonic clocks are left alone)."""

    def __init__(self, path: Path, library: str) -> None:
        self._path = path
        self.offset = 0
        self._write()
        self.env = {
            "LD_PRELOAD": library,
            "FAKETIME_TIMESTAMP_FILE": str(path),
            "FAKETIME_NO_CACHE": "1",  # read the offset at every call: it moves mid-run
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # asyncio's timers keep real time
        }

    def advance(self, seconds: int) -> None:
        self.offset += seconds
        self._write()

    def _write(self) -> None:
        staged = self._path.with_suffix(".new")
        staged.write_text(f"+{self.offset}\n")
        staged.replace(self._path)  # a reader never sees half a line


@pytest.fixture(scope="module")
def clock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedClock]:
    """For a module: every process started from now on runs on the simulated clock (request
    this fixture before the module's ``system``)."""
    if not FAKETIME_LIBRARIES:
        pytest.skip("needs Debian's libfaketime (make test installs it)")
    simulated = SimulatedClock(tmp_path_factory.mktemp("clock") / "offset", FAKETIME_LIBRARIES[0])
    with pytest.MonkeyPatch.context() as patch:
        for name, value in simulated.env.items():
            patch.setenv(name, value)
        yield simulated
