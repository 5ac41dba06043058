"""Passes: every refusal of grant_pass, revocation and its version bump, counted uses."""

from __future__ import annotations

import threading

import pytest

from smartlock.adapters.store import Store
from smartlock.core.errors import StoreError
from smartlock.core.roles import Role

NOW = 1_800_000_000
HOUR = 3600


@pytest.fixture
def site(store: Store) -> Store:
    store.add_user("owner1", Role.OWNER, now=NOW)
    store.add_user("resident1", Role.RESIDENT, now=NOW)
    store.add_user("guest1", Role.GUEST, now=NOW)
    store.add_user("guest2", Role.GUEST, now=NOW)
    store.add_lock("front", now=NOW)
    store.add_lock("garage", now=NOW)
    return store


def _grant(
    store: Store,
    guest: str = "guest1",
    lock_id: str = "front",
    *,
    start: int = NOW,
    end: int = NOW + HOUR,
    max_uses: int | None = None,
    weekly_hours: str | None = None,
    now: int = NOW,
) -> int:
    granted = store.grant_pass(
        guest,
        lock_id,
        valid_from=start,
        valid_until=end,
        max_uses=max_uses,
        weekly_hours=weekly_hours,
        now=now,
    )
    return granted.pass_id


def test_granted_pass_is_stored_as_given(site: Store) -> None:
    pass_id = _grant(site, max_uses=3, weekly_hours="mon 08:00-12:00")
    granted = site.get_pass(pass_id)
    assert granted is not None
    assert (granted.guest, granted.lock_id) == ("guest1", "front")
    assert (granted.valid_from, granted.valid_until) == (NOW, NOW + HOUR)
    assert (granted.max_uses, granted.uses, granted.weekly_hours) == (3, 0, "mon 08:00-12:00")
    assert not granted.revoked
    assert site.get_pass(pass_id + 1000) is None


def test_pass_for_an_unknown_user_is_refused(site: Store) -> None:
    with pytest.raises(StoreError, match="unknown user stranger"):
        _grant(site, "stranger")


def test_pass_for_a_removed_user_is_refused(site: Store) -> None:
    site.remove_user("guest2", now=NOW)
    with pytest.raises(StoreError, match="user guest2 was removed"):
        _grant(site, "guest2")


@pytest.mark.parametrize("name", ["owner1", "resident1"])
def test_pass_for_an_owner_or_resident_is_refused(site: Store, name: str) -> None:
    with pytest.raises(StoreError, match="owners and residents need no pass"):
        _grant(site, name)


def test_pass_for_an_unknown_lock_is_refused(site: Store) -> None:
    with pytest.raises(StoreError, match="unknown lock cellar"):
        _grant(site, lock_id="cellar")


@pytest.mark.parametrize("end", [NOW, NOW - 1])
def test_pass_ending_before_it_starts_is_refused(site: Store, end: int) -> None:
    with pytest.raises(StoreError, match=r"would end .* before it starts"):
        _grant(site, start=NOW, end=end)


def test_already_expired_pass_is_refused(site: Store) -> None:
    with pytest.raises(StoreError, match="already expired"):
        _grant(site, start=NOW - 2 * HOUR, end=NOW - HOUR)
    with pytest.raises(StoreError, match="already expired"):
        _grant(site, start=NOW - HOUR, end=NOW)


@pytest.mark.parametrize("max_uses", [0, -1])
def test_pass_with_fewer_than_one_use_is_refused(site: Store, max_uses: int) -> None:
    with pytest.raises(StoreError, match="at least 1"):
        _grant(site, max_uses=max_uses)


def test_overlapping_pass_is_refused_naming_the_other_pass(site: Store) -> None:
    first = _grant(site, start=NOW, end=NOW + 2 * HOUR)
    with pytest.raises(StoreError, match=rf"pass {first} on front \(.* to .*\), which overlaps"):
        _grant(site, start=NOW + HOUR, end=NOW + 3 * HOUR)


def test_adjacent_or_unrelated_passes_do_not_overlap(site: Store) -> None:
    _grant(site, start=NOW, end=NOW + HOUR)
    _grant(site, start=NOW + HOUR, end=NOW + 2 * HOUR)  # starts as the first ends
    _grant(site, lock_id="garage", start=NOW, end=NOW + HOUR)  # another lock
    _grant(site, "guest2", start=NOW, end=NOW + HOUR)  # another guest
    assert len(site.list_passes(now=NOW)) == 4


def test_a_revoked_or_expired_pass_does_not_block_a_new_one(site: Store) -> None:
    revoked = _grant(site, start=NOW, end=NOW + HOUR)
    site.revoke_pass(revoked, now=NOW)
    _grant(site, start=NOW, end=NOW + HOUR)
    later = NOW + 2 * HOUR  # the pass just granted has expired by then
    _grant(site, start=NOW, end=later + HOUR, now=later)


