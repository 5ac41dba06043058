"""Users remember when their keys were last revoked, also after they are added back.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

``revoked_before``: keys issued to this user at or before this time are revoked at every lock
(set when an owner or resident is removed, never cleared), so a person added back under the
same name, in any role, does not get their old keys' power back.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("revoked_before", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE users SET revoked_before = removed_at "
        "WHERE removed_at IS NOT NULL AND role <> 'guest'"
    )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("revoked_before")
