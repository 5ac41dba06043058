"""smartlock.adapters.supervisor_link: the agent finds the socket its supervisor passed in the
environment, says ``healthy`` on it and hears each ``outcome`` ping; without a supervisor there
is no link, and a wrong fd or grace period is a clear ConfigError."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator

import pytest

from smartlock.adapters.slot_files import GRACE_ENV, SUPERVISOR_FD_ENV
from smartlock.adapters.supervisor_link import SupervisorGone, SupervisorLink
from smartlock.core.errors import ConfigError
from smartlock.core.update_slots import GRACE_S


@pytest.fixture
def pair(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the supervisor's end, the agent's end named in the environment).  A test that enters
    the link detaches the agent's end first: the link closes it."""
    supervisor, agent = socket.socketpair()
    monkeypatch.setenv(SUPERVISOR_FD_ENV, str(agent.fileno()))
    monkeypatch.delenv(GRACE_ENV, raising=False)
    yield supervisor, agent
    supervisor.close()
    agent.close()  # nothing to do once detached


def test_an_agent_without_a_supervisor_has_no_link(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SUPERVISOR_FD_ENV, raising=False)
    assert SupervisorLink.from_env() is None


@pytest.mark.parametrize("value", ["", "three", "-1", "1.5"])
def test_a_supervisor_fd_that_is_no_number_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(SUPERVISOR_FD_ENV, value)
    with pytest.raises(ConfigError, match=SUPERVISOR_FD_ENV):
        SupervisorLink.from_env()


def test_a_supervisor_fd_that_is_no_open_socket_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read, write = os.pipe()
    try:
        monkeypatch.setenv(SUPERVISOR_FD_ENV, str(read))
        with pytest.raises(ConfigError, match="not an open socket"):
            SupervisorLink.from_env()
    finally:
        os.close(read)
        os.close(write)
    monkeypatch.setenv(SUPERVISOR_FD_ENV, "987654")  # not open at all
    with pytest.raises(ConfigError, match="not an open socket"):
        SupervisorLink.from_env()


def test_the_grace_period_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, pair: tuple[socket.socket, socket.socket]
) -> None:
    link = SupervisorLink.from_env()
    assert link is not None
    assert link.grace_s == GRACE_S
    monkeypatch.setenv(GRACE_ENV, "0.5")
    link = SupervisorLink.from_env()
    assert link is not None
    assert link.grace_s == 0.5


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf", "soon", ""])
def test_a_grace_period_that_is_no_positive_number_is_refused(
    monkeypatch: pytest.MonkeyPatch, pair: tuple[socket.socket, socket.socket], value: str
) -> None:
    monkeypatch.setenv(GRACE_ENV, value)
    with pytest.raises(ConfigError, match=GRACE_ENV):
        SupervisorLink.from_env()


async def test_healthy_reaches_the_supervisor(pair: tuple[socket.socket, socket.socket]) -> None:
    supervisor, agent = pair
    link = SupervisorLink.from_env()
    assert link is not None
    agent.detach()
    async with link:
        await link.report_healthy()
    supervisor.settimeout(5)
    assert supervisor.recv(100) == b"healthy\n"
    assert supervisor.recv(100) == b""  # the link closed its end on leaving


async def test_each_outcome_ping_is_yielded_until_the_supervisor_closes(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    supervisor, agent = pair
    link = SupervisorLink.from_env()
    assert link is not None
    agent.detach()
    pings = 0
    async with link:
        supervisor.sendall(b"outcome\nsomething new\n" + b"x" * 100_000 + b"\noutcome\n")
        supervisor.shutdown(socket.SHUT_WR)
        async with asyncio.timeout(5):
            async for _ in link.outcome_pings():
                pings += 1
    assert pings == 2


async def test_a_report_to_a_gone_supervisor_is_one_named_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    supervisor, agent = pair
    link = SupervisorLink.from_env()
    assert link is not None
    agent.detach()

    async def keep_reporting() -> None:
        for _ in range(100):  # in case the kernel takes a first write
            await link.report_healthy()

    async with link:
        supervisor.close()
        with pytest.raises(SupervisorGone):
            await asyncio.wait_for(keep_reporting(), 5)
