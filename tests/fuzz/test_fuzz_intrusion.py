"""Fuzzes the intrusion detector's durable state (smartlock.core.intrusion):
``IntrusionDetector.restore``.

Rule: any bytes either restore a detector or are refused with ``ValueError`` (nothing else), and a
refused snapshot changes nothing; a detector that restored a snapshot works (counts failures, says
whom it locks out) and snapshots to a state it restores again; valid snapshots round-trip.
"""

from __future__ import annotations

import json
from typing import Any

from fuzz_support import NOW, edited_json, intrusion_snapshots, json_values
from hypothesis import given
from hypothesis import strategies as st

from smartlock.core.intrusion import IntrusionDetector

REFERENCE = {
    "format": "smartlock-intrusion",
    "version": 1,
    "subjects": [
        {"subject": "user:alice", "failures": [NOW - 30, NOW - 20], "locked_until": None},
        {
            "subject": "lock",
            "failures": [NOW - 9, NOW - 8, NOW - 7, NOW - 6],
            "locked_until": NOW + 60,
        },
    ],
}


def _detector() -> IntrusionDetector:
    detector = IntrusionDetector()
    detector.restore(json.dumps(REFERENCE).encode())
    return detector


def test_the_reference_snapshot_restores_a_lockout() -> None:
    assert _detector().locked_until("lock", NOW) == NOW + 60


@given(
    st.one_of(
        edited_json(REFERENCE).map(json.dumps).map(str.encode),
        json_values.map(json.dumps).map(str.encode),
        st.binary(max_size=200),
    )
)
def test_a_damaged_intrusion_snapshot_is_refused_or_restores_a_working_detector(
    raw: bytes,
) -> None:
    detector = _detector()
    before = detector.snapshot()
    try:
        detector.restore(raw)
    except ValueError:
        assert detector.snapshot() == before  # a refused snapshot changes nothing
        return
    snapshot = detector.snapshot()
    for subject in ("lock", "user:alice", "someone else"):
        detector.locked_until(subject, NOW)
        detector.record_failure(subject, NOW)
    again = IntrusionDetector()
    again.restore(snapshot)
    assert again.snapshot() == snapshot


@given(intrusion_snapshots())
def test_valid_intrusion_snapshots_round_trip(document: dict[str, Any]) -> None:
    detector = IntrusionDetector()
    detector.restore(json.dumps(document).encode())
    assert detector.snapshot() == json.dumps(document, allow_nan=False).encode()
