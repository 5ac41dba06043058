"""smartlock.core.policy: who may have a key for which lock, and the recent-id window."""

from __future__ import annotations

import pytest

from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import SessionRequest
from smartlock.core.policy import MAX_REQUEST_AGE_S, AccessPolicy, RateLimit, RecentIds

NOW = 1_800_000_000.0
SKEW_S = 30

POLICY = AccessPolicy(
    locks=frozenset({"lock1", "lock2"}),
    guests=frozenset({"guest1", "guest2"}),
    grants=frozenset({("guest1", "lock1"), ("guest2", "lock2")}),
)


def _request(lock_id: str = "lock1", sent_at: float = NOW) -> SessionRequest:
    return SessionRequest(request_id=b"\x01" * 16, sent_at=int(sent_at), lock_id=lock_id)


def _reason(guest_id: str, request: SessionRequest, policy: AccessPolicy = POLICY) -> Reason:
    with pytest.raises(Rejected) as caught:
        policy.check_session_request(guest_id, request, NOW, SKEW_S)
    return caught.value.reason


@pytest.mark.parametrize(("guest_id", "lock_id"), [("guest1", "lock1"), ("guest2", "lock2")])
def test_granted_request_passes(guest_id: str, lock_id: str) -> None:
    POLICY.check_session_request(guest_id, _request(lock_id), NOW, SKEW_S)


@pytest.mark.parametrize(("guest_id", "lock_id"), [("guest1", "lock2"), ("guest2", "lock1")])
def test_request_without_grant_is_not_granted(guest_id: str, lock_id: str) -> None:
    assert _reason(guest_id, _request(lock_id)) is Reason.NOT_GRANTED


def test_grant_is_a_guest_lock_pair_not_either_way() -> None:
    reversed_grant = AccessPolicy(
        locks=POLICY.locks, guests=POLICY.guests, grants=frozenset({("lock1", "guest1")})
    )
    assert _reason("guest1", _request("lock1"), reversed_grant) is Reason.NOT_GRANTED


def test_policy_without_grants_grants_nothing() -> None:
    empty = AccessPolicy(locks=POLICY.locks, guests=POLICY.guests)
    assert _reason("guest1", _request("lock1"), empty) is Reason.NOT_GRANTED


def test_request_for_unknown_lock_is_rejected() -> None:
    assert _reason("guest1", _request("lock3")) is Reason.UNKNOWN_LOCK


def test_request_from_unknown_guest_is_rejected() -> None:
    assert _reason("guest3", _request("lock1")) is Reason.UNKNOWN_GUEST


def test_request_older_than_a_minute_is_stale() -> None:
    assert _reason("guest1", _request(sent_at=NOW - MAX_REQUEST_AGE_S - 1)) is Reason.STALE


def test_request_exactly_a_minute_old_passes() -> None:
    POLICY.check_session_request("guest1", _request(sent_at=NOW - MAX_REQUEST_AGE_S), NOW, SKEW_S)


def test_request_from_the_future_is_not_yet_valid() -> None:
    assert _reason("guest1", _request(sent_at=NOW + SKEW_S + 1)) is Reason.NOT_YET_VALID


def test_request_within_clock_skew_passes() -> None:
    POLICY.check_session_request("guest1", _request(sent_at=NOW + SKEW_S), NOW, SKEW_S)


# --- RecentIds -------------------------------------------------------------------------------


def test_recent_id_is_seen_the_second_time() -> None:
    ids = RecentIds(window_s=60)
    assert not ids.seen_before(b"a", NOW)
    assert ids.seen_before(b"a", NOW + 1)
    assert ids.seen_before(b"a", NOW + 60)  # the window's edge is inside


def test_distinct_ids_are_independent() -> None:
    ids = RecentIds(window_s=60)
    assert not ids.seen_before(b"a", NOW)
    assert not ids.seen_before(b"b", NOW)
    assert ids.seen_before(b"a", NOW)
    assert ids.seen_before(b"b", NOW)


def test_id_is_forgotten_after_the_window() -> None:
    ids = RecentIds(window_s=60)
    ids.seen_before(b"a", NOW)
    assert not ids.seen_before(b"a", NOW + 60.5)
    # and recorded afresh
    assert ids.seen_before(b"a", NOW + 61)


def test_window_is_counted_from_first_sighting() -> None:
    ids = RecentIds(window_s=60)
    ids.seen_before(b"a", NOW)
    assert ids.seen_before(b"a", NOW + 50)  # does not refresh the entry
    assert not ids.seen_before(b"a", NOW + 61)


def test_capacity_bounds_memory_by_forgetting_the_oldest() -> None:
    ids = RecentIds(window_s=3600, capacity=3)
    for item in (b"a", b"b", b"c", b"d"):
        assert not ids.seen_before(item, NOW)
    assert not ids.seen_before(b"a", NOW)  # evicted to make room


@pytest.mark.parametrize("capacity", [1, 3])
def test_ids_within_capacity_are_all_remembered(capacity: int) -> None:
    ids = RecentIds(window_s=3600, capacity=capacity)
    items = [bytes([i]) for i in range(capacity)]
    for item in items:
        assert not ids.seen_before(item, NOW)
    for item in items:
        assert ids.seen_before(item, NOW), item


def test_rate_limit_allows_a_burst_then_refills_over_time() -> None:
    limit = RateLimit(burst=3, per_minute=6)  # one token every 10 s
    assert [limit.allow("guest1", NOW) for _ in range(4)] == [True, True, True, False]
    assert limit.allow("guest2", NOW)  # every key has its own bucket
    assert not limit.allow("guest1", NOW + 9)
    assert limit.allow("guest1", NOW + 10.5)
    assert not limit.allow("guest1", NOW + 10.6)


def test_rate_limit_bounds_its_memory() -> None:
    limit = RateLimit(burst=2, per_minute=60, capacity=10)
    for n in range(100):
        limit.allow(f"guest{n}", NOW)
    assert len(limit._buckets) == 10


def test_rate_limit_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="burst"):
        RateLimit(burst=0, per_minute=1)
