"""The initial schema: users, locks, passes, the chained audit log and its head, lock health.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Written out in full rather than built from tables.py: a migration is a fixed historical step,
while the models change.  tests/adapters/store/test_migrations.py checks that the two agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_ID = 32  # identifier length (smartlock.core.wire.check_identifier)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(_ID), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("removed_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_users"),
    )
    op.create_table(
        "locks",
        sa.Column("lock_id", sa.String(_ID), nullable=False),
        sa.Column("added_at", sa.BigInteger(), nullable=False),
        sa.Column("command_epoch", sa.Integer(), nullable=False),
        sa.Column("revocation_version", sa.Integer(), nullable=False),
        sa.Column("last_report_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("lock_id", name="pk_locks"),
    )
    op.create_table(
        "passes",
        sa.Column("pass_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("guest", sa.String(_ID), nullable=False),
        sa.Column("lock_id", sa.String(_ID), nullable=False),
        sa.Column("valid_from", sa.BigInteger(), nullable=False),
        sa.Column("valid_until", sa.BigInteger(), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("weekly_hours", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["guest"], ["users.name"], name="fk_passes_guest_users"),
        sa.ForeignKeyConstraint(["lock_id"], ["locks.lock_id"], name="fk_passes_lock_id_locks"),
        sa.PrimaryKeyConstraint("pass_id", name="pk_passes"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_passes_guest_lock_id", "passes", ["guest", "lock_id"])
    op.create_index("ix_passes_lock_id", "passes", ["lock_id"])
    op.create_table(
        "audit",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("who", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("lock_id", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("event_key", sa.Text(), nullable=True),
        sa.Column("prev_tag", sa.LargeBinary(), nullable=False),
        sa.Column("tag", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit"),
        sa.UniqueConstraint("event_key", name="uq_audit_event_key"),
    )
    op.create_index("ix_audit_lock_id", "audit", ["lock_id"])
    op.create_index("ix_audit_who", "audit", ["who"])
    op.create_index("ix_audit_at_ms", "audit", ["at_ms"])
    audit_head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_tag", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
        sa.CheckConstraint("id = 1", name="ck_audit_head_single_row"),
    )
    # The empty chain: no entry yet, and the genesis tag (smartlock.core.audit.GENESIS_TAG).
    op.bulk_insert(audit_head, [{"id": 1, "last_seq": 0, "last_tag": bytes(16)}])
    op.create_table(
        "lock_health",
        sa.Column("lock_id", sa.String(_ID), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_heartbeat", sa.BigInteger(), nullable=True),
        sa.Column("bolt_state", sa.String(16), nullable=False),
        sa.Column("revocation_version_applied", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lock_id"], ["locks.lock_id"], name="fk_lock_health_lock_id_locks"
        ),
        sa.PrimaryKeyConstraint("lock_id", name="pk_lock_health"),
    )


def downgrade() -> None:
    op.drop_table("lock_health")
    op.drop_table("audit_head")
    op.drop_index("ix_audit_at_ms", table_name="audit")
    op.drop_index("ix_audit_who", table_name="audit")
    op.drop_index("ix_audit_lock_id", table_name="audit")
    op.drop_table("audit")
    op.drop_index("ix_passes_lock_id", table_name="passes")
    op.drop_index("ix_passes_guest_lock_id", table_name="passes")
    op.drop_table("passes")
    op.drop_table("locks")
    op.drop_table("users")
