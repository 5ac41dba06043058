"""Software updates: the bundle pushed to each lock and the last step it reported.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "lock_updates",
        sa.Column("lock_id", sa.String(32), nullable=False),
        sa.Column("bundle_id", sa.String(32), nullable=False),
        sa.Column("version", sa.String(20), nullable=False),
        sa.Column("pushed_by", sa.String(32), nullable=False),
        sa.Column("pushed_at", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.String(16), nullable=False),
        sa.Column("step_version", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("step_at", sa.BigInteger(), nullable=False),
        sa.Column("running_version", sa.String(20), nullable=False),
        sa.ForeignKeyConstraint(
            ["lock_id"], ["locks.lock_id"], name="fk_lock_updates_lock_id_locks"
        ),
        sa.PrimaryKeyConstraint("lock_id", name="pk_lock_updates"),
    )


def downgrade() -> None:
    op.drop_table("lock_updates")
