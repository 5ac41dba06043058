"""The agent's end of the socket its supervisor (``smartlock lock supervise``) hands it.

The supervisor passes one end of a Unix stream socket pair and names its fd in
``SMARTLOCK_SUPERVISOR_FD``.  The protocol is lines of ASCII:

* agent -> supervisor: ``healthy`` -- the agent is up (connected, serving); an update on trial
  becomes the active version (:mod:`smartlock.core.update_slots`);
* supervisor -> agent: ``outcome`` -- a trial ended; ``outcome.json`` in the lock's slots
  (:class:`smartlock.adapters.slot_files.SlotFiles`) says how, for the agent to report.

Anything else is ignored, so either side can learn new lines later.  An agent started without a
supervisor gets ``None`` from :meth:`SupervisorLink.from_env` and has no one to tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import stat
from collections.abc import AsyncIterator
from types import TracebackType

from smartlock.adapters.slot_files import GRACE_ENV, SUPERVISOR_FD_ENV
from smartlock.core.errors import ConfigError, SmartlockError
from smartlock.core.update_slots import GRACE_S

HEALTHY = b"healthy\n"
OUTCOME = b"outcome\n"


class SupervisorGone(SmartlockError):
    """The supervisor's end of the socket is closed: the report could not be sent."""


class SupervisorLink:
    """``async with`` the link, then :meth:`report_healthy` and ``async for`` over
    :meth:`outcome_pings` (from two tasks if need be: one writes, the other reads)."""

    def __init__(self, *, fd: int, grace_s: float = GRACE_S) -> None:
        self.fd = fd
        self.grace_s = grace_s  # how long an update on trial has to report healthy
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @classmethod
    def from_env(cls) -> SupervisorLink | None:
        """The link the supervisor passed, or None when the agent runs without one."""
        raw = os.environ.get(SUPERVISOR_FD_ENV)
        if raw is None:
            return None
        try:
            fd = int(raw)
            if fd < 0:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{SUPERVISOR_FD_ENV} must be a file descriptor number") from None
        try:
            is_socket = stat.S_ISSOCK(os.fstat(fd).st_mode)
        except OSError:
            is_socket = False
        if not is_socket:
            raise ConfigError(f"{SUPERVISOR_FD_ENV}={fd} is not an open socket")
        return cls(fd=fd, grace_s=_grace_from_env())

    async def __aenter__(self) -> SupervisorLink:
        try:
            sock = socket.socket(fileno=self.fd)
        except OSError as exc:
            raise ConfigError(f"{SUPERVISOR_FD_ENV}={self.fd}: {exc.strerror}") from None
        if sock.type != socket.SOCK_STREAM:
            sock.detach()  # not ours to close
            raise ConfigError(f"{SUPERVISOR_FD_ENV}={self.fd} is not a stream socket")
        sock.set_inheritable(False)  # the agent's own children must not hold it open
        self._reader, self._writer = await asyncio.open_connection(sock=sock)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def report_healthy(self) -> None:
        """Tell the supervisor the agent is up; SupervisorGone when it is not listening."""
        if self._writer is None:
            raise RuntimeError("use 'async with' before reporting")
        try:
            self._writer.write(HEALTHY)
            await self._writer.drain()
        except OSError:
            raise SupervisorGone("the supervisor closed its end of the socket") from None

    async def outcome_pings(self) -> AsyncIterator[None]:
        """Yield once per ``outcome`` line; end when the supervisor closes its end."""
        if self._reader is None:
            raise RuntimeError("use 'async with' before reading")
        while True:
            try:
                line = await self._reader.readline()
            except ValueError:  # an overlong line, dropped by the reader: not ours
                continue
            except OSError:
                return
            if not line:
                return
            if line == OUTCOME:
                yield


def _grace_from_env() -> float:
    raw = os.environ.get(GRACE_ENV)
    if raw is None:
        return GRACE_S
    try:
        grace = float(raw)
    except ValueError:
        grace = math.nan
    if not (math.isfinite(grace) and grace > 0):
        raise ConfigError(f"{GRACE_ENV} must be a positive number of seconds")
    return grace
