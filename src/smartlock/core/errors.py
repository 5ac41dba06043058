"""Errors of the core, split as h11 does: remote (the peer's fault) and local (ours).

A :class:`Rejected` is raised for anything that arrives from outside and is refused: a bad
signature, a replay, an expired key, malformed bytes.  Its ``reason`` is one of a closed set so
that it can be logged and counted; its message never contains key material or tokens.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why an incoming message or advertisement was refused."""

    MALFORMED = "malformed"
    OVERSIZED = "oversized"
    WRONG_VERSION = "wrong_version"
    WRONG_TYPE = "wrong_type"
    BAD_SIGNATURE = "bad_signature"
    BAD_MAC = "bad_mac"
    UNDECRYPTABLE = "undecryptable"
    WRONG_LOCK = "wrong_lock"
    WRONG_GUEST = "wrong_guest"
    UNKNOWN_LOCK = "unknown_lock"
    UNKNOWN_KEY = "unknown_key"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    STALE = "stale"
    REPLAY = "replay"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_USER = "unknown_user"
    ROLE_NOT_ALLOWED = "role_not_allowed"
    NO_PASS = "no_pass"  # noqa: S105 -- a guest pass, not a password
    PASS_REVOKED = "pass_revoked"  # noqa: S105 -- a guest pass, not a password
    OUTSIDE_HOURS = "outside_hours"
    USES_EXHAUSTED = "uses_exhausted"
    LOCKED_OUT = "locked_out"
    BAD_REPLY_TOPIC = "bad_reply_topic"
    WEAK_SIGNAL = "weak_signal"  # below the lock's RSSI floor: too far away (or relayed)
    AUDIT_UNAVAILABLE = "audit_unavailable"  # fail closed: no access that cannot be logged


REASON_HINTS = {
    Reason.AUDIT_UNAVAILABLE.value: (
        "the backend cannot write its audit log, so it grants nothing; "
        "the owner should check its disk or database"
    ),
}


def explain(reason: str) -> str:
    """A refusal's reason for the person refused: the word, and what it means where unclear."""
    hint = REASON_HINTS.get(reason)
    return f"{reason} ({hint})" if hint else reason


class SmartlockError(Exception):
    """Base of every error smartlock raises on purpose."""


class Rejected(SmartlockError):
    """A remote input was refused; ``reason`` says why in one word."""

    def __init__(
        self, reason: Reason, detail: str = "", *, who: str = "", pass_id: int = 0
    ) -> None:
        self.reason = reason
        self.detail = detail
        self.who = who  # the user the refused input was made for, when it is known
        self.pass_id = pass_id
        self.attempt = 0  # set by an intrusion detector that counted this refusal
        self.lockout_until: float | None = None  # set when this refusal started a lockout
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


class ConfigError(SmartlockError):
    """A local mistake: a missing file, a bad option, a site that does not exist."""


class StoreError(SmartlockError):
    """A store operation refused for a user-facing reason (unknown user, overlapping pass, ...)."""


class StoreUnavailable(StoreError):
    """The database refused to write (disk full, read-only, gone): nothing was stored.

    Access that cannot be written to the audit log is not granted (fail closed).
    """
