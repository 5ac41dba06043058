"""What the pages and the API both show and do, in one place (so both authorise alike)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import asdict, dataclass

import segno
from fastapi import Response

from smartlock import admin
from smartlock.adapters.web.auth import Viewer
from smartlock.adapters.web.backend_port import BackendPort
from smartlock.core.errors import ConfigError, StoreError
from smartlock.core.records import AuditEntry, PassRecord
from smartlock.core.roles import Role

AUDIT_PAGE_LIMIT = 500
AUDIT_EXPORT_LIMIT = 100_000


class ActionRefused(Exception):
    """Bad input from the person at the dashboard: shown to them as it is (no detail hidden,
    no secret in it)."""


@dataclass(frozen=True)
class LockView:
    lock_id: str
    online: bool
    bolt: str
    last_heartbeat: int | None
    revocation_version: int
    revocation_version_applied: int


@dataclass(frozen=True)
class PassView:
    pass_id: int
    guest: str
    lock_id: str
    valid_from: int
    valid_until: int
    max_uses: int | None
    uses: int
    weekly_hours: str | None
    revoked: bool

    @classmethod
    def of(cls, record: PassRecord) -> PassView:
        return cls(
            record.pass_id,
            record.guest,
            record.lock_id,
            record.valid_from,
            record.valid_until,
            record.max_uses,
            record.uses,
            record.weekly_hours,
            record.revoked,
        )


@dataclass(frozen=True)
class AuditView:
    seq: int
    at: str  # ISO 8601, UTC
    who: str
    role: str
    lock_id: str
    channel: str
    action: str
    result: str
    reason: str
    attempt: int

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditView:
        record = entry.record
        return cls(
            entry.seq,
            iso(record.at_ms / 1000),
            record.who,
            record.role,
            record.lock_id,
            record.channel,
            record.action,
            record.result,
            record.reason,
            record.attempt,
        )


@dataclass(frozen=True)
class AuditFilter:
    lock_id: str | None = None
    who: str | None = None
    since: str | None = None
    until: str | None = None
    result: str | None = None


@dataclass(frozen=True)
class InvitationView:
    text: str
    guest: str
    lock_id: str
    pass_id: int
    expires_at: int
    qr_svg: str


def iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")


def locks(backend: BackendPort) -> list[LockView]:
    views = []
    for lock in backend.store.list_locks():
        health = backend.store.lock_health(lock.lock_id)
        views.append(
            LockView(
                lock.lock_id,
                bool(health and health.online),
                health.bolt_state if health else "unknown",
                health.last_heartbeat if health else None,
                lock.revocation_version,
                health.revocation_version_applied if health else 0,
            )
        )
    return views


def passes(backend: BackendPort, viewer: Viewer) -> list[PassView]:
    """Every pass for an owner; a guest's own passes for a guest; none for a resident."""
    now = int(backend.now())
    if viewer.is_owner:
        records = backend.store.list_passes(now=now)
    elif viewer.role is Role.GUEST:
        records = backend.store.list_passes(guest=viewer.name, now=now)
    else:
        records = []
    return [PassView.of(record) for record in records]


def grant(
    backend: BackendPort,
    viewer: Viewer,
    *,
    guest: str,
    lock_id: str,
    valid_from: str,
    valid_until: str,
    uses: int | None,
    hours: str | None,
) -> PassView:
    try:
        record = admin.grant_pass_in(
            backend.store,
            backend.site,
            guest,
            lock_id,
            valid_from=valid_from or "now",
            valid_until=valid_until or f"+{admin.DEFAULT_PASS_DAYS}d",
            max_uses=uses,
            weekly_hours=hours or None,
            by=viewer.name,
        )
    except (ConfigError, StoreError) as exc:
        raise ActionRefused(str(exc).replace("--uses", "uses")) from None
    return PassView.of(record)


def revoke(backend: BackendPort, viewer: Viewer, pass_id: int) -> PassView:
    try:
        return PassView.of(admin.revoke_pass_in(backend.store, pass_id, by=viewer.name))
    except StoreError as exc:
        raise ActionRefused(str(exc)) from None


def invite(backend: BackendPort, viewer: Viewer, pass_id: int, public_url: str) -> InvitationView:
    try:
        code, invitation = admin.invite_in(
            backend.store, backend.site, pass_id, url=public_url, by=viewer.name
        )
    except (ConfigError, StoreError) as exc:
        raise ActionRefused(str(exc)) from None
    text = str(code)
    return InvitationView(
        text,
        invitation.guest,
        invitation.lock_id,
        invitation.pass_id,
        invitation.expires_at,
        segno.make(text, error="m").svg_inline(scale=4, title="invitation"),
    )


def audit(backend: BackendPort, query: AuditFilter, *, limit: int) -> list[AuditView]:
    try:
        since = _moment(backend, query.since)
        until = _moment(backend, query.until)
    except ConfigError as exc:
        raise ActionRefused(str(exc)) from None
    entries = backend.store.audit_entries(
        lock_id=query.lock_id or None,
        who=query.who or None,
        since_ms=None if since is None else since * 1000,
        until_ms=None if until is None else until * 1000,
        result=query.result or None,
        limit=limit,
    )
    return [AuditView.of(entry) for entry in reversed(entries)]  # newest first


def audit_csv(rows: list[AuditView]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(AuditView.__dataclass_fields__))
    writer.writeheader()
    for view in rows:
        writer.writerow({k: _csv_safe(v) for k, v in asdict(view).items()})
    return out.getvalue()


def audit_download(rows: list[AuditView]) -> Response:
    """The CSV export as a file download."""
    return Response(
        audit_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="smartlock-audit.csv"'},
    )


def integrity(backend: BackendPort) -> tuple[bool, int | None]:
    """(intact, first broken seq) from the hash chain."""
    broken = backend.store.verify_audit()
    return broken is None, broken


def _moment(backend: BackendPort, text: str | None) -> int | None:
    if not text:
        return None
    return admin.parse_when(text, backend.site.zone, now=int(backend.now()))


def _csv_safe(value: object) -> object:
    """No spreadsheet formula injection: a cell starting with = + - @ is quoted as text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
