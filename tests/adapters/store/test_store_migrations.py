"""The schema comes from Alembic migrations only, and it matches the models in tables.py."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

import smartlock
from smartlock.adapters.store import Store, database
from smartlock.adapters.store.tables import metadata


def test_the_migrated_schema_matches_the_models(
    store_url: str, audit_key: bytes, raw_engine: Engine
) -> None:
    Store.open(store_url, audit_key=audit_key).close()
    with raw_engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_the_migration_can_be_undone_and_redone(
    store_url: str, audit_key: bytes, raw_engine: Engine
) -> None:
    Store.open(store_url, audit_key=audit_key).close()
    with raw_engine.begin() as connection:
        command.downgrade(database.alembic_config(connection), "base")
    assert set(inspect(raw_engine).get_table_names()) == {"alembic_version"}
    with Store.open(store_url, audit_key=audit_key) as store:
        assert store.verify_audit() is None


def _user_columns(engine: Engine) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns("users")}


def test_0002_adds_revoked_before_and_its_downgrade_removes_it(
    store_url: str, audit_key: bytes, raw_engine: Engine
) -> None:
    Store.open(store_url, audit_key=audit_key).close()
    assert "revoked_before" in _user_columns(raw_engine)
    with raw_engine.begin() as connection:
        command.downgrade(database.alembic_config(connection), "0001")
    assert "revoked_before" not in _user_columns(raw_engine)
    with raw_engine.connect() as connection:
        assert connection.scalars(text("SELECT version_num FROM alembic_version")).all() == ["0001"]


def test_upgrading_to_0002_revokes_the_keys_of_users_removed_before_it(
    store_url: str, audit_key: bytes, raw_engine: Engine
) -> None:
    """A database of the previous version: its removed residents' old keys stay revoked."""
    with raw_engine.begin() as connection:
        command.upgrade(database.alembic_config(connection), "0001")
        connection.execute(
            text(
                "INSERT INTO users (name, role, created_at, removed_at) VALUES "
                "('rita', 'resident', 1, 50), ('olga', 'owner', 1, NULL)"
            )
        )
    with Store.open(store_url, audit_key=audit_key) as store:
        assert store.revoked_user_keys(since=0) == [("rita", 50)]
        olga = store.get_user("olga")
        assert olga is not None
        assert olga.active


def test_no_code_creates_tables_outside_the_migrations() -> None:
    source = Path(smartlock.__file__).parent
    offenders = [
        str(path.relative_to(source))
        for path in source.rglob("*.py")
        if "create_all(" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
