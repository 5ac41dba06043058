"""Marks the suites that start real processes, and registers the system fixtures they share."""

from __future__ import annotations

from pathlib import Path

import pytest

from system_harness import postgres_url, site_dir, system

__all__ = ["postgres_url", "site_dir", "system"]  # fixtures, registered by being imported here

SYSTEM_SUITES = ("e2e", "attacks", "faults")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e, tests/attacks and tests/faults is marked ``e2e`` (it starts
    the real broker and radio; deselect with ``-m 'not e2e'``)."""
    here = Path(__file__).parent
    suites = [here / name for name in SYSTEM_SUITES]
    for item in items:
        path = Path(str(item.fspath))
        if any(suite in path.parents for suite in suites):
            item.add_marker(pytest.mark.e2e)
