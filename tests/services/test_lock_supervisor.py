"""smartlock.services.lock_supervisor: real child processes stand in for the agent.

Each child runs ``AGENT`` below, which takes its n-th step from a plan file and talks to the
supervisor through the socket named in ``SMARTLOCK_SUPERVISOR_FD``, exactly as the agent does.
It tells the test what happens to it (started in which slot, pinged, terminated) over a Unix
socket of the test's own (:class:`Reports`), so the test waits for events, never for time.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from smartlock.adapters.slot_files import Outcome, SlotFiles
from smartlock.core.update_slots import SlotState
from smartlock.services import lock_supervisor
from smartlock.services.lock_supervisor import LockSupervisor

FACTORY = (0, 1, 0)
UPDATE = (1, 1, 0)
WAIT_S = 10  # the bound of every wait: nothing here should take more than a second or two

AGENT = r"""
import json, os, signal, socket, sys, time

reports_path, plan_path = sys.argv[1], sys.argv[2]
reports = socket.socket(socket.AF_UNIX)
reports.connect(reports_path)

def say(event, **fields):
    reports.sendall((json.dumps({"event": event, **fields}) + "\n").encode())

with open(plan_path + ".starts", "a+") as starts:
    starts.write("x")
    starts.seek(0)
    number = len(starts.read())
plan = json.load(open(plan_path))
step = plan[min(number, len(plan)) - 1]
first = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
slot = os.path.basename(first) if first else "installed"
link = socket.socket(fileno=int(os.environ["SMARTLOCK_SUPERVISOR_FD"]))

def terminated(*_):
    say("terminated", slot=slot)
    sys.exit(0)

signal.signal(signal.SIGTERM, signal.SIG_IGN if step == "stubborn" else terminated)
say("started", slot=slot, step=step, grace=os.environ["SMARTLOCK_UPDATE_GRACE_S"])

def wait_for_ping():
    lines = link.makefile("rb")
    for line in lines:
        if line == b"outcome\n":
            say("pinged", slot=slot)
            break
    signal.pause()

if step.startswith("exit "):
    sys.exit(int(step.split()[1]))
if step == "healthy":
    link.sendall(b"healthy\n")
    wait_for_ping()
if step == "wait for ping":
    wait_for_ping()
if step == "import":
    import smartlock
    say("imported", file=smartlock.__file__, path=sys.path)
    link.sendall(b"healthy\n")
    wait_for_ping()
if step == "update":
    from smartlock.adapters.slot_files import SlotFiles
    files = SlotFiles(__import__("pathlib").Path(plan_path).parent / "slots")
    state = files.load_state((0, 1, 0))
    grace = float(os.environ["SMARTLOCK_UPDATE_GRACE_S"])
    files.save_state(state.start_trial((1, 1, 0), time.time(), grace))
    sys.exit(75)
signal.pause()  # "silent" and "stubborn": never report
"""

FAKE_AGENT = {
    "smartlock/__init__.py": b'__version__ = "1.1.0"\n',
    "smartlock/__main__.py": b"raise SystemExit(0)\n",
}


class Reports:
    """What the children say, in order, from a Unix socket they connect to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Reports:
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for line in reader:
            await self._queue.put(json.loads(line))
        writer.close()

    async def next(self, event: str) -> dict[str, Any]:
        """The next report, which must be ``event``."""
        async with asyncio.timeout(WAIT_S):
            report = await self._queue.get()
        assert report["event"] == event, report
        return report


class Harness:
    def __init__(self, root: Path, reports: Reports) -> None:
        self.root = root
        self.reports = reports
        self.files = SlotFiles(root / "slots")
        self.plan = root / "plan.json"

    def supervisor(
        self, *steps: str, grace_s: float = 5.0, stop_timeout_s: float = 5.0
    ) -> LockSupervisor:
        self.plan.write_text(json.dumps(list(steps)))
        return LockSupervisor(
            files=self.files,
            child_argv=[sys.executable, "-c", AGENT, str(self.reports.path), str(self.plan)],
            factory_version=FACTORY,
            grace_s=grace_s,
            stop_timeout_s=stop_timeout_s,
        )

    def trial(self, *, started: float | None = None, grace_s: float = 5.0) -> SlotState:
        """Slot b holds the update, on trial since ``started`` (default: now)."""
        self.files.install_wheel("b", wheel(FAKE_AGENT))
        state = SlotState("a", FACTORY, FACTORY).start_trial(
            UPDATE, time.time() if started is None else started, grace_s
        )
        self.files.save_state(state)
        return state

    def starts(self) -> int:
        return len(self.plan.with_name("plan.json.starts").read_text())


