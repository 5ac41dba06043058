"""Software updates in the store: which bundle was pushed to which lock, the last step each lock
reported about it, and the version each lock says it runs."""

from __future__ import annotations

import dataclasses

import pytest

from smartlock.adapters.store import Store
from smartlock.core.errors import StoreError
from smartlock.core.records import LockUpdate

NOW = 1_800_000_000
BUNDLE = "0123456789abcdef" * 2
NEXT_BUNDLE = "fedcba9876543210" * 2


@pytest.fixture
def locks(store: Store) -> Store:
    """The store with locks ``front`` and ``garage``."""
    store.add_lock("front", now=NOW)
    store.add_lock("garage", now=NOW)
    return store


def _update(store: Store, lock_id: str = "front") -> LockUpdate:
    update = store.lock_update(lock_id)
    assert update is not None
    return update


def _push(store: Store, version: str = "1.1.0", bundle: str = BUNDLE, at: int = NOW) -> None:
    store.push_update(["front"], bundle_id=bundle, version=version, by="admin", now=at)


def _step(store: Store, step: str, version: str = "1.1.0", reason: str = "", at: int = NOW) -> None:
    store.record_update_step("front", version=version, step=step, reason=reason, at=at)


def test_a_push_to_two_locks_lists_both_as_pushed(locks: Store) -> None:
    locks.push_update(["garage", "front"], bundle_id=BUNDLE, version="1.1.0", by="admin", now=NOW)
    expected = [
        LockUpdate(
            lock_id=lock_id,
            bundle_id=BUNDLE,
            version="1.1.0",
            pushed_by="admin",
            pushed_at=NOW,
            step="pushed",
            step_version="1.1.0",
            reason="",
            step_at=NOW,
            running_version="",
        )
        for lock_id in ("front", "garage")  # sorted by lock id
    ]
    assert locks.lock_updates() == expected
    assert locks.lock_update("front") == expected[0]
    assert not any(update.settled for update in expected)


def test_a_lock_nothing_was_pushed_to_has_no_update(locks: Store) -> None:
    _push(locks)
    assert locks.lock_update("garage") is None
    assert [update.lock_id for update in locks.lock_updates()] == ["front"]


def test_a_push_naming_an_unknown_lock_writes_nothing(locks: Store) -> None:
    with pytest.raises(StoreError, match="unknown lock nowhere"):
        locks.push_update(
            ["front", "nowhere", "garage"], bundle_id=BUNDLE, version="1.1.0", by="admin", now=NOW
        )
    assert locks.lock_updates() == []


def test_a_failed_push_leaves_the_earlier_push_in_place(locks: Store) -> None:
    _push(locks)
    before = _update(locks)
    with pytest.raises(StoreError, match="unknown lock nowhere"):
        locks.push_update(
            ["front", "nowhere"], bundle_id=NEXT_BUNDLE, version="1.2.0", by="admin", now=NOW + 9
        )
    assert locks.lock_updates() == [before]


def test_a_step_of_an_unknown_lock_is_refused(locks: Store) -> None:
    with pytest.raises(StoreError, match="unknown lock nowhere"):
        locks.record_update_step("nowhere", version="1.0.0", step="running", reason="", at=NOW)
    assert locks.lock_updates() == []


def test_running_before_any_push_records_the_running_version(locks: Store) -> None:
    _step(locks, "running", version="1.0.0", at=NOW + 5)
    update = _update(locks)
    assert update.running_version == "1.0.0"
    assert (update.bundle_id, update.version, update.pushed_by) == ("", "", "")
    assert not update.settled
    assert locks.lock_update("garage") is None


