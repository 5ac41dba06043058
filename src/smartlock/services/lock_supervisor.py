"""The lock agent's supervisor (``smartlock lock supervise``): glue between the slot state
(:mod:`smartlock.core.update_slots`), the slots on disk (:mod:`smartlock.adapters.slot_files`)
and the agent's process.

It runs the agent from ``state.slot_to_run`` -- an unpacked slot through ``PYTHONPATH``, or the
installed package when the slot holds nothing (the factory version) -- and hands it one end of a
socket pair (:mod:`smartlock.adapters.supervisor_link`).  Then it waits for whichever comes
first:

* ``healthy`` from an agent on trial: the trial slot becomes the active one, the outcome is
  written and the agent pinged (``outcome``) to report it;
* the trial's deadline: the agent is stopped and the lock goes back to the previous slot;
* the agent's exit: 75 (it installed an update) restarts it at once into the trial; any other
  code during a trial rolls back; outside one, 2 (a usage error) ends the supervisor with 2 and
  anything else restarts the agent after a backoff (1 s doubling to 30 s);
* a stop request (SIGTERM/SIGINT): the agent gets SIGTERM, then SIGKILL, and the supervisor
  returns 0.

A trial whose deadline passed while nothing ran (power lost mid-trial) is rolled back at start.
Every rollback writes an outcome, and an agent started while one is waiting to be reported is
pinged at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from smartlock.adapters.slot_files import (
    GRACE_ENV,
    RESTART_FOR_UPDATE,
    SUPERVISOR_FD_ENV,
    Outcome,
    SlotFiles,
)
from smartlock.adapters.supervisor_link import HEALTHY, OUTCOME
from smartlock.core.errors import ConfigError
from smartlock.core.release import Version, version_text
from smartlock.core.update_slots import GRACE_S, SlotState

logger = logging.getLogger("smartlock.supervisor")

USAGE_ERROR = 2  # Typer's and our CLI's exit code for a bad option: restarting cannot help
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_RUN_S = 60.0  # an agent that ran this long before exiting starts the backoff over
DRAIN_S = 1.0  # how long lines sent just before an exit are still read


@dataclass(frozen=True)
class _Ended:
    """How one run of the agent ended."""

    why: Literal["stopped", "rolled_back", "exited"]
    code: int = 0
    ran_s: float = 0.0


class LockSupervisor:
    def __init__(
        self,
        *,
        files: SlotFiles,
        child_argv: list[str],
        factory_version: Version,
        grace_s: float = GRACE_S,
        clock: Callable[[], float] = time.time,
        stop_timeout_s: float = 10.0,
    ) -> None:
        """``child_argv`` runs the agent (``python -m smartlock lock run ...``); ``grace_s`` is
        what the agent is told a trial gets (it writes the deadline); ``clock`` is the wall
        clock the deadlines are on; ``stop_timeout_s`` is how long SIGTERM has before SIGKILL."""
        self._files = files
        self._argv = list(child_argv)
        self._factory_version = factory_version
        self._grace_s = grace_s
        self._clock = clock
        self._stop_timeout_s = stop_timeout_s
        self._stop = asyncio.Event()
        self._state = SlotState("a", factory_version, factory_version)

    def request_stop(self) -> None:
        """Stop the agent (SIGTERM, then SIGKILL) and make :meth:`run` return 0."""
        self._stop.set()

    async def run(self) -> int:
        """Supervise until a stop request (0) or an agent's usage error (2)."""
        self._state = self._files.load_state(self._factory_version)
        self._expire_trial("interrupted", "the lock restarted and the trial's time ran out")
        delay = BACKOFF_MIN_S
        while not self._stop.is_set():
            self._expire_trial("not_healthy", self._not_healthy_detail())
            ended = await self._run_agent()
            if ended.why == "stopped" or self._stop.is_set():
                break
            if ended.why == "rolled_back":
                continue
            if ended.code == RESTART_FOR_UPDATE:
                self._state = self._files.load_state(self._factory_version)
                if self._state.trial is not None:
                    continue  # into the update on trial, at once
            elif self._state.trial is not None:
                self._roll_back("exited", f"{_exit_text(ended.code)} before reporting healthy")
                continue
            elif ended.code == USAGE_ERROR:
                logger.error(
                    "Supervisor: the agent exited with code 2 (a usage or configuration error: "
                    "restarting cannot help); stopping"
                )
                return USAGE_ERROR
            if ended.ran_s >= STABLE_RUN_S:
                delay = BACKOFF_MIN_S
            logger.warning(
                "Supervisor: the agent %s; restarting it in %s s",
                _exit_text(ended.code),
                _seconds(delay),
            )
            if await self._stop_requested_within(delay):
                break
            delay = min(delay * 2, BACKOFF_MAX_S)
        return 0

    # --- one run of the agent -----------------------------------------------------------------

    async def _run_agent(self) -> _Ended:
        slot = self._state.slot_to_run
        if self._state.trial is not None and not self._files.has_code(slot):
            self._roll_back("not_healthy", f"slot {slot} holds no agent to run")
            return _Ended("rolled_back")
        ours, theirs = socket.socketpair()
        try:
            theirs.set_inheritable(True)
            env = self._agent_env(slot, theirs.fileno())
            self._log_start(slot)
            started = asyncio.get_running_loop().time()
            process = await asyncio.create_subprocess_exec(
                *self._argv,
                pass_fds=(theirs.fileno(),),
                env=env,
                process_group=0,  # Ctrl-C reaches the supervisor only; it stops the agent
            )
        except OSError as exc:
            ours.close()
            raise ConfigError(f"cannot start the lock agent: {exc.strerror}") from None
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        try:
            if self._files.outcome_path.exists():  # a trial's end still to be reported
                await _ping(writer)
            ended = await self._watch(process, reader, writer)
            ran_s = asyncio.get_running_loop().time() - started
            return _Ended(ended.why, ended.code, ran_s)
        finally:
            await self._stop_agent(process)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _watch(
        self,
        process: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> _Ended:
        line: asyncio.Future[bytes] | None = asyncio.ensure_future(reader.readline())
        exited = asyncio.ensure_future(process.wait())
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            while True:
                trial = self._state.trial
                timeout = None if trial is None else max(0.0, trial.deadline - self._clock())
                waiting: set[asyncio.Future[Any]] = {exited, stop}
                if line is not None:
                    waiting.add(line)
                done, _ = await asyncio.wait(
                    waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if line is not None and line in done:  # before an exit: 'healthy' may come last
                    line = await self._on_line(line, reader, writer)
                elif stop in done:
                    logger.info("Supervisor: stopping the agent")
                    return _Ended("stopped")
                elif exited in done:
                    line = await self._drain(line, reader, writer)
                    return _Ended("exited", exited.result())
                elif not done and await self._deadline_passed(process):
                    return _Ended("rolled_back")
        finally:
            for future in (line, exited, stop):
                if future is not None:
                    future.cancel()

    async def _on_line(
        self,
        line: asyncio.Future[bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> asyncio.Future[bytes] | None:
        """Act on one line from the agent; the next read, or None at the end of its stream."""
        try:
            text = line.result()
        except ValueError:  # an overlong line, dropped by the reader
            text = b"\n"
        except OSError:
            return None
        if not text:
            return None
        if text == HEALTHY and self._state.trial is not None:
            await self._trial_healthy(writer)
        return asyncio.ensure_future(reader.readline())

    async def _drain(
        self,
        line: asyncio.Future[bytes] | None,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> asyncio.Future[bytes] | None:
        """Act on what the agent sent before it exited (its end is closed now); the read still
        pending, if any."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_S):
                while line is not None:
                    await asyncio.wait({line})
                    line = await self._on_line(line, reader, writer)
        return line

    async def _deadline_passed(self, process: asyncio.subprocess.Process) -> bool:
        trial = self._state.trial
        if trial is None or self._state.check(self._clock())[0].trial is not None:
            return False  # the wall clock went back: wait for the rest
        logger.warning(
            "Supervisor: %s did not report healthy within %s s; stopping it",
            version_text(trial.version),
            _seconds(self._grace_s),
        )
        await self._stop_agent(process)
        self._roll_back("not_healthy", self._not_healthy_detail())
        return True

    async def _stop_agent(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            async with asyncio.timeout(self._stop_timeout_s):
                await process.wait()
        except TimeoutError:
            logger.warning(
                "Supervisor: the agent did not stop within %s s; killing it",
                _seconds(self._stop_timeout_s),
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def _stop_requested_within(self, delay_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._stop.wait()
        return self._stop.is_set()

    # --- state changes ------------------------------------------------------------------------

    async def _trial_healthy(self, writer: asyncio.StreamWriter) -> None:
        trial = self._state.trial
        assert trial is not None
        self._state = self._state.healthy()
        self._files.save_state(self._state)
        self._files.write_outcome(Outcome(trial.version, "healthy", "", "reported healthy"))
        await _ping(writer)
        logger.info(
            "Supervisor: %s reported healthy; slot %s is active",
            version_text(trial.version),
            trial.slot,
        )

    def _expire_trial(self, reason: str, detail: str) -> None:
        """Roll back a trial whose deadline has passed."""
        if self._state.trial is not None and self._state.check(self._clock())[1]:
            self._roll_back(reason, detail)

    def _roll_back(self, reason: str, detail: str) -> None:
        """End the trial now, as if its deadline had come: back to the previous slot."""
        trial = self._state.trial
        assert trial is not None
        self._state, _ = self._state.check(max(self._clock(), trial.deadline))
        self._files.save_state(self._state)
        self._files.write_outcome(Outcome(trial.version, "rolled_back", reason, detail))
        logger.warning(
            "Supervisor: update %s rolled back (%s); back to slot %s (%s)",
            version_text(trial.version),
            detail,
            self._state.active,
            version_text(self._state.active_version),
        )

    # --- helpers ------------------------------------------------------------------------------

    def _agent_env(self, slot: str, fd: int) -> dict[str, str]:
        env = dict(os.environ)
        env[SUPERVISOR_FD_ENV] = str(fd)
        env[GRACE_ENV] = str(float(self._grace_s))
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONSAFEPATH"] = "1"  # no 'smartlock' in the working directory shadows the slot's
        if self._files.has_code(slot):
            path = str(self._files.slot_dir(slot).absolute())
            existing = env.get("PYTHONPATH")
            env["PYTHONPATH"] = f"{path}{os.pathsep}{existing}" if existing else path
        return env

    def _log_start(self, slot: str) -> None:
        trial = self._state.trial
        if trial is None:
            logger.info(
                "Supervisor: starting slot %s (%s)", slot, version_text(self._state.active_version)
            )
        else:
            logger.info(
                "Supervisor: starting slot %s (%s) on trial: %s s to report healthy",
                slot,
                version_text(trial.version),
                _seconds(max(0.0, trial.deadline - self._clock())),
            )

    def _not_healthy_detail(self) -> str:
        return f"did not report healthy within {_seconds(self._grace_s)} s"


async def _ping(writer: asyncio.StreamWriter) -> None:
    """Tell the agent an outcome is waiting; an agent that is gone misses nothing (the next one
    is pinged when it starts)."""
    with contextlib.suppress(OSError):
        writer.write(OUTCOME)
        await writer.drain()


def _exit_text(code: int) -> str:
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = str(-code)
    return f"killed by signal {name}"


def _seconds(value: float) -> str:
    return format(round(value, 1), "g")
