"""Locks: epochs, report sequence numbers (replay protection) and health."""

from __future__ import annotations

import threading

import pytest

from smartlock.adapters.store import LockHealth, Store
from smartlock.core.errors import StoreError

NOW = 1_800_000_000


def test_added_lock_starts_at_epoch_and_version_one(store: Store) -> None:
    lock = store.add_lock("front", now=NOW)
    assert (lock.command_epoch, lock.revocation_version, lock.added_at) == (1, 1, NOW)
    assert store.get_lock("front") == lock
    assert store.get_lock("back") is None


def test_adding_an_existing_lock_is_refused(store: Store) -> None:
    store.add_lock("front", now=NOW)
    with pytest.raises(StoreError, match="lock front already exists"):
        store.add_lock("front", now=NOW)


def test_lock_ids_must_be_identifiers(store: Store) -> None:
    with pytest.raises(StoreError, match="invalid lock id"):
        store.add_lock("front door", now=NOW)


def test_list_locks_is_sorted_by_id(store: Store) -> None:
    store.add_lock("garage", now=NOW)
    store.add_lock("front", now=NOW)
    assert [lock.lock_id for lock in store.list_locks()] == ["front", "garage"]


def test_reset_starts_a_new_command_epoch(store: Store) -> None:
    store.add_lock("front", now=NOW)
    assert store.reset_lock("front").command_epoch == 2
    assert store.reset_lock("front").command_epoch == 3
    lock = store.get_lock("front")
    assert lock is not None
    assert lock.command_epoch == 3


def test_reset_starts_the_report_numbering_again(store: Store) -> None:
    """Reports under the new command key are numbered from 1: the first must be accepted."""
    store.add_lock("front", now=NOW)
    store.add_lock("garage", now=NOW)
    assert store.advance_report_seq("front", 40)
    assert store.advance_report_seq("garage", 40)
    store.reset_lock("front")
    assert store.advance_report_seq("front", 1)
    assert not store.advance_report_seq("front", 1)  # and replay protection starts again too
    assert not store.advance_report_seq("garage", 40)  # another lock keeps its numbering


def test_resetting_an_unknown_lock_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown lock nowhere"):
        store.reset_lock("nowhere")


def test_report_seq_advances_only_forward(store: Store) -> None:
    store.add_lock("front", now=NOW)
    assert store.advance_report_seq("front", 1)
    assert store.advance_report_seq("front", 5)
    assert not store.advance_report_seq("front", 5)  # replayed
    assert not store.advance_report_seq("front", 3)  # older
    assert store.advance_report_seq("front", 6)


def test_report_seq_of_an_unknown_lock_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown lock nowhere"):
        store.advance_report_seq("nowhere", 1)


def test_a_report_seq_is_accepted_once_under_concurrency(store: Store) -> None:
    store.add_lock("front", now=NOW)
    results: list[bool] = []
    barrier = threading.Barrier(4)

    def advance() -> None:
        barrier.wait()
        results.append(store.advance_report_seq("front", 7))

    threads = [threading.Thread(target=advance) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]


def test_lock_health_is_upserted(store: Store) -> None:
    store.add_lock("front", now=NOW)
    assert store.lock_health("front") is None
    first = LockHealth("front", True, NOW, "locked", 1, NOW)
    store.set_lock_health(first)
    assert store.lock_health("front") == first
    second = LockHealth("front", False, None, "unknown", 2, NOW + 60)
    store.set_lock_health(second)
    assert store.lock_health("front") == second


def test_health_of_an_unknown_lock_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="unknown lock nowhere"):
        store.set_lock_health(LockHealth("nowhere", True, NOW, "locked", 1, NOW))
