"""Converting table rows into the store's plain records (and audit records into rows)."""

from __future__ import annotations

from smartlock.adapters.store.records import (
    AuditEntry,
    AuditRecord,
    LockHealth,
    LockRecord,
    PassRecord,
    UserRecord,
)
from smartlock.adapters.store.tables import (
    AuditRow,
    LockHealthRow,
    LockRow,
    PassRow,
    UserRow,
)
from smartlock.core.roles import Role


def user_record(row: UserRow) -> UserRecord:
    return UserRecord(
        name=row.name, role=Role(row.role), created_at=row.created_at, removed_at=row.removed_at
    )


def lock_record(row: LockRow) -> LockRecord:
    return LockRecord(
        lock_id=row.lock_id,
        added_at=row.added_at,
        command_epoch=row.command_epoch,
        revocation_version=row.revocation_version,
    )


def pass_record(row: PassRow) -> PassRecord:
    return PassRecord(
        pass_id=row.pass_id,
        guest=row.guest,
        lock_id=row.lock_id,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        max_uses=row.max_uses,
        uses=row.uses,
        weekly_hours=row.weekly_hours,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def audit_row(seq: int, record: AuditRecord, prev_tag: bytes, tag: bytes) -> AuditRow:
    return AuditRow(
        seq=seq,
        at_ms=record.at_ms,
        who=record.who,
        role=record.role,
        lock_id=record.lock_id,
        channel=record.channel,
        action=record.action,
        result=record.result,
        reason=record.reason,
        attempt=record.attempt,
        event_key=record.event_key,
        prev_tag=prev_tag,
        tag=tag,
    )


def audit_entry(row: AuditRow) -> AuditEntry:
    record = AuditRecord(
        at_ms=row.at_ms,
        who=row.who,
        role=row.role,
        lock_id=row.lock_id,
        channel=row.channel,
        action=row.action,
        result=row.result,
        reason=row.reason,
        attempt=row.attempt,
        event_key=row.event_key,
    )
    return AuditEntry(seq=row.seq, record=record, prev_tag=bytes(row.prev_tag), tag=bytes(row.tag))


def health(row: LockHealthRow) -> LockHealth:
    return LockHealth(
        lock_id=row.lock_id,
        online=row.online,
        last_heartbeat=row.last_heartbeat,
        bolt_state=row.bolt_state,
        revocation_version_applied=row.revocation_version_applied,
        changed_at=row.changed_at,
    )
