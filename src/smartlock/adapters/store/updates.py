"""The store's part of software updates: what was pushed to which lock, and the last step each
lock reported (the steps themselves go to the audit log as well).

A mixin of :class:`smartlock.adapters.store.Store` (same transactions, same errors).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

from sqlalchemy import select
from sqlalchemy.orm import Session

from smartlock.adapters.store.tables import LockRow, LockUpdateRow
from smartlock.core.errors import StoreError
from smartlock.core.records import LockUpdate


def _record(row: LockUpdateRow) -> LockUpdate:
    return LockUpdate(
        lock_id=row.lock_id,
        bundle_id=row.bundle_id,
        version=row.version,
        pushed_by=row.pushed_by,
        pushed_at=row.pushed_at,
        step=row.step,
        step_version=row.step_version,
        reason=row.reason,
        step_at=row.step_at,
        running_version=row.running_version,
    )


class UpdatesStore:
    """Methods :class:`Store` gets for software updates (see the module docstring)."""

    def _writing(self) -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by Store

    def _reading(self, *, snapshot: bool = False) -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by Store

    def push_update(
        self, lock_ids: Sequence[str], *, bundle_id: str, version: str, by: str, now: int
    ) -> None:
        """Offer bundle ``bundle_id`` (release ``version``) to each lock, replacing any earlier
        push; every lock must exist."""
        with self._writing() as session:
            for lock_id in lock_ids:
                if session.get(LockRow, lock_id) is None:
                    raise StoreError(f"unknown lock {lock_id}")
                row = session.get(LockUpdateRow, lock_id)
                if row is None:
                    row = LockUpdateRow(lock_id=lock_id, running_version="")
                    session.add(row)
                row.bundle_id = bundle_id
                row.version = version
                row.pushed_by = by
                row.pushed_at = now
                row.step = "pushed"
                row.step_version = version
                row.reason = ""
                row.step_at = now

    def record_update_step(
        self, lock_id: str, *, version: str, step: str, reason: str, at: int
    ) -> None:
        """What a lock reported: ``running`` and ``healthy`` say which version it runs; the other
        steps are kept when they are about the pushed version (a step about a bundle that was
        not pushed through the store is in the audit log only)."""
        with self._writing() as session:
            if session.get(LockRow, lock_id) is None:
                raise StoreError(f"unknown lock {lock_id}")
            row = session.get(LockUpdateRow, lock_id)
            if row is None:  # a lock that says what it runs before any push
                row = LockUpdateRow(
                    lock_id=lock_id,
                    bundle_id="",
                    version="",
                    pushed_by="",
                    pushed_at=0,
                    step="",
                    step_version="",
                    reason="",
                    step_at=at,
                    running_version="",
                )
                session.add(row)
            if step in ("running", "healthy"):
                row.running_version = version
            if step != "running" and row.bundle_id and version == row.version:
                row.step, row.step_version, row.reason, row.step_at = step, version, reason, at

    def lock_update(self, lock_id: str) -> LockUpdate | None:
        with self._reading() as session:
            row = session.get(LockUpdateRow, lock_id)
            return None if row is None else _record(row)

    def lock_updates(self) -> list[LockUpdate]:
        with self._reading() as session:
            rows = session.scalars(select(LockUpdateRow).order_by(LockUpdateRow.lock_id))
            return [_record(row) for row in rows]
