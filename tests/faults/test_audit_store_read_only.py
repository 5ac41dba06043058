"""Fault: the audit store turns read-only under a running backend (PostgreSQL).

As when a database fails over to a read-only standby: the backend's connections are cut, and
the new ones may read but not write.  The backend must fail closed -- no key and no remote
command it cannot log, and the requester told why -- and work again once the database writes.

The site gets a database of its own on the machine's PostgreSQL (skipped, with the reason,
where no server answers), made read-only with ``default_transaction_read_only``.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from system_harness import (
    OWNER,
    POSTGRES_URL,
    System,
    cli,
    cli_json,
    new_site_dir,
    provision,
    run_guest,
    start_system,
)


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[Engine, str]]:
    """A fresh database (its name, and an engine on the server's maintenance database)."""
    server = create_engine(
        make_url(POSTGRES_URL).set(database="postgres"),
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )
    name = f"smartlock_ro_{secrets.token_hex(4)}"
    try:
        with server.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except SQLAlchemyError as exc:
        pytest.skip(f"needs a PostgreSQL server at {POSTGRES_URL} ({type(exc).__name__})")
    try:
        yield server, name
    finally:
        with server.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def read_only(database: tuple[Engine, str], on: bool) -> None:
    """Make new sessions of the database read-only (or writable), and cut the current ones."""
    server, name = database
    setting = (
        "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
    )
    with server.connect() as connection:
        connection.execute(text(f'ALTER DATABASE "{name}" {setting}'))
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )


@pytest_asyncio.fixture(scope="module")
async def system(database: tuple[Engine, str]) -> AsyncIterator[System]:
    root = new_site_dir()
    url = make_url(POSTGRES_URL).set(database=database[1]).render_as_string(hide_password=False)
    running = await start_system(provision(root, db=url))
    try:
        yield running
    finally:
        await running.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_a_read_only_store_refuses_access_it_cannot_log_then_recovers(
    system: System, database: tuple[Engine, str]
) -> None:
    assert (await run_guest(system.site, "lock_01", "guest_01")).returncode == 0
    lock_02 = system.locks["lock_02"]
    read_only(database, on=True)
    try:
        guest = await run_guest(system.site, "lock_01", "guest_01")
        assert guest.returncode == 2, guest.output()
        assert "audit_unavailable" in guest.output(), guest.output()
        await system.backend.wait_for(r"Store unavailable, key for guest_01 on lock_01 refused")
        before = lock_02.count(r"UNLOCKED lock_02")
        remote = await cli(system.site, "remote", "unlock", "lock_02", "--id", OWNER)
        assert remote.returncode == 1, remote.output()
        assert "denied: audit_unavailable" in remote.output()
        assert lock_02.count(r"UNLOCKED lock_02") == before
    finally:
        read_only(database, on=False)
    assert (await run_guest(system.site, "lock_01", "guest_01")).returncode == 0
    answer = await cli_json(system.site, "remote", "unlock", "lock_02", "--id", OWNER)
    assert answer["result"] == "done", answer
    audit = await cli_json(system.site, "audit", "--user", "guest_01")
    granted = [e for e in audit if e["action"] == "key_request" and e["result"] == "granted"]
    assert len(granted) == 2  # before and after; none while the store could not write
    verified = await cli(system.site, "audit", "verify")
    assert verified.returncode == 0, verified.output()