def test_revoking_bumps_the_lock_version_and_lists_the_pass(site: Store) -> None:
    pass_id = _grant(site)
    revoked = site.revoke_pass(pass_id, now=NOW + 10)
    assert revoked.revoked_at == NOW + 10
    front = site.get_lock("front")
    garage = site.get_lock("garage")
    assert front is not None
    assert garage is not None
    assert front.revocation_version == 2
    assert garage.revocation_version == 1
    assert site.revoked_pass_ids("front", now=NOW + 10) == [pass_id]
    assert site.revoked_pass_ids("garage", now=NOW + 10) == []


def test_revoked_passes_drop_out_of_the_list_once_expired(site: Store) -> None:
    pass_id = _grant(site, end=NOW + HOUR)
    site.revoke_pass(pass_id, now=NOW)
    assert site.revoked_pass_ids("front", now=NOW + HOUR - 1) == [pass_id]
    assert site.revoked_pass_ids("front", now=NOW + HOUR) == []


def test_revoking_unknown_or_revoked_pass_is_refused(site: Store) -> None:
    with pytest.raises(StoreError, match="unknown pass 999"):
        site.revoke_pass(999, now=NOW)
    pass_id = _grant(site)
    site.revoke_pass(pass_id, now=NOW)
    with pytest.raises(StoreError, match="already revoked"):
        site.revoke_pass(pass_id, now=NOW)
    front = site.get_lock("front")
    assert front is not None
    assert front.revocation_version == 2  # the refused revoke bumped nothing


def test_removing_a_user_revokes_its_passes_bumping_each_lock_once(site: Store) -> None:
    front_1 = _grant(site, start=NOW, end=NOW + HOUR)
    front_2 = _grant(site, start=NOW + HOUR, end=NOW + 2 * HOUR)
    garage = _grant(site, lock_id="garage")
    already = _grant(site, start=NOW + 2 * HOUR, end=NOW + 3 * HOUR)
    site.revoke_pass(already, now=NOW)
    other_guest = _grant(site, "guest2")

    assert site.remove_user("guest1", now=NOW + 5) == [front_1, front_2, garage]

    versions = {lock.lock_id: lock.revocation_version for lock in site.list_locks()}
    assert versions == {"front": 3, "garage": 2}  # front: 1 + the earlier revoke + 1
    assert site.revoked_pass_ids("front", now=NOW + 5) == [front_1, front_2, already]
    still = site.get_pass(other_guest)
    assert still is not None
    assert not still.revoked


def test_list_passes_filters_and_hides_inactive_ones(site: Store) -> None:
    active = _grant(site, start=NOW, end=NOW + HOUR)
    expiring = _grant(site, lock_id="garage", start=NOW, end=NOW + 10)
    revoked = _grant(site, "guest2", start=NOW, end=NOW + HOUR)
    site.revoke_pass(revoked, now=NOW)
    later = NOW + 10

    def ids(
        guest: str | None = None, lock_id: str | None = None, *, include_inactive: bool = False
    ) -> list[int]:
        passes = site.list_passes(
            guest=guest, lock_id=lock_id, include_inactive=include_inactive, now=later
        )
        return [granted.pass_id for granted in passes]

    assert ids() == [active]
    assert ids(include_inactive=True) == [active, expiring, revoked]
    assert ids(guest="guest1", include_inactive=True) == [active, expiring]
    assert ids(lock_id="garage", include_inactive=True) == [expiring]
    assert ids(guest="guest2", lock_id="front") == []


def test_passes_for_lists_unrevoked_passes_by_start(site: Store) -> None:
    late = _grant(site, start=NOW + 2 * HOUR, end=NOW + 3 * HOUR)
    early = _grant(site, start=NOW, end=NOW + HOUR)
    revoked = _grant(site, start=NOW + HOUR, end=NOW + 2 * HOUR)
    site.revoke_pass(revoked, now=NOW)
    _grant(site, lock_id="garage")
    assert [granted.pass_id for granted in site.passes_for("guest1", "front")] == [early, late]


def test_recording_a_use_counts_it(site: Store) -> None:
    pass_id = _grant(site, max_uses=2)
    assert site.record_pass_use(pass_id).uses == 1
    assert site.record_pass_use(pass_id).uses == 2
    with pytest.raises(StoreError, match="unknown pass 999"):
        site.record_pass_use(999)


def test_concurrent_uses_are_all_counted(site: Store) -> None:
    pass_id = _grant(site)
    seen: list[int] = []
    barrier = threading.Barrier(2)

    def use_fifty_times() -> None:
        barrier.wait()
        seen.extend(site.record_pass_use(pass_id).uses for _ in range(50))

    threads = [threading.Thread(target=use_fifty_times) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    final = site.get_pass(pass_id)
    assert final is not None
    assert final.uses == 100
    assert sorted(seen) == list(range(1, 101))  # every increment saw its own count


def test_a_pass_revoked_longer_ago_than_any_key_lives_leaves_the_revocation_list(
    site: Store,
) -> None:
    """However many far-future passes are revoked, the lock's list stays bounded."""
    day = 24 * HOUR
    long_pass = _grant(site, start=NOW, end=NOW + 30 * day)
    site.revoke_pass(long_pass, now=NOW)
    assert site.revoked_pass_ids("front", now=NOW + day - 1) == [long_pass]
    assert site.revoked_pass_ids("front", now=NOW + day) == []
