"""The schema comes from Alembic migrations only, and it matches the models in tables.py."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

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


def test_no_code_creates_tables_outside_the_migrations() -> None:
    source = Path(smartlock.__file__).parent
    offenders = [
        str(path.relative_to(source))
        for path in source.rglob("*.py")
        if "create_all(" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
