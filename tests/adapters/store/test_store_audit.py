"""The audit log in the database: chained appends, tampering found, exactly-once, concurrency."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from smartlock.adapters.store import AuditRecord, Store

WRITER = Path(__file__).with_name("audit_writer.py")


def _record(
    number: int,
    *,
    who: str = "guest1",
    lock_id: str = "front",
    event_key: str | None = None,
) -> AuditRecord:
    return AuditRecord(
        at_ms=1_800_000_000_000 + number * 1000,
        who=who,
        role="guest",
        lock_id=lock_id,
        channel="ble",
        action="unlock",
        result="granted",
        reason="",
        attempt=0,
        event_key=event_key,
    )


def _append(store: Store, count: int) -> None:
    for number in range(1, count + 1):
        assert store.append_audit(_record(number)) is not None


def _execute(engine: Engine, statement: str) -> None:
    with engine.begin() as connection:
        connection.execute(text(statement))


def test_appended_entries_form_a_verified_chain(store: Store) -> None:
    entries = [store.append_audit(_record(number)) for number in range(1, 6)]
    assert [entry.seq for entry in entries if entry is not None] == [1, 2, 3, 4, 5]
    assert store.audit_entries() == entries
    assert store.verify_audit() is None


def test_an_empty_log_verifies(store: Store) -> None:
    assert store.verify_audit() is None
    assert store.audit_entries() == []


def test_an_entry_edited_in_sql_is_named(store: Store, raw_engine: Engine) -> None:
    _append(store, 5)
    _execute(raw_engine, "UPDATE audit SET reason = 'edited' WHERE seq = 3")
    assert store.verify_audit() == 3


def test_a_deleted_middle_entry_is_detected(store: Store, raw_engine: Engine) -> None:
    _append(store, 5)
    _execute(raw_engine, "DELETE FROM audit WHERE seq = 2")
    assert store.verify_audit() == 3


def test_deleted_newest_entries_are_caught_by_the_head(store: Store, raw_engine: Engine) -> None:
    _append(store, 5)
    _execute(raw_engine, "DELETE FROM audit WHERE seq >= 4")
    assert store.verify_audit() == 4


def test_an_entry_written_around_the_head_is_detected(store: Store, raw_engine: Engine) -> None:
    _append(store, 3)
    _execute(raw_engine, "UPDATE audit_head SET last_seq = 2")
    assert store.verify_audit() == 3


def test_a_verified_log_can_be_read_in_several_pages(
    store: Store, raw_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("smartlock.adapters.store.audit_log.PAGE_SIZE", 2)
    _append(store, 7)
    assert store.verify_audit() is None
    _execute(raw_engine, "UPDATE audit SET who = 'mallory' WHERE seq = 6")
    assert store.verify_audit() == 6


def test_a_redelivered_event_is_logged_once(store: Store) -> None:
    first = store.append_audit(_record(1, event_key="lock:front:42"))
    assert first is not None
    assert store.append_audit(_record(2, event_key="lock:front:42")) is None
    assert store.append_audit(_record(3, event_key=None)) is not None
    assert store.append_audit(_record(4, event_key=None)) is not None  # None never collides
    assert [entry.seq for entry in store.audit_entries()] == [1, 2, 3]
    assert store.verify_audit() is None


def test_entries_are_filtered_by_lock_who_and_time(store: Store) -> None:
    store.append_audit(_record(1, who="guest1", lock_id="front"))
    store.append_audit(_record(2, who="guest2", lock_id="front"))
    store.append_audit(_record(3, who="guest1", lock_id="garage"))
    store.append_audit(_record(4, who="guest1", lock_id="front"))

    def seqs(
        lock_id: str | None = None,
        who: str | None = None,
        since_ms: int | None = None,
        limit: int | None = None,
    ) -> list[int]:
        entries = store.audit_entries(lock_id=lock_id, who=who, since_ms=since_ms, limit=limit)
        return [entry.seq for entry in entries]

    assert seqs(lock_id="front") == [1, 2, 4]
    assert seqs(who="guest1") == [1, 3, 4]
    assert seqs(who="guest1", lock_id="front") == [1, 4]
    assert seqs(since_ms=_record(3).at_ms) == [3, 4]
    assert seqs(limit=2) == [3, 4]  # the newest two, oldest first
    assert seqs(lock_id="front", limit=2) == [2, 4]
    assert seqs(limit=0) == []


def test_concurrent_appends_from_two_stores_keep_one_gapless_chain(
    store_url: str, audit_key: bytes
) -> None:
    stores = [Store.open(store_url, audit_key=audit_key) for _ in range(2)]
    barrier = threading.Barrier(2)

    def append_fifty(store: Store, writer: str) -> None:
        barrier.wait()
        for number in range(50):
            store.append_audit(_record(number, who=writer, event_key=f"{writer}-{number}"))

    try:
        threads = [
            threading.Thread(target=append_fifty, args=(store, f"w{index}"))
            for index, store in enumerate(stores)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        entries = stores[0].audit_entries()
        assert [entry.seq for entry in entries] == list(range(1, 101))
        assert sum(entry.record.who == "w0" for entry in entries) == 50
        assert stores[1].verify_audit() is None
    finally:
        for store in stores:
            store.close()


def _start_writer(
    store_url: str, audit_key: bytes, writer: str, count: int
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), store_url, audit_key.hex(), writer, str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _committed(lines: list[str]) -> dict[str, int]:
    """event key -> seq, from the writer's 'committed SEQ KEY' lines."""
    found: dict[str, int] = {}
    for line in lines:
        if line.startswith("committed "):
            _, seq, key = line.split()
            found[key] = int(seq)
    return found


def test_concurrent_appends_from_two_processes_keep_one_gapless_chain(
    store_url: str, audit_key: bytes
) -> None:
    writers = [_start_writer(store_url, audit_key, name, 30) for name in ("p1", "p2")]
    outputs = [writer.communicate(timeout=60)[0] for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0]
    committed = _committed("\n".join(outputs).splitlines())
    assert len(committed) == 60
    with Store.open(store_url, audit_key=audit_key) as store:
        entries = store.audit_entries()
        assert store.verify_audit() is None
    assert [entry.seq for entry in entries] == list(range(1, 61))
    assert {entry.record.event_key: entry.seq for entry in entries} == committed


def test_every_committed_entry_survives_kill_9(store_url: str, audit_key: bytes) -> None:
    writer = _start_writer(store_url, audit_key, "victim", 0)
    assert writer.stdout is not None
    lines: list[str] = []
    try:
        while len(_committed(lines)) < 25:
            line = writer.stdout.readline()
            assert line, "the writer died before it was killed"
            lines.append(line)
    finally:
        writer.kill()  # SIGKILL: no atexit, no close, no flush of anything unsaid
        rest, _ = writer.communicate(timeout=30)
    lines.extend(rest.splitlines())
    committed = _committed(lines)
    with Store.open(store_url, audit_key=audit_key) as store:
        assert store.verify_audit() is None
        stored = {entry.record.event_key: entry.seq for entry in store.audit_entries()}
    assert committed.items() <= stored.items()
    assert sorted(stored.values()) == list(range(1, len(stored) + 1))
