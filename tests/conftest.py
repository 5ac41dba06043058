"""Marks the suites that start real processes, and registers the system fixtures they share."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartlock.adapters.processes import Child
from system_harness import LOGS, clock, postgres_url, site_dir, system

__all__ = [
    "clock",
    "postgres_url",
    "site_dir",
    "system",
]  # fixtures, registered by being imported here

SYSTEM_SUITES = ("e2e", "attacks", "faults", "browser")
QUIETENED_LOGGERS = ("bumble", "smartlock.mqtt.paho", "asyncio", "alembic")  # cli_common


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e, tests/attacks and tests/faults is marked ``e2e`` (it starts
    the real broker and radio; deselect with ``-m 'not e2e'``)."""
    here = Path(__file__).parent
    suites = [here / name for name in SYSTEM_SUITES]
    for item in items:
        path = Path(str(item.fspath))
        if any(suite in path.parents for suite in suites):
            item.add_marker(pytest.mark.e2e)


class _RecordLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        LOGS.records.append(self.format(record))


@pytest.fixture(scope="session", autouse=True)
def _every_log_is_scanned_for_secrets() -> Iterator[None]:
    """Feed ``LOGS``: every child process started, and every log record of this process (the
    secret scan of each system reads them; see ``system_harness.assert_no_secret_logged``)."""
    handler = _RecordLog(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    ours = logging.getLogger("smartlock")
    level = ours.level
    ours.setLevel(logging.DEBUG)  # records below the root's WARNING reach the handler too
    start = Child.start

    async def start_and_record(self: Child) -> Child:
        LOGS.children.append(self)
        return await start(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Child, "start", start_and_record)
        yield
    ours.setLevel(level)
    root.removeHandler(handler)


@pytest.fixture
def cli_isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For tests that run ``smartlock`` commands in this process (typer's CliRunner): no site
    or database from the environment, and the logging setup put back afterwards (commands call
    ``logging.basicConfig(force=True)`` on the runner's soon closed stderr and quieten some
    loggers)."""
    monkeypatch.delenv("SMARTLOCK_SITE", raising=False)
    monkeypatch.delenv("SMARTLOCK_DB", raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in QUIETENED_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)
