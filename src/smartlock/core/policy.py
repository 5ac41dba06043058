"""Who may do what, decided at request time from the store's records (README, "Roles").

Pure functions over records: the backend reads the user, the lock and the passes from the store
and asks these; nothing here does IO or reads the clock.

* owners and residents get keys for any lock at any time, and may lock / unlock remotely;
* a guest gets a key only through a pass that allows access now (:mod:`smartlock.core.passes`),
  and the key never outlives what the pass allows (its end, the end of the weekly window) and
  carries the pass's use limit, so a lock that is offline still enforces both;
* guests may not send remote commands; removed users and unknown locks get nothing.
"""

from __future__ import annotations

import zoneinfo
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import NO_PASS, UNLIMITED_USES
from smartlock.core.passes import choose_pass
from smartlock.core.records import LockRecord, PassRecord, UserRecord
from smartlock.core.roles import Role

MAX_REQUEST_AGE_S = 60


@dataclass(frozen=True)
class KeyGrant:
    """What a key issued now may carry: its pass, that pass's use limit, its latest expiry."""

    role: Role
    pass_id: int = NO_PASS
    max_uses: int = UNLIMITED_USES
    not_after: int | None = None


def check_request_time(
    sent_at: int, now: float, clock_skew_s: int, *, max_age_s: int = MAX_REQUEST_AGE_S
) -> None:
    if sent_at < now - max_age_s:
        raise Rejected(Reason.STALE, f"request older than {max_age_s} s")
    if sent_at > now + clock_skew_s:
        raise Rejected(Reason.NOT_YET_VALID, "request from the future")


def _active_user(name: str, user: UserRecord | None) -> UserRecord:
    if user is None or not user.active:
        raise Rejected(Reason.UNKNOWN_USER, name, who=name)
    return user


def _known_lock(lock_id: str, lock: LockRecord | None) -> None:
    if lock is None:
        raise Rejected(Reason.UNKNOWN_LOCK, lock_id)


def decide_key_request(
    *,
    name: str,
    user: UserRecord | None,
    lock_id: str,
    lock: LockRecord | None,
    passes: Sequence[PassRecord],
    now: float,
    zone: zoneinfo.ZoneInfo,
) -> KeyGrant:
    """May ``name`` have a session key for ``lock_id`` now?  Raises :class:`Rejected` if not."""
    user = _active_user(name, user)
    _known_lock(lock_id, lock)
    if user.role.has_free_access:
        return KeyGrant(user.role)
    chosen, access_until = choose_pass(passes, int(now), zone)
    return KeyGrant(
        user.role,
        pass_id=chosen.pass_id,
        max_uses=chosen.max_uses if chosen.max_uses is not None else UNLIMITED_USES,
        not_after=access_until,
    )


def decide_command(
    *, name: str, user: UserRecord | None, lock_id: str, lock: LockRecord | None
) -> Role:
    """May ``name`` lock or unlock ``lock_id`` remotely?  Raises :class:`Rejected` if not."""
    user = _active_user(name, user)
    _known_lock(lock_id, lock)
    if not user.role.has_free_access:
        raise Rejected(
            Reason.ROLE_NOT_ALLOWED, f"{name} is a {user.role.value}: no remote commands", who=name
        )
    return user.role


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

    def forget(self, item: bytes) -> None:
        """Drop ``item``, so that it is new again (its handling failed and will be retried)."""
        self._seen.pop(item, None)


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
