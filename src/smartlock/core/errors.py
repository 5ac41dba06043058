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
    UNKNOWN_GUEST = "unknown_guest"
    UNKNOWN_KEY = "unknown_key"
    NOT_GRANTED = "not_granted"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    STALE = "stale"
    REPLAY = "replay"
    RATE_LIMITED = "rate_limited"


class SmartlockError(Exception):
    """Base of every error smartlock raises on purpose."""


class Rejected(SmartlockError):
    """A remote input was refused; ``reason`` says why in one word."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


class ConfigError(SmartlockError):
    """A local mistake: a missing file, a bad option, a site that does not exist."""
