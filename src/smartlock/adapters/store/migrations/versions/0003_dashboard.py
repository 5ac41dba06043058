"""The web dashboard: owners' and residents' passwords, signed-in sessions, guest invitations.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

Secrets are never stored as such: a password as its scrypt hash, a session cookie and an
invitation code as their SHA-256.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "web_logins",
        sa.Column("user_name", sa.String(32), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("changed_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_name"], ["users.name"], name="fk_web_logins_user_name_users"
        ),
        sa.PrimaryKeyConstraint("user_name", name="pk_web_logins"),
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_digest", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(32), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_name"], ["users.name"], name="fk_web_sessions_user_name_users"
        ),
        sa.PrimaryKeyConstraint("token_digest", name="pk_web_sessions"),
    )
    op.create_index("ix_web_sessions_user_name", "web_sessions", ["user_name"])
    op.create_table(
        "invitations",
        sa.Column("code_digest", sa.String(64), nullable=False),
        sa.Column("pass_id", sa.Integer(), nullable=False),
        sa.Column("guest", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(32), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["pass_id"], ["passes.pass_id"], name="fk_invitations_pass_id_passes"
        ),
        sa.ForeignKeyConstraint(["guest"], ["users.name"], name="fk_invitations_guest_users"),
        sa.PrimaryKeyConstraint("code_digest", name="pk_invitations"),
    )
    op.create_index("ix_invitations_pass_id", "invitations", ["pass_id"])


def downgrade() -> None:
    op.drop_index("ix_invitations_pass_id", table_name="invitations")
    op.drop_table("invitations")
    op.drop_index("ix_web_sessions_user_name", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_table("web_logins")