def wheel(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    root = Path(tempfile.mkdtemp(prefix="sl-sup-"))  # short: a Unix socket path has a limit
    async with Reports(root / "r.sock") as reports:
        yield Harness(root, reports)
    shutil.rmtree(root, ignore_errors=True)


class SupervisorLog(logging.Handler):
    """The supervisor's log lines, and a way to wait for one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self._changed.set()  # the supervisor logs from the test's own event loop

    async def wait_for(self, fragment: str) -> None:
        async with asyncio.timeout(WAIT_S):
            while not any(fragment in line for line in self.lines):
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def supervisor_log() -> Iterator[SupervisorLog]:
    handler = SupervisorLog()
    logger = logging.getLogger("smartlock.supervisor")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


async def finish(task: asyncio.Task[int]) -> int:
    async with asyncio.timeout(WAIT_S):
        return await task


# --- trials -----------------------------------------------------------------------------------


async def test_a_trial_that_reports_healthy_becomes_the_active_slot(
    harness: Harness, supervisor_log: SupervisorLog
) -> None:
    harness.trial()
    supervisor = harness.supervisor("healthy")
    task = asyncio.create_task(supervisor.run())
    started = await harness.reports.next("started")
    assert (started["slot"], started["grace"]) == ("b", "5.0")
    assert (await harness.reports.next("pinged"))["slot"] == "b"  # told to report the outcome
    state = harness.files.load_state(FACTORY)
    assert (state.active, state.active_version, state.trial) == ("b", UPDATE, None)
    outcome = harness.files.read_outcome()
    assert outcome is not None
    assert (outcome.version, outcome.step, outcome.reason) == (UPDATE, "healthy", "")
    supervisor.request_stop()
    await harness.reports.next("terminated")
    assert await finish(task) == 0
    assert harness.starts() == 1
    assert supervisor_log.lines[0].startswith("Supervisor: starting slot b (1.1.0) on trial: ")
    assert supervisor_log.lines[0].endswith(" s to report healthy")
    assert "Supervisor: 1.1.0 reported healthy; slot b is active" in supervisor_log.lines


async def test_a_trial_that_exits_goes_back_to_the_previous_slot(harness: Harness) -> None:
    harness.trial()
    supervisor = harness.supervisor("exit 1", "wait for ping")
    task = asyncio.create_task(supervisor.run())
    assert (await harness.reports.next("started"))["slot"] == "b"
    assert (await harness.reports.next("started"))["slot"] == "installed"  # the factory slot a
    assert (await harness.reports.next("pinged"))["slot"] == "installed"  # to report the rollback
    state = harness.files.load_state(FACTORY)
    assert state == SlotState("a", FACTORY, UPDATE)  # and 1.1.0 is never accepted again
    assert harness.files.read_outcome() == Outcome(
        UPDATE, "rolled_back", "exited", "exited with code 1 before reporting healthy"
    )
    supervisor.request_stop()
    assert await finish(task) == 0


async def test_a_trial_that_never_reports_is_stopped_and_rolled_back_at_its_deadline(
    harness: Harness,
) -> None:
    harness.trial(grace_s=0.5)
    supervisor = harness.supervisor("silent", "silent", grace_s=0.5)
    task = asyncio.create_task(supervisor.run())
    assert (await harness.reports.next("started"))["slot"] == "b"
    assert (await harness.reports.next("terminated"))["slot"] == "b"
    assert (await harness.reports.next("started"))["slot"] == "installed"
    assert harness.files.load_state(FACTORY) == SlotState("a", FACTORY, UPDATE)
    assert harness.files.read_outcome() == Outcome(
        UPDATE, "rolled_back", "not_healthy", "did not report healthy within 0.5 s"
    )
    supervisor.request_stop()
    assert await finish(task) == 0


async def test_an_agent_that_installed_an_update_is_restarted_into_the_trial_slot(
    harness: Harness,
) -> None:
    harness.files.install_wheel("b", wheel(FAKE_AGENT))
    supervisor = harness.supervisor("update", "import")
    task = asyncio.create_task(supervisor.run())
    assert (await harness.reports.next("started"))["slot"] == "installed"
    assert (await harness.reports.next("started"))["slot"] == "b"
    imported = await harness.reports.next("imported")
    slot = str(harness.files.slot_dir("b"))
    assert imported["file"] == f"{slot}/smartlock/__init__.py"  # not the installed package
    assert imported["path"][0] == slot
    await harness.reports.next("pinged")
    state = harness.files.load_state(FACTORY)
    assert (state.active, state.active_version, state.trial) == ("b", UPDATE, None)
    supervisor.request_stop()
    assert await finish(task) == 0


async def test_a_trial_whose_time_ran_out_while_the_lock_was_off_is_rolled_back_at_start(
    harness: Harness,
) -> None:
    harness.trial(started=time.time() - 3600, grace_s=60)
    supervisor = harness.supervisor("wait for ping")
    task = asyncio.create_task(supervisor.run())
    assert (await harness.reports.next("started"))["slot"] == "installed"  # never slot b
    await harness.reports.next("pinged")
    assert harness.files.load_state(FACTORY) == SlotState("a", FACTORY, UPDATE)
    outcome = harness.files.read_outcome()
    assert outcome is not None
    assert (outcome.step, outcome.reason) == ("rolled_back", "interrupted")
    supervisor.request_stop()
    assert await finish(task) == 0
    assert harness.starts() == 1


async def test_a_trial_slot_without_an_agent_is_rolled_back_without_running_it(
    harness: Harness,
) -> None:
    harness.files.save_state(SlotState("a", FACTORY, FACTORY).start_trial(UPDATE, time.time()))
    supervisor = harness.supervisor("silent")
    task = asyncio.create_task(supervisor.run())
    assert (await harness.reports.next("started"))["slot"] == "installed"
    outcome = harness.files.read_outcome()
    assert outcome is not None
    assert (outcome.reason, outcome.detail) == ("not_healthy", "slot b holds no agent to run")
    supervisor.request_stop()
    assert await finish(task) == 0


# --- running and stopping -------------------------------------------------------------------


async def test_a_stop_request_terminates_the_agent_and_returns_0(harness: Harness) -> None:
    supervisor = harness.supervisor("silent")
    task = asyncio.create_task(supervisor.run())
    started = await harness.reports.next("started")
    assert started["slot"] == "installed"
    assert harness.files.load_state(FACTORY).trial is None
    supervisor.request_stop()
    await harness.reports.next("terminated")
    assert await finish(task) == 0
    assert harness.files.read_outcome() is None  # nothing happened to report


async def test_an_agent_that_ignores_sigterm_is_killed(
    harness: Harness, supervisor_log: SupervisorLog
) -> None:
    supervisor = harness.supervisor("stubborn", stop_timeout_s=0.3)
    task = asyncio.create_task(supervisor.run())
    await harness.reports.next("started")
    supervisor.request_stop()
    assert await finish(task) == 0
    assert "Supervisor: the agent did not stop within 0.3 s; killing it" in supervisor_log.lines


async def test_a_crashing_agent_is_restarted_and_a_usage_error_ends_the_supervisor(
    harness: Harness, supervisor_log: SupervisorLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lock_supervisor, "BACKOFF_MIN_S", 0.05)
    supervisor = harness.supervisor("exit 1", "exit 1", "exit 2")
    task = asyncio.create_task(supervisor.run())
    for _ in range(3):
        await harness.reports.next("started")
    assert await finish(task) == 2
    assert harness.starts() == 3
    restarts = [line for line in supervisor_log.lines if "restarting it in" in line]
    assert restarts == [
        "Supervisor: the agent exited with code 1; restarting it in 0.1 s",  # 0.05 rounded
        "Supervisor: the agent exited with code 1; restarting it in 0.1 s",
    ]


async def test_a_stop_request_ends_the_wait_before_a_restart(
    harness: Harness, supervisor_log: SupervisorLog
) -> None:
    supervisor = harness.supervisor("exit 1")
    task = asyncio.create_task(supervisor.run())
    await harness.reports.next("started")
    await supervisor_log.wait_for("restarting it in 1 s")
    began = time.monotonic()
    supervisor.request_stop()
    assert await finish(task) == 0
    assert time.monotonic() - began < 0.5
    assert harness.starts() == 1


# --- the command ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site_dir() -> Iterator[Path]:
    from smartlock.admin import create_site
    from smartlock.broker import free_port

    root = Path(tempfile.mkdtemp(prefix="sl-sup-site-"))
    create_site(root, locks=["lock_01"], owners=["owner"], broker_port=free_port())
    yield root
    shutil.rmtree(root, ignore_errors=True)


def supervise(*args: str) -> Any:
    from smartlock.cli import app

    return CliRunner().invoke(app, ["lock", "supervise", *args])


def test_the_help_explains_the_trial_and_the_grace_period() -> None:
    result = supervise("--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "--grace-period" in text
    assert "does not report healthy within the grace period" in text
    assert "passed to 'lock run'" in text


@pytest.mark.parametrize("grace", ["0", "-5", "3601", "nan"])
@pytest.mark.usefixtures("cli_isolated")
def test_a_bad_grace_period_is_a_one_line_error(site_dir: Path, grace: str) -> None:
    result = supervise("--id", "lock_01", "--site", str(site_dir), "--grace-period", grace)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --grace-period must be more than 0 and at most 3600")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


@pytest.mark.usefixtures("cli_isolated")
def test_an_unknown_lock_is_a_one_line_error(site_dir: Path) -> None:
    result = supervise("--id", "lock_99", "--site", str(site_dir))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no lock 'lock_99'")
    assert result.stderr.count("\n") == 1


@pytest.mark.usefixtures("cli_isolated")
def test_options_go_to_lock_run_whose_usage_error_ends_the_supervisor(
    site_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMARTLOCK_SITE", raising=False)
    result = supervise("--id", "lock_01", "--site", str(site_dir), "--no-such-option", "x")
    assert result.exit_code == 2, result.output  # 'lock run' refused it: restarting won't help
    assert not (site_dir / "locks" / "lock_01" / "slots" / "outcome.json").exists()
