"""The store's tables as SQLAlchemy 2 declarative models.

These models describe the schema the migrations build; they never create it.  Real databases are
created and upgraded by Alembic only (``migrations/versions``), and a test compares the migrated
schema with these models, so the two cannot drift apart.

Times are ``BigInteger`` Unix seconds, except ``audit.at_ms`` (Unix milliseconds).  Every
constraint and index has a name from :data:`NAMING_CONVENTION`, so that later migrations can
refer to them on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

IDENTIFIER_LENGTH = 32  # smartlock.core.wire.check_identifier
TAG_LENGTH = 16  # smartlock.crypto.MAC_BYTES
AUDIT_HEAD_ID = 1  # the one row of audit_head
DIGEST_HEX_LENGTH = 64  # smartlock.crypto.token_digest
PASSWORD_HASH_LENGTH = 200  # smartlock.crypto.hash_password (about 90 characters)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UserRow(Base):
    """A user; a removed user keeps its row (``removed_at`` set) for the audit trail."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(IDENTIFIER_LENGTH), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)
    removed_at: Mapped[int | None] = mapped_column(BigInteger)
    # keys issued at or before this are revoked everywhere; kept when the user is added back
    revoked_before: Mapped[int | None] = mapped_column(BigInteger)


class LockRow(Base):
    __tablename__ = "locks"

    lock_id: Mapped[str] = mapped_column(String(IDENTIFIER_LENGTH), primary_key=True)
    added_at: Mapped[int] = mapped_column(BigInteger)
    command_epoch: Mapped[int] = mapped_column(Integer)
    revocation_version: Mapped[int] = mapped_column(Integer)
    last_report_seq: Mapped[int] = mapped_column(BigInteger)  # 0: no report seen yet


class PassRow(Base):
    __tablename__ = "passes"
    __table_args__ = (
        Index(None, "guest", "lock_id"),
        Index(None, "lock_id"),
        {"sqlite_autoincrement": True},  # a pass id is never reused
    )

    pass_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guest: Mapped[str] = mapped_column(ForeignKey("users.name"))
    lock_id: Mapped[str] = mapped_column(ForeignKey("locks.lock_id"))
    valid_from: Mapped[int] = mapped_column(BigInteger)
    valid_until: Mapped[int] = mapped_column(BigInteger)
    max_uses: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer)
    weekly_hours: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)


class AuditRow(Base):
    """One chained audit entry (smartlock.core.audit); ``event_key`` makes redeliveries no-ops."""

    __tablename__ = "audit"
    __table_args__ = (
        Index(None, "lock_id"),
        Index(None, "who"),
        Index(None, "at_ms"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    who: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(Text)
    lock_id: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    result: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    event_key: Mapped[str | None] = mapped_column(Text, unique=True)
    prev_tag: Mapped[bytes] = mapped_column(LargeBinary)
    tag: Mapped[bytes] = mapped_column(LargeBinary)


class AuditHeadRow(Base):
    """The single row that numbers the audit log: the last seq and tag, the writers' lock."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint(f"id = {AUDIT_HEAD_ID}", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_tag: Mapped[bytes] = mapped_column(LargeBinary)


class LockHealthRow(Base):
    __tablename__ = "lock_health"

    lock_id: Mapped[str] = mapped_column(ForeignKey("locks.lock_id"), primary_key=True)
    online: Mapped[bool] = mapped_column()
    last_heartbeat: Mapped[int | None] = mapped_column(BigInteger)
    bolt_state: Mapped[str] = mapped_column(String(16))
    revocation_version_applied: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[int] = mapped_column(BigInteger)


class WebLoginRow(Base):
    """A user's dashboard password, as its scrypt hash (:func:`smartlock.crypto.hash_password`)."""

    __tablename__ = "web_logins"

    user_name: Mapped[str] = mapped_column(ForeignKey("users.name"), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(PASSWORD_HASH_LENGTH))
    changed_at: Mapped[int] = mapped_column(BigInteger)


class WebSessionRow(Base):
    """A signed-in browser: only the SHA-256 of its cookie is kept, with its CSRF token."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index(None, "user_name"),)

    token_digest: Mapped[str] = mapped_column(String(DIGEST_HEX_LENGTH), primary_key=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("users.name"))
    csrf_token: Mapped[str] = mapped_column(String(DIGEST_HEX_LENGTH))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)


class InvitationRow(Base):
    """A one-time enrollment code for a pass's guest: only its SHA-256 is kept."""

    __tablename__ = "invitations"
    __table_args__ = (Index(None, "pass_id"),)

    code_digest: Mapped[str] = mapped_column(String(DIGEST_HEX_LENGTH), primary_key=True)
    pass_id: Mapped[int] = mapped_column(ForeignKey("passes.pass_id"))
    guest: Mapped[str] = mapped_column(ForeignKey("users.name"))
    created_by: Mapped[str] = mapped_column(String(IDENTIFIER_LENGTH))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[int | None] = mapped_column(BigInteger)


class WebTotpRow(Base):
    """An owner's TOTP second factor: the secret sealed with AES-256-GCM under a key derived from
    the audit key (:func:`smartlock.crypto.seal_totp_secret`), and the last time step accepted
    (0: none yet), so that no code signs in twice."""

    __tablename__ = "web_totp"

    user_name: Mapped[str] = mapped_column(ForeignKey("users.name"), primary_key=True)
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    enabled_at: Mapped[int] = mapped_column(BigInteger)
    last_step: Mapped[int] = mapped_column(BigInteger)


class WebRecoveryCodeRow(Base):
    """A one-time recovery code of a user's second factor: only its SHA-256 is kept."""

    __tablename__ = "web_recovery_codes"
    __table_args__ = (Index(None, "user_name"),)

    code_digest: Mapped[str] = mapped_column(String(DIGEST_HEX_LENGTH), primary_key=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("users.name"))
    used_at: Mapped[int | None] = mapped_column(BigInteger)


class LockUpdateRow(Base):
    """The software update pushed to a lock (``smartlock update push``) and the last step the
    lock reported for it; ``running_version`` is what the lock last said it runs."""

    __tablename__ = "lock_updates"

    lock_id: Mapped[str] = mapped_column(ForeignKey("locks.lock_id"), primary_key=True)
    bundle_id: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(20))
    pushed_by: Mapped[str] = mapped_column(String(IDENTIFIER_LENGTH))
    pushed_at: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[str] = mapped_column(String(16))
    step_version: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(32))
    step_at: Mapped[int] = mapped_column(BigInteger)
    running_version: Mapped[str] = mapped_column(String(20))


metadata = Base.metadata