def test_an_update_that_installs_and_passes_its_trial_settles(locks: Store) -> None:
    _step(locks, "running", version="1.0.0")
    _push(locks)
    for at, step in enumerate(["downloading", "installed"], start=NOW + 1):
        _step(locks, step, at=at)
        update = _update(locks)
        assert (update.step, update.step_version, update.step_at) == (step, "1.1.0", at)
        assert update.running_version == "1.0.0"  # the old version runs until the trial passes
        assert not update.settled
    _step(locks, "healthy", at=NOW + 3)
    update = _update(locks)
    assert (update.step, update.step_at, update.running_version) == ("healthy", NOW + 3, "1.1.0")
    assert update.settled
    assert (update.bundle_id, update.pushed_at) == (BUNDLE, NOW)  # the push itself is kept


@pytest.mark.parametrize(
    ("step", "reason"),
    [("refused", "bad_signature"), ("refused", "not_newer"), ("rolled_back", "not_healthy")],
)
def test_a_refused_or_rolled_back_update_settles_with_its_reason(
    locks: Store, step: str, reason: str
) -> None:
    _step(locks, "running", version="1.0.0")
    _push(locks)
    _step(locks, step, reason=reason, at=NOW + 4)
    update = _update(locks)
    assert (update.step, update.reason, update.step_at) == (step, reason, NOW + 4)
    assert update.running_version == "1.0.0"
    assert update.settled


@pytest.mark.parametrize("step", ["downloading", "installed", "healthy", "refused", "rolled_back"])
def test_a_step_about_another_version_than_the_pushed_one_does_not_replace_the_push(
    locks: Store, step: str
) -> None:
    _push(locks, version="1.2.0")
    pushed = _update(locks)
    _step(locks, step, version="1.1.0", reason="late", at=NOW + 1)  # about an earlier bundle
    update = _update(locks)
    assert (update.step, update.step_version, update.reason, update.step_at) == (
        "pushed",
        "1.2.0",
        "",
        NOW,
    )
    assert not update.settled
    # healthy still says what the lock runs; nothing else about the push changed
    running = "1.1.0" if step == "healthy" else ""
    assert update == dataclasses.replace(pushed, running_version=running)


def test_a_restart_mid_update_keeps_the_step_and_updates_the_running_version(
    locks: Store,
) -> None:
    _push(locks)
    _step(locks, "downloading", at=NOW + 1)
    _step(locks, "running", version="1.0.1", at=NOW + 2)  # said at every start
    update = _update(locks)
    assert (update.step, update.step_version, update.step_at) == ("downloading", "1.1.0", NOW + 1)
    assert update.running_version == "1.0.1"


def test_a_new_push_starts_again_but_keeps_the_running_version(locks: Store) -> None:
    _push(locks)
    _step(locks, "refused", reason="too_old", at=NOW + 1)
    _step(locks, "running", version="1.0.0", at=NOW + 2)
    _push(locks, version="1.2.0", bundle=NEXT_BUNDLE, at=NOW + 3)
    update = _update(locks)
    assert (update.bundle_id, update.version, update.pushed_at) == (NEXT_BUNDLE, "1.2.0", NOW + 3)
    assert (update.step, update.step_version, update.reason) == ("pushed", "1.2.0", "")
    assert update.step_at == NOW + 3
    assert update.running_version == "1.0.0"
    assert not update.settled


def test_a_push_to_one_lock_leaves_the_others_alone(locks: Store) -> None:
    locks.push_update(["front", "garage"], bundle_id=BUNDLE, version="1.1.0", by="admin", now=NOW)
    locks.record_update_step("garage", version="1.1.0", step="healthy", reason="", at=NOW + 1)
    _push(locks, version="1.2.0", bundle=NEXT_BUNDLE, at=NOW + 2)
    garage = _update(locks, "garage")
    assert (garage.version, garage.step, garage.running_version) == ("1.1.0", "healthy", "1.1.0")
    assert garage.settled


@pytest.mark.parametrize("step", ["downloading", "refused", "rolled_back", "installed"])
def test_a_step_before_any_push_settles_nothing(locks: Store, step: str) -> None:
    _step(locks, step, reason="bad_signature")
    update = locks.lock_update("front")
    assert update is None or (not update.settled and update.running_version == "")
    _push(locks, version="1.2.0")
    assert _update(locks).step == "pushed"
