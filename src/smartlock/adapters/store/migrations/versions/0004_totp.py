"""The dashboard's second factor: owners' TOTP secrets (sealed) and their recovery codes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

The TOTP secret is stored sealed (AES-256-GCM under a key derived from the audit key, which is
kept outside the database); a recovery code as its SHA-256 only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "web_totp",
        sa.Column("user_name", sa.String(32), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("enabled_at", sa.BigInteger(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["user_name"], ["users.name"], name="fk_web_totp_user_name_users"),
        sa.PrimaryKeyConstraint("user_name", name="pk_web_totp"),
    )
    op.create_table(
        "web_recovery_codes",
        sa.Column("code_digest", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(32), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_name"], ["users.name"], name="fk_web_recovery_codes_user_name_users"
        ),
        sa.PrimaryKeyConstraint("code_digest", name="pk_web_recovery_codes"),
    )
    op.create_index("ix_web_recovery_codes_user_name", "web_recovery_codes", ["user_name"])


def downgrade() -> None:
    op.drop_index("ix_web_recovery_codes_user_name", table_name="web_recovery_codes")
    op.drop_table("web_recovery_codes")
    op.drop_table("web_totp")
