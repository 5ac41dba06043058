"""Users: added once, removed softly (their passes revoked), brought back under a new role."""

from __future__ import annotations

import pytest

from smartlock.adapters.store import Store
from smartlock.core.errors import StoreError
from smartlock.core.roles import Role

NOW = 1_800_000_000


def test_added_user_can_be_read_back(store: Store) -> None:
    added = store.add_user("alice", Role.OWNER, now=NOW)
    assert added.active
    assert store.get_user("alice") == added
    assert added.role is Role.OWNER
    assert added.created_at == NOW


def test_unknown_user_is_none(store: Store) -> None:
    assert store.get_user("nobody") is None


def test_adding_an_existing_user_is_refused(store: Store) -> None:
    store.add_user("alice", Role.OWNER, now=NOW)
    with pytest.raises(StoreError, match="user alice already exists"):
        store.add_user("alice", Role.GUEST, now=NOW)


def test_user_names_must_be_identifiers(store: Store) -> None:
    with pytest.raises(StoreError, match="invalid user name"):
        store.add_user("Alice Smith", Role.GUEST, now=NOW)


def test_removed_user_stays_readable_but_inactive(store: Store) -> None:
    store.add_user("bob", Role.RESIDENT, now=NOW)
    assert store.remove_user("bob", now=NOW + 5) == []
    removed = store.get_user("bob")
    assert removed is not None
    assert not removed.active
    assert removed.removed_at == NOW + 5


def test_list_users_hides_removed_ones_unless_asked(store: Store) -> None:
    store.add_user("carol", Role.GUEST, now=NOW)
    store.add_user("alice", Role.OWNER, now=NOW)
    store.remove_user("carol", now=NOW + 1)
    assert [user.name for user in store.list_users()] == ["alice"]
    assert [user.name for user in store.list_users(include_removed=True)] == ["alice", "carol"]


def test_removing_an_unknown_or_removed_user_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown user ghost"):
        store.remove_user("ghost", now=NOW)
    store.add_user("bob", Role.GUEST, now=NOW)
    store.remove_user("bob", now=NOW)
    with pytest.raises(StoreError, match="already removed"):
        store.remove_user("bob", now=NOW)


def test_a_removed_name_can_be_added_again_with_a_new_role(store: Store) -> None:
    store.add_user("dave", Role.GUEST, now=NOW)
    store.remove_user("dave", now=NOW + 1)
    back = store.add_user("dave", Role.RESIDENT, now=NOW + 2)
    assert back.active
    assert back.role is Role.RESIDENT
    assert back.created_at == NOW + 2
    assert store.get_user("dave") == back


def test_removing_a_user_without_passes_still_bumps_every_locks_revocation_list(
    store: Store,
) -> None:
    """An owner's or resident's keys need no pass: only the list of removed users stops them."""
    store.add_lock("front", now=NOW)
    store.add_lock("garage", now=NOW)
    store.add_user("rita", Role.RESIDENT, now=NOW)
    assert store.remove_user("rita", now=NOW + 5) == []
    assert {lock.lock_id: lock.revocation_version for lock in store.list_locks()} == {
        "front": 2,
        "garage": 2,
    }
    assert store.revoked_user_keys(since=NOW) == [("rita", NOW + 5)]


def test_bringing_back_a_removed_user_republishes_every_locks_list(store: Store) -> None:
    store.add_lock("front", now=NOW)
    store.add_user("rita", Role.RESIDENT, now=NOW)
    store.remove_user("rita", now=NOW + 5)
    store.add_user("rita", Role.GUEST, now=NOW + 10)
    assert [lock.revocation_version for lock in store.list_locks()] == [3]
    assert store.revoked_user_keys(since=NOW) == [("rita", NOW + 5)]  # old keys stay revoked


# --- keys of removed owners and residents, for the locks' revocation lists ----------------------


def test_revoked_user_keys_name_removed_owners_and_residents_with_their_removal_time(
    store: Store,
) -> None:
    store.add_user("olga", Role.OWNER, now=NOW)
    store.add_user("rita", Role.RESIDENT, now=NOW)
    store.add_user("gus", Role.GUEST, now=NOW)
    store.add_user("stay", Role.RESIDENT, now=NOW)
    store.remove_user("rita", now=NOW + 20)
    store.remove_user("olga", now=NOW + 10)
    store.remove_user("gus", now=NOW + 15)  # a guest's keys carry its passes, revoked already
    assert store.revoked_user_keys(since=NOW) == [("olga", NOW + 10), ("rita", NOW + 20)]


def test_revoked_user_keys_are_those_removed_at_or_after_since(store: Store) -> None:
    store.add_user("olga", Role.OWNER, now=NOW)
    store.add_user("rita", Role.RESIDENT, now=NOW)
    store.remove_user("olga", now=NOW + 10)
    store.remove_user("rita", now=NOW + 20)
    assert store.revoked_user_keys(since=NOW + 11) == [("rita", NOW + 20)]
    assert store.revoked_user_keys(since=NOW + 20) == [("rita", NOW + 20)]  # the edge included
    assert store.revoked_user_keys(since=NOW + 21) == []


@pytest.mark.parametrize("role", [Role.OWNER, Role.RESIDENT])
def test_a_user_added_back_stays_listed_with_the_time_of_the_removal(
    store: Store, role: Role
) -> None:
    """Their keys from before the removal stay revoked; the new ones (issued later) work."""
    store.add_user("rita", role, now=NOW)
    store.remove_user("rita", now=NOW + 5)
    back = store.add_user("rita", role, now=NOW + 10)
    assert back.active
    assert store.revoked_user_keys(since=NOW) == [("rita", NOW + 5)]
    store.remove_user("rita", now=NOW + 30)  # removed again: every key up to then is revoked
    assert store.revoked_user_keys(since=NOW) == [("rita", NOW + 30)]


def test_a_user_never_removed_has_no_revoked_keys(store: Store) -> None:
    store.add_user("olga", Role.OWNER, now=NOW)
    store.add_user("rita", Role.RESIDENT, now=NOW)
    assert store.revoked_user_keys(since=0) == []


def test_a_resident_added_back_as_a_guest_stays_listed(store: Store) -> None:
    """The role at removal decides: demoting a resident must not bring back their free keys."""
    store.add_user("rita", Role.RESIDENT, now=NOW)
    store.remove_user("rita", now=NOW + 5)
    store.add_user("rita", Role.GUEST, now=NOW + 10)
    assert store.revoked_user_keys(since=NOW) == [("rita", NOW + 5)]


def test_a_removed_guest_is_not_listed_even_after_coming_back_as_a_resident(store: Store) -> None:
    store.add_user("gus", Role.GUEST, now=NOW)
    store.remove_user("gus", now=NOW + 5)  # the guest's keys all carry a (now revoked) pass
    store.add_user("gus", Role.RESIDENT, now=NOW + 10)
    assert store.revoked_user_keys(since=NOW) == []
