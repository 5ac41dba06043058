"""Alembic's environment for the store: runs on the connection that ``Store.open`` passes in.

smartlock has no ``alembic.ini``: :meth:`smartlock.adapters.store.Store.open` builds the Alembic
config in code and hands over an open connection, already inside the transaction that holds the
database's migration lock, as ``config.attributes["connection"]``.  Offline (SQL script) mode is
not supported.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from smartlock.adapters.store.tables import metadata


def run_migrations() -> None:
    if context.is_offline_mode():
        raise RuntimeError("smartlock's migrations run online only, through Store.open")
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise TypeError("smartlock's migrations run through Store.open, which passes a connection")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
