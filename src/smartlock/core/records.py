"""What the store holds, as plain frozen records (no SQLAlchemy types leak out of the store).

Times are whole Unix seconds (``int``) except audit times, which are Unix milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from smartlock.core.roles import Role

PASS_ID_MAX = 2**31 - 1  # pass ids are INTEGER (32-bit on PostgreSQL): larger ones overflow


@dataclass(frozen=True)
class UserRecord:
    name: str
    role: Role
    created_at: int
    removed_at: int | None = None

    @property
    def active(self) -> bool:
        return self.removed_at is None


@dataclass(frozen=True)
class LockRecord:
    lock_id: str
    added_at: int
    command_epoch: int = 1  # bumped by a lock reset: a new per-lock command key
    revocation_version: int = 1  # bumped by every revocation that concerns this lock


@dataclass(frozen=True)
class PassRecord:
    pass_id: int
    guest: str
    lock_id: str
    valid_from: int
    valid_until: int
    max_uses: int | None  # None: unlimited
    uses: int
    weekly_hours: str | None  # canonical text of smartlock.core.passes.WeeklyHours, or None
    created_at: int
    revoked_at: int | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class AuditRecord:
    """One attempt or event, as the backend writes it (before it is numbered and chained)."""

    at_ms: int
    who: str  # user name, or "" when unknown (e.g. a BLE token that did not verify)
    role: str  # Role value, or ""
    lock_id: str  # or "" when the event concerns no lock
    channel: str  # "ble" | "remote" | "system"
    action: str  # "unlock" | "lock" | "key_request" | "lockout" | "offline" | "online" | ...
    result: str  # "granted" | "denied" | "failed" | "alert" | "info"
    reason: str  # a Reason value or a short word; "" when granted
    attempt: int = 0  # failures of this subject within the intrusion window, this one included
    event_key: str | None = None  # unique id of the source event: the same event is logged once


@dataclass(frozen=True)
class AuditEntry:
    seq: int  # 1, 2, 3, ... without gaps
    record: AuditRecord
    prev_tag: bytes  # previous tag; 16 zero bytes for the first (core.audit.GENESIS_TAG)
    tag: bytes


@dataclass(frozen=True)
class LockHealth:
    lock_id: str
    online: bool
    last_heartbeat: int | None
    bolt_state: str  # "locked" | "unlocked" | "jammed" | "unknown"
    revocation_version_applied: int  # what the lock last reported
    changed_at: int


@dataclass(frozen=True)
class WebSession:
    """A signed-in dashboard session (the cookie itself is never stored)."""

    user: str
    csrf_token: str
    expires_at: int


@dataclass(frozen=True)
class Invitation:
    """A one-time enrollment code for the guest of a pass (the code itself is never stored)."""

    pass_id: int
    guest: str
    lock_id: str
    created_by: str
    expires_at: int
    used_at: int | None = None


@dataclass(frozen=True)
class LockUpdate:
    """The update pushed to a lock and where it stands (``smartlock status``).

    ``step`` is ``pushed`` until the lock reports (see :class:`smartlock.core.reports.UpdateStep`
    for the others); ``step_version`` is the version that step was about.
    """

    lock_id: str
    bundle_id: str
    version: str
    pushed_by: str
    pushed_at: int
    step: str
    step_version: str
    reason: str
    step_at: int
    running_version: str  # "" until the lock has said

    FINAL_STEPS = frozenset({"healthy", "refused", "rolled_back"})

    @property
    def settled(self) -> bool:
        """The lock has finished with the pushed bundle (applied, refused or reverted)."""
        return self.step in self.FINAL_STEPS and self.step_version == self.version
