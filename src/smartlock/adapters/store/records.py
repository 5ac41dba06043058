"""The store's records are plain core data (:mod:`smartlock.core.records`), re-exported here."""

from smartlock.core.records import (
    AuditEntry,
    AuditRecord,
    LockHealth,
    LockRecord,
    PassRecord,
    UserRecord,
)

__all__ = ["AuditEntry", "AuditRecord", "LockHealth", "LockRecord", "PassRecord", "UserRecord"]
