"""Opening a store: URL rules, mistakes reported as one ConfigError line, SQLite settings."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from smartlock.adapters.store import Store
from smartlock.core.errors import ConfigError
from smartlock.core.roles import Role

SECRET = "hunter2-secret"


def _open_error(url: str, audit_key: bytes) -> str:
    with pytest.raises(ConfigError) as raised:
        Store.open(url, audit_key=audit_key)
    message = str(raised.value)
    assert "\n" not in message
    assert raised.value.__cause__ is None  # no chained traceback for a user's mistake
    return message


@pytest.mark.parametrize(
    "url", ["mysql://root@localhost/test", "redis://localhost", "postgresql+asyncpg://h/db"]
)
def test_unsupported_scheme_is_a_config_error(url: str, audit_key: bytes) -> None:
    assert "unsupported database URL scheme" in _open_error(url, audit_key)


def test_an_unparsable_url_is_not_echoed(audit_key: bytes) -> None:
    message = _open_error(f"nonsense with {SECRET}", audit_key)
    assert "not a database URL" in message
    assert SECRET not in message


def test_sqlite_in_a_missing_directory_is_a_config_error(tmp_path: Path, audit_key: bytes) -> None:
    message = _open_error(f"sqlite:///{tmp_path / 'missing' / 'db.sqlite'}", audit_key)
    assert "missing" in message
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_sqlite_without_a_file_is_a_config_error(url: str, audit_key: bytes) -> None:
    assert "file path" in _open_error(url, audit_key)


def test_a_directory_is_not_a_database(tmp_path: Path, audit_key: bytes) -> None:
    assert "not a regular file" in _open_error(f"sqlite:///{tmp_path}", audit_key)


def test_a_file_that_is_not_a_database_is_a_config_error(tmp_path: Path, audit_key: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are not the tables you are looking for\n" * 100)
    assert "cannot open the database" in _open_error(f"sqlite:///{path}", audit_key)


def test_an_unreachable_server_is_a_config_error_without_the_password(audit_key: bytes) -> None:
    message = _open_error(f"postgresql://smartlock:{SECRET}@127.0.0.1:1/smartlock", audit_key)
    assert "cannot open the database" in message
    assert "127.0.0.1:1" in message
    assert SECRET not in message


def test_a_missing_postgres_database_is_a_config_error_without_the_password(
    postgres_url: URL, audit_key: bytes
) -> None:
    url = postgres_url.set(password=SECRET, database="smartlock_no_such_database")
    message = _open_error(url.render_as_string(hide_password=False), audit_key)
    assert "smartlock_no_such_database" in message
    assert SECRET not in message


def test_the_audit_key_must_be_32_bytes(store_url: str) -> None:
    assert "32 bytes" in _open_error(store_url, b"short")


def test_data_persists_across_reopening(store_url: str, audit_key: bytes) -> None:
    with Store.open(store_url, audit_key=audit_key) as store:
        store.add_user("alice", Role.OWNER, now=1)
        store.add_lock("front", now=1)
    with Store.open(store_url, audit_key=audit_key) as store:
        assert [user.name for user in store.list_users()] == ["alice"]
        assert [lock.lock_id for lock in store.list_locks()] == ["front"]


def test_a_store_can_be_open_twice_at_once(store_url: str, audit_key: bytes) -> None:
    with (
        Store.open(store_url, audit_key=audit_key) as first,
        Store.open(store_url, audit_key=audit_key) as second,
    ):
        first.add_user("alice", Role.OWNER, now=1)
        assert second.get_user("alice") is not None


def test_reopening_a_current_database_changes_nothing(
    store_url: str, audit_key: bytes, raw_engine: Engine
) -> None:
    Store.open(store_url, audit_key=audit_key).close()
    Store.open(store_url, audit_key=audit_key).close()
    with raw_engine.connect() as connection:
        assert connection.scalars(text("SELECT version_num FROM alembic_version")).all() == ["0005"]


def test_a_schema_from_a_newer_smartlock_is_a_config_error(
    store_url: str, audit_key: bytes, raw_engine: Engine
) -> None:
    Store.open(store_url, audit_key=audit_key).close()
    with raw_engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    assert "newer smartlock" in _open_error(store_url, audit_key)


def test_a_new_sqlite_database_is_readable_by_its_owner_only(
    tmp_path: Path, audit_key: bytes
) -> None:
    path = tmp_path / "smartlock.db"
    with Store.open(f"sqlite:///{path}", audit_key=audit_key) as store:
        store.add_user("alice", Role.OWNER, now=1)  # the WAL file exists while the store is open
        files = [path, *tmp_path.glob("smartlock.db-*")]
        assert len(files) >= 2
        for file in files:
            assert stat.S_IMODE(os.stat(file).st_mode) == 0o600, file


def test_sqlite_connections_are_durable_and_wait_for_the_lock(
    tmp_path: Path, audit_key: bytes
) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'smartlock.db'}", audit_key=audit_key) as store:
        with store._engine.connect() as connection:  # the settings live on each connection
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA synchronous").scalar() == 2  # FULL
            assert pragma("PRAGMA busy_timeout").scalar() == 5000
            assert pragma("PRAGMA foreign_keys").scalar() == 1
