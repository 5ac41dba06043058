"""The persistent store: users, locks, passes, the chained audit log and lock health.

:class:`Store` is synchronous (SQLAlchemy 2) and safe to share between threads; several processes
may open the same database.  It returns the plain records of :mod:`.records`, never SQLAlchemy
objects.  Refusals a user can act on (unknown user, overlapping pass, ...) raise
:class:`StoreError` with a message meant for that user.

Concurrency rules:

* every write runs in one transaction that first takes the lock it needs: on SQLite the whole
  database (``BEGIN IMMEDIATE``), on PostgreSQL the rows it is about to change
  (``SELECT ... FOR UPDATE``);
* audit entries are numbered and chained under the ``audit_head`` row (last seq and tag), which
  the append updates in the same transaction: concurrent writers, in any process, produce one
  gap-free chain (:mod:`smartlock.core.audit`);
* counters change in the database (``uses = uses + 1``), never read-modify-write in Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from sqlalchemy import ColumnElement, Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InternalError, OperationalError
from sqlalchemy.orm import InstrumentedAttribute, Session

from smartlock.adapters.store import audit_log, database, rows
from smartlock.adapters.store.dashboard import DashboardStore
from smartlock.adapters.store.records import (
    AuditEntry,
    AuditRecord,
    LockHealth,
    LockRecord,
    PassRecord,
    UserRecord,
)
from smartlock.adapters.store.tables import (
    LockHealthRow,
    LockRow,
    PassRow,
    UserRow,
    WebLoginRow,
    WebRecoveryCodeRow,
    WebSessionRow,
    WebTotpRow,
)
from smartlock.adapters.store.updates import UpdatesStore
from smartlock.core.errors import ConfigError, StoreError, StoreUnavailable
from smartlock.core.issuance import MAX_KEY_TTL_S
from smartlock.core.roles import Role
from smartlock.core.wire import check_identifier

__all__ = [
    "AuditEntry",
    "AuditRecord",
    "LockHealth",
    "LockRecord",
    "PassRecord",
    "Store",
    "UserRecord",
]

AUDIT_KEY_BYTES = 32


class Store(DashboardStore, UpdatesStore):
    """The backend's database.  Open it with :meth:`open`; close it (or use ``with``)."""

    def __init__(self, engine: Engine, *, audit_key: bytes) -> None:
        """Wrap an engine from :func:`.database.create`, already migrated (see :meth:`open`)."""
        self._engine = engine
        self._write_engine: Engine = engine.execution_options(**{database.WRITE: True})
        self._snapshot_engine: Engine
        if engine.dialect.name == "postgresql":
            self._snapshot_engine = engine.execution_options(isolation_level="REPEATABLE READ")
        else:  # SQLite in WAL mode: a read transaction already sees one snapshot
            self._snapshot_engine = engine
        self._audit_key = audit_key

    @classmethod
    def open(cls, url: str, *, audit_key: bytes) -> Store:
        """Connect to ``url``, bring its schema to the current version, and return the store.

        ``audit_key`` (32 bytes, kept outside the database) keys the audit chain.  Raises
        :class:`ConfigError` for an unsupported URL, a missing directory, an unreachable server
        or a database that is not smartlock's (see :mod:`.database`).
        """
        if len(audit_key) != AUDIT_KEY_BYTES:
            raise ConfigError(f"the audit key must be {AUDIT_KEY_BYTES} bytes")
        parsed = database.parse_url(url)
        engine = database.create(parsed)
        try:
            database.upgrade_to_head(engine, parsed)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, audit_key=audit_key)

    def close(self) -> None:
        """Close every pooled connection; the store is unusable afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    # --- transactions ------------------------------------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """One write transaction; a database that cannot write raises :class:`StoreUnavailable`."""
        try:
            with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
                yield session
        except (OperationalError, InternalError) as exc:  # disk full, read-only, server gone
            raise StoreUnavailable(f"the database cannot be written ({_cause(exc)})") from None

    @contextmanager
    def _reading(self, *, snapshot: bool = False) -> Iterator[Session]:
        engine = self._snapshot_engine if snapshot else self._engine
        with Session(engine) as session, session.begin():
            yield session

    # --- users -------------------------------------------------------------------------------

    def add_user(self, name: str, role: Role, *, now: int) -> UserRecord:
        """Add a user, or bring back a removed one under ``role`` (its old passes stay revoked;
        every lock gets a revocation list that no longer names the user)."""
        _identifier(name, "user name")
        role = Role(role)
        try:
            with self._writing() as session:
                row = session.get(UserRow, name, with_for_update=True)
                if row is None:
                    row = UserRow(name=name, role=role.value, created_at=now, removed_at=None)
                    session.add(row)
                elif row.removed_at is None:
                    raise StoreError(f"user {name} already exists")
                else:
                    row.role, row.created_at, row.removed_at = role.value, now, None
                    # the locks' lists name the user as removed: new lists without the name
                    all_locks = set(session.scalars(select(LockRow.lock_id)).all())
                    _bump_revocation_versions(session, all_locks)
                return rows.user_record(row)
        except IntegrityError:  # another process added the same name meanwhile
            raise StoreError(f"user {name} already exists") from None

    def remove_user(self, name: str, *, now: int) -> list[int]:
        """Remove a user (the row stays, marked removed) and revoke every pass it still holds.

        Every lock gets one revocation-version bump: the removed user is named in every lock's
        revocation list (an owner's or resident's keys work at any lock and have no pass to
        revoke).  Returns the revoked pass ids.
        """
        with self._writing() as session:
            row = session.get(UserRow, name, with_for_update=True)
            if row is None:
                raise StoreError(f"unknown user {name}")
            if row.removed_at is not None:
                raise StoreError(f"user {name} was already removed")
            row.removed_at = now
            # a name added back later is a new person: no old password, session or second factor
            session.execute(delete(WebSessionRow).where(WebSessionRow.user_name == name))
            session.execute(delete(WebLoginRow).where(WebLoginRow.user_name == name))
            session.execute(delete(WebTotpRow).where(WebTotpRow.user_name == name))
            session.execute(delete(WebRecoveryCodeRow).where(WebRecoveryCodeRow.user_name == name))
            if row.role != Role.GUEST.value:  # a guest's keys all carry a pass, revoked below
                row.revoked_before = now
            passes = session.scalars(
                select(PassRow)
                .where(PassRow.guest == name, PassRow.revoked_at.is_(None))
                .order_by(PassRow.pass_id)
                .with_for_update()
            ).all()
            for pass_row in passes:
                pass_row.revoked_at = now
            _bump_revocation_versions(session, set(session.scalars(select(LockRow.lock_id)).all()))
            return [pass_row.pass_id for pass_row in passes]

    def get_user(self, name: str) -> UserRecord | None:
        """The user, removed or not (see :attr:`UserRecord.active`)."""
        with self._reading() as session:
            row = session.get(UserRow, name)
            return None if row is None else rows.user_record(row)

    def list_users(self, *, include_removed: bool = False) -> list[UserRecord]:
        query = select(UserRow).order_by(UserRow.name)
        if not include_removed:
            query = query.where(UserRow.removed_at.is_(None))
        with self._reading() as session:
            return [rows.user_record(row) for row in session.scalars(query)]

    def revoked_user_keys(self, *, since: int) -> list[tuple[str, int]]:
        """``(name, revoked_before)`` of users removed as owners or residents at or after
        ``since`` -- also those added back since, in any role: their keys from before the
        removal stay revoked.

        Removed guests are not listed: their keys carry a pass id, and removal revoked their
        passes.
        """
        query = (
            select(UserRow.name, UserRow.revoked_before)
            .where(UserRow.revoked_before >= since)
            .order_by(UserRow.revoked_before, UserRow.name)
        )
        with self._reading() as session:
            return [(name, int(before or 0)) for name, before in session.execute(query)]

    # --- locks -------------------------------------------------------------------------------

    def add_lock(self, lock_id: str, *, now: int) -> LockRecord:
        _identifier(lock_id, "lock id")
        try:
            with self._writing() as session:
                if session.get(LockRow, lock_id) is not None:
                    raise StoreError(f"lock {lock_id} already exists")
                row = LockRow(
                    lock_id=lock_id,
                    added_at=now,
                    command_epoch=1,
                    revocation_version=1,
                    last_report_seq=0,
                )
                session.add(row)
                return rows.lock_record(row)
        except IntegrityError:
            raise StoreError(f"lock {lock_id} already exists") from None

    def get_lock(self, lock_id: str) -> LockRecord | None:
        with self._reading() as session:
            row = session.get(LockRow, lock_id)
            return None if row is None else rows.lock_record(row)

    def list_locks(self) -> list[LockRecord]:
        with self._reading() as session:
            return [
                rows.lock_record(row)
                for row in session.scalars(select(LockRow).order_by(LockRow.lock_id))
            ]

    def reset_lock(self, lock_id: str) -> LockRecord:
        """Start a new command epoch for the lock (a new per-lock command key), e.g. for a lock
        whose state was lost or that was replaced: its report numbering starts again."""
        with self._writing() as session:
            row = session.scalars(
                update(LockRow)
                .where(LockRow.lock_id == lock_id)
                # a new key: reports under it start again from 1 (old ones fail its MAC anyway)
                .values(command_epoch=LockRow.command_epoch + 1, last_report_seq=0)
                .returning(LockRow)
            ).one_or_none()
            if row is None:
                raise StoreError(f"unknown lock {lock_id}")
            return rows.lock_record(row)

    def advance_report_seq(self, lock_id: str, seq: int) -> bool:
        """Record ``seq`` as the lock's latest report if it is newer than every earlier one.

        Returns ``False`` for a replayed or reordered report (``seq`` not above the last).  Reports
        are numbered from 1.  Raises :class:`StoreError` for an unknown lock.
        """
        with self._writing() as session:
            advanced = session.scalars(
                update(LockRow)
                .where(LockRow.lock_id == lock_id, LockRow.last_report_seq < seq)
                .values(last_report_seq=seq)
                .returning(LockRow.lock_id)
            ).first()
            if advanced is not None:
                return True
            if session.get(LockRow, lock_id) is None:
                raise StoreError(f"unknown lock {lock_id}")
            return False

    # --- passes ------------------------------------------------------------------------------

    def grant_pass(
        self,
        guest: str,
        lock_id: str,
        *,
        valid_from: int,
        valid_until: int,
        max_uses: int | None,
        weekly_hours: str | None,
        now: int,
    ) -> PassRecord:
        """Give ``guest`` a pass to ``lock_id`` from ``valid_from`` until ``valid_until``.

        Refused (:class:`StoreError`) for an unknown or removed user, a user who is not a guest,
        an unknown lock, an empty or already expired window, ``max_uses`` below 1, and a window
        that overlaps another live pass of the same guest on the same lock.  ``weekly_hours`` is
        stored as given (the caller validates it).
        """
        with self._writing() as session:
            user = session.get(UserRow, guest, with_for_update=True)  # serialises grants per guest
            if user is None:
                raise StoreError(f"unknown user {guest}")
            if user.removed_at is not None:
                raise StoreError(f"user {guest} was removed")
            if Role(user.role).has_free_access:
                raise StoreError(
                    f"{guest} is {'an' if user.role == Role.OWNER else 'a'} {user.role}: "
                    "owners and residents need no pass"
                )
            if session.get(LockRow, lock_id) is None:
                raise StoreError(f"unknown lock {lock_id}")
            if valid_until <= valid_from:
                raise StoreError(
                    f"the pass would end ({_when(valid_until)}) "
                    f"before it starts ({_when(valid_from)})"
                )
            if valid_until <= now:
                raise StoreError(f"the pass is already expired (it ends {_when(valid_until)})")
            if max_uses is not None and max_uses < 1:
                raise StoreError(f"max uses must be at least 1, not {max_uses}")
            overlapping = session.scalars(
                select(PassRow)
                .where(
                    PassRow.guest == guest,
                    PassRow.lock_id == lock_id,
                    PassRow.revoked_at.is_(None),
                    PassRow.valid_until > now,
                    PassRow.valid_from < valid_until,
                    PassRow.valid_until > valid_from,
                )
                .order_by(PassRow.valid_from, PassRow.pass_id)
            ).first()
            if overlapping is not None:
                raise StoreError(
                    f"{guest} already has pass {overlapping.pass_id} on {lock_id} "
                    f"({_when(overlapping.valid_from)} to {_when(overlapping.valid_until)}), "
                    "which overlaps this one: revoke it or choose another window"
                )
            row = PassRow(
                guest=guest,
                lock_id=lock_id,
                valid_from=valid_from,
                valid_until=valid_until,
                max_uses=max_uses,
                uses=0,
                weekly_hours=weekly_hours,
                created_at=now,
                revoked_at=None,
            )
            session.add(row)
            session.flush()  # assigns pass_id
            return rows.pass_record(row)

    def get_pass(self, pass_id: int) -> PassRecord | None:
        with self._reading() as session:
            row = session.get(PassRow, pass_id)
            return None if row is None else rows.pass_record(row)

    def list_passes(
        self,
        *,
        guest: str | None = None,
        lock_id: str | None = None,
        include_inactive: bool = False,
        now: int,
    ) -> list[PassRecord]:
        """Passes by id; inactive ones (revoked, or expired: ``valid_until <= now``) on request."""
        criteria: list[ColumnElement[bool]] = []
        if guest is not None:
            criteria.append(PassRow.guest == guest)
        if lock_id is not None:
            criteria.append(PassRow.lock_id == lock_id)
        if not include_inactive:
            criteria += [PassRow.revoked_at.is_(None), PassRow.valid_until > now]
        return self._passes(criteria, order_by=[PassRow.pass_id])

    def passes_for(self, guest: str, lock_id: str) -> list[PassRecord]:
        """The unrevoked passes of ``guest`` on ``lock_id`` (expired ones too), by start time."""
        criteria = [
            PassRow.guest == guest,
            PassRow.lock_id == lock_id,
            PassRow.revoked_at.is_(None),
        ]
        return self._passes(criteria, order_by=[PassRow.valid_from, PassRow.pass_id])

    def _passes(
        self, criteria: list[ColumnElement[bool]], *, order_by: list[InstrumentedAttribute[int]]
    ) -> list[PassRecord]:
        query = select(PassRow).where(*criteria).order_by(*order_by)
        with self._reading() as session:
            return [rows.pass_record(row) for row in session.scalars(query)]

    def revoke_pass(self, pass_id: int, *, now: int) -> PassRecord:
        """Revoke a pass and bump its lock's revocation version (the lock must learn of it)."""
        with self._writing() as session:
            row = session.get(PassRow, pass_id, with_for_update=True)
            if row is None:
                raise StoreError(f"unknown pass {pass_id}")
            if row.revoked_at is not None:
                raise StoreError(f"pass {pass_id} is already revoked")
            row.revoked_at = now
            _bump_revocation_versions(session, {row.lock_id})
            return rows.pass_record(row)

    def record_pass_use(self, pass_id: int) -> PassRecord:
        """Count one use of the pass in the database (``uses = uses + 1``); the new record.

        The caller compares the returned ``uses`` with ``max_uses``: concurrent uses each get
        their own count.
        """
        with self._writing() as session:
            row = session.scalars(
                update(PassRow)
                .where(PassRow.pass_id == pass_id)
                .values(uses=PassRow.uses + 1)
                .returning(PassRow)
            ).one_or_none()
            if row is None:
                raise StoreError(f"unknown pass {pass_id}")
            return rows.pass_record(row)

    def revoked_pass_ids(self, lock_id: str, *, now: int) -> list[int]:
        """Revoked passes on the lock that could still have a live key: not expired, and
        revoked within the longest key lifetime (a key issued before the revocation has expired
        by then; none is issued after it).  This keeps the lock's list short however many
        future passes are revoked."""
        query = (
            select(PassRow.pass_id)
            .where(
                PassRow.lock_id == lock_id,
                PassRow.revoked_at.is_not(None),
                PassRow.revoked_at > now - MAX_KEY_TTL_S,
                PassRow.valid_until > now,
            )
            .order_by(PassRow.pass_id)
        )
        with self._reading() as session:
            return list(session.scalars(query))

    # --- audit -------------------------------------------------------------------------------

    def append_audit(self, record: AuditRecord) -> AuditEntry | None:
        """Number, chain and store ``record``; the new entry, or ``None`` for a known event.

        A record whose ``event_key`` is already in the log is a redelivery of the same event:
        nothing is written.  The append holds the ``audit_head`` row (the database's write lock on
        SQLite) until it commits, so appends from any number of threads and processes form one
        gap-free chain.  When this returns, the entry is durable.
        """
        with self._writing() as session:
            return audit_log.append(session, self._audit_key, record)

    def audit_entries(
        self,
        *,
        lock_id: str | None = None,
        who: str | None = None,
        since_ms: int | None = None,
        limit: int | None = None,
        until_ms: int | None = None,
        result: str | None = None,
    ) -> list[AuditEntry]:
        """Entries matching every filter given, in ``seq`` order.

        ``since_ms`` keeps entries at or after that time, ``until_ms`` those before it.  With
        ``limit``, the *newest* ``limit``
        matching entries are returned (still oldest first), as an audit viewer wants.
        """
        with self._reading() as session:
            return audit_log.entries(
                session,
                lock_id=lock_id,
                who=who,
                since_ms=since_ms,
                limit=limit,
                until_ms=until_ms,
                result=result,
            )

    def verify_audit(self) -> int | None:
        """The first audit seq at which the log is not what was written, or ``None`` if intact.

        Checks the whole chain (:func:`smartlock.core.audit.first_broken`) a page at a time,
        within one snapshot, then compares its end with the head row:

        * entries missing at the end (head ahead of the entries): the first missing seq;
        * entries beyond the head (written around the head): the first of them;
        * the same length but another last tag: that last seq.

        Someone able to write the database can rewind the head along with the entries; only a
        copy of the head kept elsewhere catches that (see :mod:`smartlock.core.audit`).
        """
        with self._reading(snapshot=True) as session:
            return audit_log.first_mismatch(session, self._audit_key)

    # --- lock health -------------------------------------------------------------------------

    def set_lock_health(self, health: LockHealth) -> None:
        """Insert or replace what is known of the lock's health."""
        values = {
            "lock_id": health.lock_id,
            "online": health.online,
            "last_heartbeat": health.last_heartbeat,
            "bolt_state": health.bolt_state,
            "revocation_version_applied": health.revocation_version_applied,
            "changed_at": health.changed_at,
        }
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        statement = insert(LockHealthRow).values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[LockHealthRow.lock_id],
            set_={key: value for key, value in values.items() if key != "lock_id"},
        )
        with self._writing() as session:
            if session.get(LockRow, health.lock_id) is None:
                raise StoreError(f"unknown lock {health.lock_id}")
            session.execute(statement)

    def lock_health(self, lock_id: str) -> LockHealth | None:
        with self._reading() as session:
            row = session.get(LockHealthRow, lock_id)
            return None if row is None else rows.health(row)


# --- helpers -----------------------------------------------------------------------------------


def _identifier(value: str, what: str) -> None:
    try:
        check_identifier(value, what)
    except ValueError as exc:
        raise StoreError(str(exc)) from None


def _cause(exc: DBAPIError) -> str:
    """The driver's one-line reason (never the statement or its parameters)."""
    lines = str(exc.orig).strip().splitlines()
    return lines[0] if lines else type(exc.orig).__name__


def _when(unix_seconds: int) -> str:
    return dt.datetime.fromtimestamp(unix_seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _bump_revocation_versions(session: Session, lock_ids: set[str]) -> None:
    for lock_id in sorted(lock_ids):  # a fixed order: no deadlock between two revokers
        session.execute(
            update(LockRow)
            .where(LockRow.lock_id == lock_id)
            .values(revocation_version=LockRow.revocation_version + 1)
        )
