"""Child processes whose output is relayed line by line and can be waited on.

The demo runs broker, radio hub, backend, lock and guest as separate processes through this;
the end-to-end tests use it the same way.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


class ChildFailed(Exception):
    """A child exited, or did not say what was awaited in time."""


class Child:
    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        on_line: Callable[[str, str], None] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.lines: list[str] = []  # everything it printed, stderr and stdout, as it came
        self.stdout_lines: list[str] = []
        self._on_line = on_line
        self._env = env
        self._cwd = cwd
        self._changed = asyncio.Condition()
        self.process: asyncio.subprocess.Process | None = None
        self._pumps: list[asyncio.Task[None]] = []

    @classmethod
    def smartlock(cls, name: str, *args: str, **kwargs: object) -> Child:
        """A ``smartlock`` subcommand run with this interpreter (no PATH lookup)."""
        return cls(name, [sys.executable, "-m", "smartlock", *args], **kwargs)  # type: ignore[arg-type]

    async def start(self) -> Child:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self._env or {})}
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=self._cwd,
        )
        assert self.process.stdout and self.process.stderr
        self._pumps = [
            asyncio.create_task(
                self._pump(self.process.stderr, self.lines), name=f"{self.name}-stderr"
            ),
            asyncio.create_task(
                self._pump(self.process.stdout, self.stdout_lines, self.lines),
                name=f"{self.name}-stdout",
            ),
        ]
        return self

    async def _pump(self, stream: asyncio.StreamReader, *sinks: list[str]) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            for sink in sinks:
                sink.append(line)
            if self._on_line is not None:
                self._on_line(self.name, line)
            async with self._changed:
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    def output(self) -> str:
        return "\n".join(self.lines)

    def count(self, pattern: str) -> int:
        regex = re.compile(pattern)
        return sum(1 for line in self.lines if regex.search(line))

    async def wait_for(
        self, pattern: str, *, timeout_s: float = 20.0, after: int = 0
    ) -> re.Match[str]:
        """The first log line from index ``after`` matching ``pattern``; fails on exit/timeout."""
        regex = re.compile(pattern)
        index = after

        def scan() -> re.Match[str] | None:
            nonlocal index
            while index < len(self.lines):
                match = regex.search(self.lines[index])
                index += 1
                if match:
                    return match
            return None

        try:
            async with asyncio.timeout(timeout_s):
                async with self._changed:
                    while True:
                        match = scan()
                        if match:
                            return match
                        if self.exited():
                            break
                        await self._changed.wait()
        except TimeoutError:
            raise ChildFailed(
                f"{self.name} did not log /{pattern}/ within {timeout_s:.0f} s; last lines:\n"
                + "\n".join(self.lines[-15:])
            ) from None
        await asyncio.gather(*self._pumps)
        match = scan()
        if match:
            return match
        raise ChildFailed(
            f"{self.name} exited with code {self.returncode} before logging /{pattern}/; "
            "last lines:\n" + "\n".join(self.lines[-15:])
        )

    def exited(self) -> bool:
        return self.process is not None and self.process.returncode is not None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    async def wait(self, *, timeout_s: float = 60.0) -> int:
        assert self.process
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout_s)
        except TimeoutError:
            raise ChildFailed(
                f"{self.name} still running after {timeout_s:.0f} s; last lines:\n"
                + "\n".join(self.lines[-15:])
            ) from None
        await asyncio.gather(*self._pumps)
        return code

    async def stop(self, sig: int = signal.SIGTERM, *, timeout_s: float = 10.0) -> int | None:
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(sig)
            try:
                await asyncio.wait_for(self.process.wait(), timeout_s)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        return self.process.returncode
