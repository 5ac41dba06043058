"""A separate process that appends audit entries: ``audit_writer.py URL KEY_HEX WRITER COUNT``.

After each append has returned (so after its commit) it prints ``committed SEQ`` and flushes, so
that its parent knows which entries must survive a ``kill -9``.  COUNT 0 means "until killed".
"""

from __future__ import annotations

import itertools
import sys

from smartlock.adapters.store import AuditRecord, Store


def main(url: str, key_hex: str, writer: str, count: int) -> None:
    numbers = itertools.count(1) if count == 0 else iter(range(1, count + 1))
    with Store.open(url, audit_key=bytes.fromhex(key_hex)) as store:
        print("ready", flush=True)
        for number in numbers:
            record = AuditRecord(
                at_ms=number,
                who=writer,
                role="system",
                lock_id="front",
                channel="system",
                action="test",
                result="info",
                reason="",
                event_key=f"{writer}-{number}",
            )
            entry = store.append_audit(record)
            assert entry is not None
            print(f"committed {entry.seq} {writer}-{number}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
