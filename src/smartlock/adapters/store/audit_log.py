"""The audit tables inside a store transaction: append under the head row, query, verify.

``audit_head`` holds one row (the last seq and tag).  An append reads it ``FOR UPDATE`` (on
SQLite the write transaction already holds the database), numbers and chains the new entry
(:func:`smartlock.core.audit.chain_tag`) and moves the head, all in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from smartlock.adapters.store import rows
from smartlock.adapters.store.records import AuditEntry, AuditRecord
from smartlock.adapters.store.tables import AUDIT_HEAD_ID, AuditHeadRow, AuditRow
from smartlock.core import audit

PAGE_SIZE = 1000
"""Entries held in memory at a time while the whole log is verified."""


def _head(session: Session, *, for_update: bool) -> AuditHeadRow:
    query = select(AuditHeadRow).where(AuditHeadRow.id == AUDIT_HEAD_ID)
    return session.scalars(query.with_for_update() if for_update else query).one()


def append(session: Session, audit_key: bytes, record: AuditRecord) -> AuditEntry | None:
    """Append ``record`` as the next entry; ``None`` (nothing written) if its event is known."""
    head = _head(session, for_update=True)
    if record.event_key is not None:
        known = session.scalar(select(AuditRow.seq).where(AuditRow.event_key == record.event_key))
        if known is not None:
            return None
    seq, prev_tag = head.last_seq + 1, bytes(head.last_tag)
    tag = audit.chain_tag(audit_key, prev_tag, seq, record)
    session.add(rows.audit_row(seq, record, prev_tag, tag))
    head.last_seq, head.last_tag = seq, tag
    return AuditEntry(seq=seq, record=record, prev_tag=prev_tag, tag=tag)


def entries(
    session: Session,
    *,
    lock_id: str | None,
    who: str | None,
    since_ms: int | None,
    limit: int | None,
    until_ms: int | None = None,
    result: str | None = None,
) -> list[AuditEntry]:
    """Matching entries oldest first; with ``limit``, only the newest ``limit`` of them."""
    query = select(AuditRow)
    if lock_id is not None:
        query = query.where(AuditRow.lock_id == lock_id)
    if who is not None:
        query = query.where(AuditRow.who == who)
    if since_ms is not None:
        query = query.where(AuditRow.at_ms >= since_ms)
    if until_ms is not None:
        query = query.where(AuditRow.at_ms < until_ms)
    if result is not None:
        query = query.where(AuditRow.result == result)
    if limit is None:
        return [rows.audit_entry(row) for row in session.scalars(query.order_by(AuditRow.seq))]
    if limit < 1:
        return []
    newest = session.scalars(query.order_by(AuditRow.seq.desc()).limit(limit))
    return [rows.audit_entry(row) for row in reversed(newest.all())]


def first_mismatch(session: Session, audit_key: bytes) -> int | None:
    """The first seq where the chain breaks or disagrees with the head (see Store.verify_audit).

    Run it in a transaction that sees one snapshot, or concurrent appends look like tampering.
    """
    head = _head(session, for_update=False)
    head_seq, head_tag = head.last_seq, bytes(head.last_tag)
    last: list[AuditEntry] = []
    broken = audit.first_broken(audit_key, _stream(session, last))
    if broken is not None:
        return broken
    last_seq, last_tag = (last[0].seq, last[0].tag) if last else (0, audit.GENESIS_TAG)
    if head_seq != last_seq:
        return min(head_seq, last_seq) + 1
    if head_tag != last_tag:
        return max(last_seq, 1)
    return None


def _stream(session: Session, last: list[AuditEntry]) -> Iterator[AuditEntry]:
    """Every entry by seq, one page in memory at a time; ``last`` keeps the latest yielded."""
    after = 0
    while True:
        query = select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq).limit(PAGE_SIZE)
        page: Sequence[AuditRow] = session.scalars(query).all()
        if not page:
            return
        for row in page:
            entry = rows.audit_entry(row)
            last[:] = [entry]
            yield entry
        after = page[-1].seq
        session.expunge_all()
