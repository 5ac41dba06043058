"""The audit hash chain: a good chain verifies; each kind of tampering names its first entry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest

from smartlock.adapters.store.records import AuditEntry, AuditRecord
from smartlock.core.audit import GENESIS_TAG, chain_tag, encode_for_tag, first_broken

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def _record(index: int, *, event_key: str | None = None) -> AuditRecord:
    return AuditRecord(
        at_ms=1_800_000_000_000 + index,
        who=f"guest{index}",
        role="guest",
        lock_id="lock1",
        channel="ble",
        action="unlock",
        result="denied" if index % 2 else "granted",
        reason="expired" if index % 2 else "",
        attempt=index % 3,
        event_key=event_key,
    )


def _chain(count: int, key: bytes = KEY) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    prev = GENESIS_TAG
    for seq in range(1, count + 1):
        record = _record(seq, event_key=f"event-{seq}" if seq % 2 else None)
        tag = chain_tag(key, prev, seq, record)
        entries.append(AuditEntry(seq=seq, record=record, prev_tag=prev, tag=tag))
        prev = tag
    return entries


def test_a_good_chain_verifies() -> None:
    assert first_broken(KEY, _chain(6)) is None


def test_an_empty_chain_verifies() -> None:
    assert first_broken(KEY, []) is None


def test_genesis_tag_is_sixteen_zero_bytes() -> None:
    assert bytes(16) == GENESIS_TAG
    assert _chain(1)[0].prev_tag == GENESIS_TAG


def test_tags_are_sixteen_bytes_and_depend_on_the_key() -> None:
    record = _record(1)
    tag = chain_tag(KEY, GENESIS_TAG, 1, record)
    assert len(tag) == 16
    assert tag != chain_tag(OTHER_KEY, GENESIS_TAG, 1, record)


def test_none_event_key_is_encoded_apart_from_empty_text() -> None:
    assert encode_for_tag(GENESIS_TAG, 1, _record(1, event_key=None)) != encode_for_tag(
        GENESIS_TAG, 1, _record(1, event_key="")
    )


def test_field_boundaries_cannot_shift() -> None:
    # "ab" + "c" must not tag like "a" + "bc": every field is length-prefixed.
    left = dataclasses.replace(_record(1), who="ab", role="c")
    right = dataclasses.replace(_record(1), who="a", role="bc")
    assert chain_tag(KEY, GENESIS_TAG, 1, left) != chain_tag(KEY, GENESIS_TAG, 1, right)


_ALTERATIONS: dict[str, Callable[[AuditRecord], AuditRecord]] = {
    "at_ms": lambda record: dataclasses.replace(record, at_ms=record.at_ms + 1),
    "who": lambda record: dataclasses.replace(record, who="mallory"),
    "role": lambda record: dataclasses.replace(record, role="owner"),
    "lock_id": lambda record: dataclasses.replace(record, lock_id="lock2"),
    "channel": lambda record: dataclasses.replace(record, channel="remote"),
    "action": lambda record: dataclasses.replace(record, action="lock"),
    "result": lambda record: dataclasses.replace(record, result="info"),
    "reason": lambda record: dataclasses.replace(record, reason="edited"),
    "attempt": lambda record: dataclasses.replace(record, attempt=record.attempt + 1),
    "event_key": lambda record: dataclasses.replace(record, event_key="forged"),
}


def test_every_record_field_is_covered_by_the_alterations() -> None:
    assert set(_ALTERATIONS) == {field.name for field in dataclasses.fields(AuditRecord)}


@pytest.mark.parametrize("field", list(_ALTERATIONS))
@pytest.mark.parametrize("seq", [1, 3, 5])
def test_altering_any_field_of_any_entry_breaks_the_chain_there(field: str, seq: int) -> None:
    entries = _chain(5)
    victim = entries[seq - 1]
    entries[seq - 1] = dataclasses.replace(victim, record=_ALTERATIONS[field](victim.record))
    assert first_broken(KEY, entries) == seq


def test_dropping_an_event_key_breaks_the_chain() -> None:
    entries = _chain(3)
    assert entries[0].record.event_key is not None
    entries[0] = dataclasses.replace(
        entries[0], record=dataclasses.replace(entries[0].record, event_key=None)
    )
    assert first_broken(KEY, entries) == 1


def test_altering_a_seq_is_a_gap() -> None:
    entries = _chain(4)
    entries[2] = dataclasses.replace(entries[2], seq=7)
    assert first_broken(KEY, entries) == 7


def test_deleting_a_middle_entry_names_the_entry_after_the_gap() -> None:
    entries = _chain(5)
    del entries[2]  # seq 3
    assert first_broken(KEY, entries) == 4


def test_deleting_the_first_entry_is_detected() -> None:
    assert first_broken(KEY, _chain(3)[1:]) == 2


def test_deleting_the_newest_entries_is_not_detectable_by_the_chain_alone() -> None:
    # The documented limit: the store's head row is the outside anchor for this case.
    assert first_broken(KEY, _chain(5)[:3]) is None


def test_reordering_names_the_first_entry_out_of_place() -> None:
    entries = _chain(5)
    entries[1], entries[2] = entries[2], entries[1]
    assert first_broken(KEY, entries) == 3


def test_renumbering_reordered_entries_still_breaks_the_chain() -> None:
    entries = _chain(5)
    second, third = entries[1], entries[2]
    entries[1] = dataclasses.replace(third, seq=2)
    entries[2] = dataclasses.replace(second, seq=3)
    assert first_broken(KEY, entries) == 2


def test_swapping_two_tags_names_the_first_of_them() -> None:
    entries = _chain(5)
    a, b = entries[1], entries[3]
    entries[1] = dataclasses.replace(a, tag=b.tag)
    entries[3] = dataclasses.replace(b, tag=a.tag)
    assert first_broken(KEY, entries) == 2


def test_a_recomputed_tag_without_relinking_breaks_the_next_entry() -> None:
    # Someone who knew the key could re-tag an altered entry; then the next prev_tag no longer
    # matches. Without the key (the real threat), the altered entry itself is named.
    entries = _chain(4)
    victim = entries[1]
    altered = dataclasses.replace(victim.record, reason="edited")
    retagged = chain_tag(KEY, victim.prev_tag, victim.seq, altered)
    entries[1] = dataclasses.replace(victim, record=altered, tag=retagged)
    assert first_broken(KEY, entries) == 3


def test_a_wrong_prev_tag_is_detected_even_with_a_valid_tag() -> None:
    entries = _chain(3)
    record = entries[1].record
    bogus_prev = bytes(16)
    entries[1] = AuditEntry(
        seq=2, record=record, prev_tag=bogus_prev, tag=chain_tag(KEY, bogus_prev, 2, record)
    )
    assert first_broken(KEY, entries) == 2


def test_a_chain_made_with_another_key_breaks_at_the_first_entry() -> None:
    assert first_broken(OTHER_KEY, _chain(3)) == 1


def test_a_later_part_of_the_chain_verifies_from_its_predecessor() -> None:
    entries = _chain(6)
    anchor = entries[2]
    assert first_broken(KEY, entries[3:], prev_seq=anchor.seq, prev_tag=anchor.tag) is None
    assert first_broken(KEY, entries[3:]) == 4


def test_entries_are_consumed_lazily() -> None:
    entries = _chain(4)
    entries[0] = dataclasses.replace(entries[0], tag=bytes(16))
    consumed: list[int] = []

    def stream() -> Iterator[AuditEntry]:
        for entry in entries:
            consumed.append(entry.seq)
            yield entry

    assert first_broken(KEY, stream()) == 1
    assert consumed == [1]
