"""Opening a database: URL rules, engine settings, and migrating to the current schema.

URLs:

* ``sqlite:///PATH`` -- a file whose directory must exist (a missing directory is a mistake, not
  something to create silently).  A new file is created with mode 0600.  Every connection sets
  ``journal_mode=WAL``, ``synchronous=FULL`` (a committed audit entry survives ``kill -9`` and
  power loss), ``busy_timeout=5000`` and ``foreign_keys=ON``.  Write transactions start with
  ``BEGIN IMMEDIATE``, so a writer takes the database's write lock before it reads what it is
  about to change (no lock upgrade, hence no deadlock between two processes); read transactions
  start with a deferred ``BEGIN`` and see one snapshot.
* ``postgresql://...`` or ``postgresql+psycopg://...`` -- PostgreSQL through psycopg 3 (a plain
  ``postgresql://`` is given that driver).

Anything else, an unreachable server or an unreadable file is a :class:`ConfigError` with a
one-line message; a password in the URL never appears in it.

The schema is created and upgraded by Alembic only (:func:`upgrade_to_head`), never by
``metadata.create_all``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from smartlock.core.errors import ConfigError

WRITE = "smartlock_write"
"""Execution option of the engine used for writes: SQLite starts its transactions IMMEDIATE."""

SQLITE_PRAGMAS = ("busy_timeout=5000", "journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON")
"""Set on every SQLite connection, in this order (the busy timeout first, so that switching to
WAL waits for another process instead of failing)."""

MIGRATIONS = Path(__file__).with_name("migrations")

_MIGRATION_LOCK = 0x534D4C4B  # "SMLK": PostgreSQL advisory lock held while migrating
_POSTGRES_CONNECT_TIMEOUT_S = 10
_SUPPORTED = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}


def parse_url(text_url: str) -> URL:
    """The URL to connect to, with PostgreSQL's driver made explicit; ConfigError if unusable."""
    try:
        url = make_url(text_url)
    except ArgumentError:
        # Not echoed: an unparsable URL may still hold a password.
        raise ConfigError(
            "not a database URL: use sqlite:///PATH or postgresql://USER@HOST[:PORT]/DATABASE"
        ) from None
    drivername = _SUPPORTED.get(url.drivername)
    if drivername is None:
        raise ConfigError(
            f"unsupported database URL scheme {url.drivername!r}: "
            "use sqlite:///PATH or postgresql://USER@HOST[:PORT]/DATABASE"
        )
    return url.set(drivername=drivername)


def safe_url(url: URL) -> str:
    """The URL for messages: the password, if any, is masked."""
    return url.render_as_string(hide_password=True)


def create(url: URL) -> Engine:
    """An engine for ``url`` (from :func:`parse_url`) with smartlock's connection settings.

    No connection is made yet: :func:`upgrade_to_head` makes the first one.
    """
    if url.get_backend_name() == "sqlite":
        return _create_sqlite(url)
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"connect_timeout": _POSTGRES_CONNECT_TIMEOUT_S},
    )


def _create_sqlite(url: URL) -> Engine:
    if not url.database or url.database == ":memory:" or url.query:
        raise ConfigError("SQLite needs a file path and no options: sqlite:///PATH")
    path = Path(url.database)
    if not path.parent.is_dir():
        raise ConfigError(f"cannot create the database {path}: directory {path.parent} is missing")
    if path.exists():
        if not path.is_file():
            raise ConfigError(f"cannot open the database {path}: not a regular file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise ConfigError(f"cannot open the database {path}: no permission to read and write")
    else:
        _create_private_file(path)
    engine = create_engine(url)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _create_private_file(path: Path) -> None:
    """An empty file (a valid empty SQLite database) readable by its owner only."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first: it set the same mode
    except OSError as exc:
        raise ConfigError(f"cannot create the database {path}: {exc.strerror}") from None
    os.close(fd)


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # The sqlite3 module must not start transactions on its own; _begin_sqlite_transaction does.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    write = bool(connection.get_execution_options().get(WRITE, False))
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def alembic_config(connection: Connection) -> Config:
    """Alembic's config for smartlock's migrations, running on ``connection`` (no ini file)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade_to_head(engine: Engine, url: URL) -> None:
    """Run Alembic's ``upgrade head`` on ``engine``, holding the database's migration lock.

    A database that is already current is left unchanged, so every open may call this.  Errors a
    user can fix (unreachable server, not a database, a schema from a newer smartlock) become a
    :class:`ConfigError`.
    """
    try:
        with engine.connect() as connection:
            connection.execution_options(**{WRITE: True})
            with connection.begin():
                if engine.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                    )
                command.upgrade(alembic_config(connection), "head")
    except DBAPIError as exc:
        raise ConfigError(
            f"cannot open the database {safe_url(url)}: {_first_line(exc, url)}"
        ) from None
    except CommandError as exc:
        raise ConfigError(
            f"cannot upgrade the database {safe_url(url)}: {_first_line(exc, url)} "
            "(was it written by a newer smartlock?)"
        ) from None


def _first_line(exc: BaseException, url: URL) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    line = lines[0].strip() if lines else type(cause).__name__
    if url.password:
        line = line.replace(str(url.password), "***")
    return line
