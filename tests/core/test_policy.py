"""smartlock.core.policy: who may have a key or send a command, and the recent-id window."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from smartlock.adapters.store.records import LockRecord, PassRecord, UserRecord
from smartlock.core.errors import Reason, Rejected
from smartlock.core.messages import NO_PASS, UNLIMITED_USES
from smartlock.core.policy import (
    MAX_REQUEST_AGE_S,
    KeyGrant,
    RateLimit,
    RecentIds,
    check_request_time,
    decide_command,
    decide_key_request,
)
from smartlock.core.roles import Role

PARIS = ZoneInfo("Europe/Paris")


def paris(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp())


NOW = float(paris("2026-11-23 10:00"))  # a Monday morning
SKEW_S = 30
LOCK = LockRecord(lock_id="lock1", added_at=paris("2026-01-01 00:00"))
OWNER = UserRecord(name="olivia", role=Role.OWNER, created_at=paris("2026-01-01 00:00"))
RESIDENT = UserRecord(name="ryan", role=Role.RESIDENT, created_at=paris("2026-01-01 00:00"))
GUEST = UserRecord(name="bob", role=Role.GUEST, created_at=paris("2026-11-01 00:00"))
PASS = PassRecord(
    pass_id=7,
    guest="bob",
    lock_id="lock1",
    valid_from=paris("2026-11-01 00:00"),
    valid_until=paris("2026-12-01 00:00"),
    max_uses=None,
    uses=0,
    weekly_hours=None,
    created_at=paris("2026-10-31 12:00"),
)


def _pass(**changes: object) -> PassRecord:
    return dataclasses.replace(PASS, **changes)


def _removed(user: UserRecord) -> UserRecord:
    return dataclasses.replace(user, removed_at=paris("2026-11-20 00:00"))


def _decide_key(
    user: UserRecord | None = GUEST,
    *,
    passes: tuple[PassRecord, ...] = (PASS,),
    lock: LockRecord | None = LOCK,
    name: str | None = None,
    now: float = NOW,
) -> KeyGrant:
    return decide_key_request(
        name=name or (user.name if user else "nobody"),
        user=user,
        lock_id="lock1",
        lock=lock,
        passes=passes,
        now=now,
        zone=PARIS,
    )


def _refusal(call, *args, **kwargs) -> Rejected:
    with pytest.raises(Rejected) as caught:
        call(*args, **kwargs)
    return caught.value


# --- request time ---------------------------------------------------------------------------------


def test_request_older_than_a_minute_is_stale() -> None:
    refusal = _refusal(check_request_time, int(NOW) - MAX_REQUEST_AGE_S - 1, NOW, SKEW_S)
    assert refusal.reason is Reason.STALE


def test_request_exactly_a_minute_old_passes() -> None:
    check_request_time(int(NOW) - MAX_REQUEST_AGE_S, NOW, SKEW_S)


def test_request_from_the_future_is_not_yet_valid() -> None:
    refusal = _refusal(check_request_time, int(NOW) + SKEW_S + 1, NOW, SKEW_S)
    assert refusal.reason is Reason.NOT_YET_VALID


def test_request_within_clock_skew_passes() -> None:
    check_request_time(int(NOW) + SKEW_S, NOW, SKEW_S)


@pytest.mark.parametrize("max_age_s", [10, 30, 120])
def test_max_age_s_sets_how_old_a_request_may_be(max_age_s: int) -> None:
    check_request_time(int(NOW) - max_age_s, NOW, SKEW_S, max_age_s=max_age_s)
    refusal = _refusal(
        check_request_time, int(NOW) - max_age_s - 1, NOW, SKEW_S, max_age_s=max_age_s
    )
    assert refusal.reason is Reason.STALE


def test_a_shorter_max_age_refuses_what_the_default_allows() -> None:
    sent_at = int(NOW) - 30  # within a minute
    check_request_time(sent_at, NOW, SKEW_S)
    refusal = _refusal(check_request_time, sent_at, NOW, SKEW_S, max_age_s=29)
    assert refusal.reason is Reason.STALE


def test_max_age_s_does_not_change_the_allowance_for_the_future() -> None:
    check_request_time(int(NOW) + SKEW_S, NOW, SKEW_S, max_age_s=1)
    refusal = _refusal(check_request_time, int(NOW) + SKEW_S + 1, NOW, SKEW_S, max_age_s=600)
    assert refusal.reason is Reason.NOT_YET_VALID


# --- key requests -------------------------------------------------------------------------------


@pytest.mark.parametrize("user", [OWNER, RESIDENT], ids=["owner", "resident"])
def test_owner_and_resident_get_a_key_without_a_pass(user: UserRecord) -> None:
    grant = _decide_key(user, passes=())
    assert grant == KeyGrant(user.role, pass_id=NO_PASS, max_uses=UNLIMITED_USES, not_after=None)


@pytest.mark.parametrize("user", [OWNER, RESIDENT], ids=["owner", "resident"])
def test_owner_and_resident_get_a_key_at_any_hour(user: UserRecord) -> None:
    sunday_night = paris("2026-11-29 03:00")
    assert _decide_key(user, passes=(), now=sunday_night).role is user.role


def test_guest_with_a_pass_gets_a_key_under_that_pass() -> None:
    grant = _decide_key(passes=(_pass(max_uses=5, uses=2),))
    assert grant == KeyGrant(Role.GUEST, pass_id=7, max_uses=5, not_after=PASS.valid_until)


def test_guest_pass_without_a_use_limit_grants_unlimited_uses() -> None:
    assert _decide_key().max_uses == UNLIMITED_USES


def test_guest_key_ends_with_the_weekly_window() -> None:
    grant = _decide_key(passes=(_pass(weekly_hours="mon-fri 08:00-18:00"),))
    assert grant.not_after == paris("2026-11-23 18:00")


def test_guest_key_ends_with_the_pass_when_that_comes_first() -> None:
    ends_soon = _pass(valid_until=paris("2026-11-23 11:00"), weekly_hours="mon-fri 08:00-18:00")
    assert _decide_key(passes=(ends_soon,)).not_after == paris("2026-11-23 11:00")


def test_guest_gets_the_first_pass_that_allows_access() -> None:
    later = _pass(pass_id=8, valid_from=paris("2026-11-25 00:00"))
    grant = _decide_key(passes=(later, _pass(pass_id=9)))
    assert grant.pass_id == 9


def test_guest_without_a_pass_is_refused() -> None:
    refusal = _refusal(_decide_key, passes=())
    assert refusal.reason is Reason.NO_PASS


def test_guest_with_a_revoked_pass_is_refused() -> None:
    refusal = _refusal(_decide_key, passes=(_pass(revoked_at=paris("2026-11-22 09:00")),))
    assert (refusal.reason, refusal.who, refusal.pass_id) == (Reason.PASS_REVOKED, "bob", 7)


def test_guest_outside_weekly_hours_is_refused() -> None:
    weekend = _pass(weekly_hours="sat,sun 10:00-18:00")
    refusal = _refusal(_decide_key, passes=(weekend,))
    assert (refusal.reason, refusal.pass_id) == (Reason.OUTSIDE_HOURS, 7)


def test_guest_with_a_used_up_pass_is_refused() -> None:
    refusal = _refusal(_decide_key, passes=(_pass(max_uses=3, uses=3),))
    assert refusal.reason is Reason.USES_EXHAUSTED


@pytest.mark.parametrize(
    ("passes", "reason"),
    [
        ((_pass(valid_until=paris("2026-11-20 00:00")),), Reason.EXPIRED),
        ((_pass(valid_from=paris("2026-11-24 00:00")),), Reason.NOT_YET_VALID),
    ],
    ids=["expired", "not-yet-valid"],
)
def test_guest_with_a_pass_not_of_now_is_refused(passes, reason: Reason) -> None:
    assert _refusal(_decide_key, passes=passes).reason is reason


@pytest.mark.parametrize("user", [OWNER, RESIDENT, GUEST], ids=["owner", "resident", "guest"])
def test_removed_user_gets_no_key(user: UserRecord) -> None:
    refusal = _refusal(_decide_key, _removed(user), passes=(PASS,))
    assert (refusal.reason, refusal.who) == (Reason.UNKNOWN_USER, user.name)


def test_unknown_user_gets_no_key() -> None:
    refusal = _refusal(_decide_key, None, name="mallory")
    assert (refusal.reason, refusal.who) == (Reason.UNKNOWN_USER, "mallory")


@pytest.mark.parametrize("user", [OWNER, GUEST], ids=["owner", "guest"])
def test_key_for_an_unknown_lock_is_refused(user: UserRecord) -> None:
    assert _refusal(_decide_key, user, lock=None).reason is Reason.UNKNOWN_LOCK


def test_unknown_user_is_refused_before_the_lock_is_looked_at() -> None:
    refusal = _refusal(_decide_key, None, name="mallory", lock=None)
    assert refusal.reason is Reason.UNKNOWN_USER


# --- remote commands ----------------------------------------------------------------------------


def _decide_command(
    user: UserRecord | None, *, lock: LockRecord | None = LOCK, name: str | None = None
) -> Role:
    return decide_command(
        name=name or (user.name if user else "nobody"), user=user, lock_id="lock1", lock=lock
    )


@pytest.mark.parametrize("user", [OWNER, RESIDENT], ids=["owner", "resident"])
def test_owner_and_resident_may_send_commands(user: UserRecord) -> None:
    assert _decide_command(user) is user.role


def test_guest_may_not_send_commands() -> None:
    refusal = _refusal(_decide_command, GUEST)
    assert (refusal.reason, refusal.who) == (Reason.ROLE_NOT_ALLOWED, "bob")


@pytest.mark.parametrize("user", [OWNER, RESIDENT], ids=["owner", "resident"])
def test_removed_user_may_not_send_commands(user: UserRecord) -> None:
    assert _refusal(_decide_command, _removed(user)).reason is Reason.UNKNOWN_USER


def test_unknown_user_may_not_send_commands() -> None:
    assert _refusal(_decide_command, None, name="mallory").reason is Reason.UNKNOWN_USER


def test_command_for_an_unknown_lock_is_refused() -> None:
    assert _refusal(_decide_command, OWNER, lock=None).reason is Reason.UNKNOWN_LOCK


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
