"""The audit log's tamper-evident hash chain (pure: no IO, no clock).

Rules:

* Entries are numbered ``1, 2, 3, ...`` without gaps (``seq``).
* Each entry carries ``prev_tag``, the previous entry's ``tag``; the first entry's ``prev_tag`` is
  :data:`GENESIS_TAG` (16 zero bytes).
* ``tag = crypto.mac(audit_key, b"smartlock/v1/audit", encoding)``, where ``encoding`` is the
  canonical, length-prefixed :class:`~smartlock.core.wire.Writer` encoding of ``prev_tag``,
  ``seq`` and every :class:`~smartlock.core.records.AuditRecord` field in a fixed
  order (see :func:`encode_for_tag`).  A ``None`` ``event_key`` encodes differently from ``""``.
* The chain is *keyed*: ``audit_key`` (32 bytes) lives in a file in the backend's directory, not in
  the database, so someone who can edit the database can alter rows but cannot recompute the tags.

What the chain detects: a changed field of any entry, an inserted, deleted or reordered entry in
the middle, a tag copied from another entry, a chain made with another key.  :func:`first_broken`
names the first entry at which the chain stops being valid.

Known limit: deleting the *newest* entries leaves a shorter chain that is still valid.  Only an
anchor kept outside the entries can reveal that.  The store keeps one: a head row holding the
count of entries and the last tag, updated in the same transaction as every append, and
:meth:`smartlock.adapters.store.Store.verify_audit` compares the chain's end with it.  Someone
with write access to the database can rewind the head too; against that, the head must be copied
somewhere the database's editor cannot reach (a log line, an alert, another machine).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING

from smartlock import crypto
from smartlock.core.wire import Writer

if TYPE_CHECKING:  # annotations only
    from smartlock.core.records import AuditEntry, AuditRecord

GENESIS_TAG = bytes(crypto.MAC_BYTES)
"""The ``prev_tag`` of entry 1: 16 zero bytes."""

AUDIT_LABEL = b"smartlock/v1/audit"
"""Domain separation: an audit tag is never valid as any other MAC of the system."""


def _i64(value: int) -> bytes:
    try:
        return struct.pack(">q", value)
    except struct.error:
        raise ValueError(f"integer out of the signed 64-bit range: {value}") from None


def _text(writer: Writer, value: str) -> None:
    writer.long_bytes(value.encode("utf-8"))


def encode_for_tag(prev_tag: bytes, seq: int, record: AuditRecord) -> bytes:
    """The bytes an audit tag covers.

    Order: ``prev_tag`` (1-byte length), ``seq`` and ``at_ms`` (signed 64-bit), ``who``, ``role``,
    ``lock_id``, ``channel``, ``action``, ``result``, ``reason`` (UTF-8, 2-byte length each),
    ``attempt`` (signed 64-bit), then ``event_key`` as a presence byte (0: ``None``; 1: present)
    followed, when present, by its UTF-8 text with a 2-byte length.
    """
    writer = Writer().short_bytes(prev_tag).raw(_i64(seq)).raw(_i64(record.at_ms))
    for value in (
        record.who,
        record.role,
        record.lock_id,
        record.channel,
        record.action,
        record.result,
        record.reason,
    ):
        _text(writer, value)
    writer.raw(_i64(record.attempt))
    if record.event_key is None:
        writer.u8(0)
    else:
        writer.u8(1)
        _text(writer, record.event_key)
    return writer.getvalue()


def chain_tag(audit_key: bytes, prev_tag: bytes, seq: int, record: AuditRecord) -> bytes:
    """The tag of entry ``seq`` holding ``record``, chained to ``prev_tag``."""
    return crypto.mac(audit_key, AUDIT_LABEL, encode_for_tag(prev_tag, seq, record))


def first_broken(
    audit_key: bytes,
    entries: Iterable[AuditEntry],
    *,
    prev_seq: int = 0,
    prev_tag: bytes = GENESIS_TAG,
) -> int | None:
    """The ``seq`` of the first entry that breaks the chain, or ``None`` if every entry is fine.

    An entry breaks the chain when its ``seq`` is not the previous one plus 1 (a gap or a
    reordering), when its ``prev_tag`` is not the previous entry's tag, or when its own tag does
    not verify under ``audit_key``.  ``entries`` is consumed lazily, once, in the order given.

    By default the chain is checked from its start; ``prev_seq`` and ``prev_tag`` let a caller
    check a later part of it, given the (already verified) entry just before that part.
    """
    expected_seq = prev_seq + 1
    expected_prev = prev_tag
    for entry in entries:
        # Tags are public (they sit in the database): a plain comparison leaks nothing here.
        if entry.seq != expected_seq or entry.prev_tag != expected_prev:
            return entry.seq
        message = encode_for_tag(entry.prev_tag, entry.seq, entry.record)
        if not crypto.mac_is_valid(audit_key, AUDIT_LABEL, message, entry.tag):
            return entry.seq
        expected_seq = entry.seq + 1
        expected_prev = entry.tag
    return None
