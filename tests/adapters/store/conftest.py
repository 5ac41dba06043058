"""Every store test runs twice: on SQLite in ``tmp_path`` and on a real PostgreSQL server.

PostgreSQL: ``$SMARTLOCK_TEST_POSTGRES_URL``, else ``postgresql://postgres@127.0.0.1:5432/test``.
Each test run picks a random schema prefix; each test gets its own fresh schema under it
(selected with ``options=-csearch_path=...`` in the URL), dropped after the test, and whatever is
left under the prefix is dropped at the end of the run.  When no server answers, the PostgreSQL
variants are skipped with the reason, and the terminal summary says so in a line of its own.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from smartlock.adapters.store import Store, database
from smartlock.core.errors import ConfigError

AUDIT_KEY = bytes(range(32))
POSTGRES_URL_VARIABLE = "SMARTLOCK_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

_postgres_skip_reasons: list[str] = []


@dataclass
class PostgresServer:
    """The server every PostgreSQL variant uses, or why there is none."""

    url: URL | None
    unavailable_reason: str = ""
    schema_prefix: str = field(default_factory=lambda: f"smartlock_test_{secrets.token_hex(4)}")
    _counter: Iterator[int] = field(default_factory=itertools.count)

    def admin_engine(self) -> Engine:
        assert self.url is not None
        return create_engine(
            self.url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": 3},
        )

    def new_schema(self) -> str:
        return f"{self.schema_prefix}_{next(self._counter)}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    raw = os.environ.get(POSTGRES_URL_VARIABLE, DEFAULT_POSTGRES_URL)
    try:
        url = database.parse_url(raw)
    except ConfigError as exc:
        yield PostgresServer(url=None, unavailable_reason=f"{POSTGRES_URL_VARIABLE}: {exc}")
        return
    server = PostgresServer(url=url)
    try:
        engine = server.admin_engine()
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        first_line = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        server.url = None
        server.unavailable_reason = (
            f"no PostgreSQL server at {database.safe_url(url)} ({first_line}); "
            f"start one or set {POSTGRES_URL_VARIABLE}"
        )
        yield server
        return
    try:
        yield server
    finally:
        with engine.connect() as connection:
            leftovers = connection.scalars(
                text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :prefix"),
                {"prefix": f"{server.schema_prefix}%"},
            ).all()
            for schema in leftovers:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def _skip_postgres(server: PostgresServer) -> None:
    if server.unavailable_reason not in _postgres_skip_reasons:
        _postgres_skip_reasons.append(server.unavailable_reason)
    pytest.skip(f"PostgreSQL variant SKIPPED: {server.unavailable_reason}")


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> URL:
    """The test server's URL (its default schema: create nothing there), or skip."""
    if postgres_server.url is None:
        _skip_postgres(postgres_server)
    assert postgres_server.url is not None
    return postgres_server.url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer
) -> Iterator[str]:
    """A URL of an empty database (no schema yet) for one test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'smartlock.db'}"
        return
    if postgres_server.url is None:
        _skip_postgres(postgres_server)
    assert postgres_server.url is not None
    schema = postgres_server.new_schema()
    admin = postgres_server.admin_engine()
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = postgres_server.url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def audit_key() -> bytes:
    return AUDIT_KEY


@pytest.fixture
def store(store_url: str, audit_key: bytes) -> Iterator[Store]:
    with Store.open(store_url, audit_key=audit_key) as opened:
        yield opened


@pytest.fixture
def raw_engine(store_url: str) -> Iterator[Engine]:
    """A plain engine on the test's database, for what an attacker with SQL access would do."""
    engine = create_engine(database.parse_url(store_url), poolclass=NullPool)
    yield engine
    engine.dispose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for reason in _postgres_skip_reasons:
        terminalreporter.write_sep("!", "store tests did NOT run on PostgreSQL", yellow=True)
        terminalreporter.write_line(reason, yellow=True)
