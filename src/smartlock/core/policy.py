"""Who may have a key for which lock (README, "Security model": identity and grants).

Here a grant is a (guest, lock) pair written by ``smartlock init``; the access-control issue
replaces this with passes, time windows and use counts.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import SessionRequest

MAX_REQUEST_AGE_S = 60


@dataclass(frozen=True)
class AccessPolicy:
    locks: frozenset[str]
    guests: frozenset[str]
    grants: frozenset[tuple[str, str]] = field(default_factory=frozenset)  # (guest, lock)

    def check_session_request(
        self, guest_id: str, request: SessionRequest, now: float, clock_skew_s: int
    ) -> None:
        """Raise :class:`Rejected` unless ``guest_id`` may have a key for the requested lock now."""
        if guest_id not in self.guests:
            raise Rejected(Reason.UNKNOWN_GUEST, guest_id)
        if request.sent_at < now - MAX_REQUEST_AGE_S:
            raise Rejected(Reason.STALE, "request older than a minute")
        if request.sent_at > now + clock_skew_s:
            raise Rejected(Reason.NOT_YET_VALID, "request from the future")
        if request.lock_id not in self.locks:
            raise Rejected(Reason.UNKNOWN_LOCK, request.lock_id)
        if (guest_id, request.lock_id) not in self.grants:
            raise Rejected(Reason.NOT_GRANTED, f"{guest_id} has no grant on {request.lock_id}")


class RecentIds:
    """Ids seen in the last ``window_s`` seconds (bounded), for duplicate detection."""

    def __init__(self, window_s: float, capacity: int = 100_000) -> None:
        self._window_s = window_s
        self._capacity = capacity
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def seen_before(self, item: bytes, now: float) -> bool:
        """Record ``item`` and say whether it was already there (within the window)."""
        while self._seen:  # forget what fell out of the window
            oldest, at = next(iter(self._seen.items()))
            if now - at <= self._window_s:
                break
            del self._seen[oldest]
        if item in self._seen:
            return True
        self._seen[item] = now
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return False


class RateLimit:
    """A token bucket per key: ``burst`` events at once, then ``per_minute`` on average.

    Memory is bounded: at most ``capacity`` keys are tracked, the least recently used dropped
    first (a dropped key starts again with a full bucket).
    """

    def __init__(self, *, burst: int, per_minute: float, capacity: int = 100_000) -> None:
        if burst < 1 or per_minute <= 0:
            raise ValueError("a rate limit needs burst >= 1 and a positive rate")
        self._burst = burst
        self._per_second = per_minute / 60
        self._capacity = capacity
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def allow(self, key: str, now: float) -> bool:
        """Take one token for ``key`` if there is one."""
        tokens, at = self._buckets.pop(key, (float(self._burst), now))
        tokens = min(float(self._burst), tokens + max(0.0, now - at) * self._per_second)
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._capacity:
            self._buckets.popitem(last=False)
        return allowed
