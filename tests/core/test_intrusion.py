"""smartlock.core.intrusion: failed attempts per subject, lockouts, bounded memory, snapshots."""

from __future__ import annotations

import json

import pytest

from smartlock.core.intrusion import (
    MAX_FAILURES_KEPT,
    SNAPSHOT_FORMAT,
    SNAPSHOT_VERSION,
    FailureVerdict,
    IntrusionDetector,
)

NOW = 1_800_000_000.0
ALICE = "user:alice"
BOB = "user:bob"
LOCK = "lock:lock_01"


def _fail(detector: IntrusionDetector, subject: str, *times: float) -> list[FailureVerdict]:
    return [detector.record_failure(subject, NOW + t) for t in times]


# --- the rule ----------------------------------------------------------------------------------


def test_three_failures_within_five_minutes_do_not_lock_out() -> None:
    detector = IntrusionDetector()
    verdicts = _fail(detector, ALICE, 0, 60, 120)
    assert [v.attempt for v in verdicts] == [1, 2, 3]
    assert not any(v.locked_out for v in verdicts)
    assert all(v.lockout_until is None for v in verdicts)
    assert detector.locked_until(ALICE, NOW + 120) is None


def test_fourth_failure_within_five_minutes_locks_out() -> None:
    detector = IntrusionDetector()
    *_, fourth = _fail(detector, ALICE, 0, 60, 120, 180)
    assert fourth == FailureVerdict(attempt=4, lockout_until=NOW + 180 + 300, locked_out=True)
    assert detector.locked_until(ALICE, NOW + 181) == NOW + 480


def test_failures_spread_over_more_than_the_window_do_not_lock_out() -> None:
    detector = IntrusionDetector()
    verdicts = _fail(detector, ALICE, 0, 101, 202, 303, 404, 505)
    assert not any(v.locked_out for v in verdicts)
    assert [v.attempt for v in verdicts] == [1, 2, 3, 3, 3, 3]


def test_a_failure_exactly_window_s_old_still_counts() -> None:
    detector = IntrusionDetector()
    *_, fourth = _fail(detector, ALICE, 0, 1, 2, 300)
    assert fourth.attempt == 4
    assert fourth.locked_out


def test_a_failure_just_over_window_s_old_no_longer_counts() -> None:
    detector = IntrusionDetector()
    *_, fourth = _fail(detector, ALICE, 0, 1, 2, 300.001)
    assert fourth.attempt == 3
    assert not fourth.locked_out


def test_threshold_is_the_number_of_failures_allowed() -> None:
    detector = IntrusionDetector(threshold=1, window_s=10, lockout_s=60)
    first, second = _fail(detector, ALICE, 0, 5)
    assert not first.locked_out
    assert second.lockout_until == NOW + 65


def test_subjects_are_counted_apart() -> None:
    detector = IntrusionDetector()
    _fail(detector, ALICE, 0, 1, 2)
    _fail(detector, BOB, 3, 4, 5)
    assert _fail(detector, LOCK, 6) == [FailureVerdict(1, None, False)]
    assert detector.locked_until(ALICE, NOW + 6) is None
    assert _fail(detector, ALICE, 7)[0].locked_out
    assert detector.locked_until(BOB, NOW + 7) is None


# --- the lockout -------------------------------------------------------------------------------


def test_lockout_ends_exactly_at_lockout_until() -> None:
    detector = IntrusionDetector()
    *_, fourth = _fail(detector, ALICE, 0, 1, 2, 3)
    assert fourth.lockout_until == NOW + 303
    assert detector.locked_until(ALICE, NOW + 302.999) == NOW + 303
    assert detector.locked_until(ALICE, NOW + 303) is None


def test_unknown_subject_is_not_locked_out() -> None:
    assert IntrusionDetector().locked_until(ALICE, NOW) is None


def test_failures_during_a_lockout_are_counted_but_do_not_extend_it() -> None:
    detector = IntrusionDetector()
    _fail(detector, ALICE, 0, 1, 2, 3)
    during = _fail(detector, ALICE, 100, 200, 250)
    assert [v.attempt for v in during] == [5, 6, 7]
    assert all(v.locked_out for v in during)
    assert all(v.lockout_until is None for v in during)  # only the failure that started it
    assert detector.locked_until(ALICE, NOW + 250) == NOW + 303


def test_failing_on_during_a_lockout_locks_out_again_after_it() -> None:
    detector = IntrusionDetector()
    _fail(detector, ALICE, 0, 1, 2, 3)
    _fail(detector, ALICE, 100, 200, 250)  # still counted when the lockout ends
    (after,) = _fail(detector, ALICE, 303)  # the window holds 3, 100, 200, 250 and 303
    assert after == FailureVerdict(attempt=5, lockout_until=NOW + 603, locked_out=True)


def test_after_a_quiet_lockout_the_subject_has_its_attempts_again() -> None:
    detector = IntrusionDetector()
    _fail(detector, ALICE, 0, 1, 2, 3)
    verdicts = _fail(detector, ALICE, 400, 401, 402)
    assert [v.attempt for v in verdicts] == [1, 2, 3]
    assert not any(v.locked_out for v in verdicts)


def test_success_clears_the_failure_history() -> None:
    detector = IntrusionDetector()
    _fail(detector, ALICE, 0, 1, 2)
    detector.record_success(ALICE, NOW + 3)
    assert [v.attempt for v in _fail(detector, ALICE, 4, 5, 6)] == [1, 2, 3]
    assert detector.locked_until(ALICE, NOW + 6) is None


def test_success_does_not_lift_a_lockout_in_force() -> None:
    detector = IntrusionDetector()
    _fail(detector, ALICE, 0, 1, 2, 3)
    detector.record_success(ALICE, NOW + 10)
    assert detector.locked_until(ALICE, NOW + 10) == NOW + 303
    (next_failure,) = _fail(detector, ALICE, 20)
    assert next_failure.attempt == 1  # the history was cleared all the same
    assert next_failure.lockout_until is None


def test_success_of_an_unknown_subject_is_harmless() -> None:
    detector = IntrusionDetector()
    detector.record_success(ALICE, NOW)
    assert len(detector) == 0


def test_success_forgets_a_subject_that_is_not_locked_out() -> None:
    detector = IntrusionDetector()
    _fail(detector, ALICE, 0)
    detector.record_success(ALICE, NOW + 1)
    assert len(detector) == 0


def test_a_clock_stepping_back_shortens_a_lockout_to_lockout_s() -> None:
    detector = IntrusionDetector()
    _fail(detector, ALICE, 0, 1, 2, 3)  # locked out until NOW + 303
    assert detector.locked_until(ALICE, NOW - 3600) == NOW - 3600 + 300
    assert detector.locked_until(ALICE, NOW - 3600 + 300) is None


# --- memory ------------------------------------------------------------------------------------


def test_capacity_bounds_memory_by_forgetting_the_least_recently_touched() -> None:
    detector = IntrusionDetector(capacity=3)
    for n, subject in enumerate(("user:a", "user:b", "user:c")):
        _fail(detector, subject, n)
    _fail(detector, "user:a", 10)  # touched: now "user:b" is the least recent
    _fail(detector, "user:d", 11)
    assert len(detector) == 3
    assert _fail(detector, "user:b", 12)[0].attempt == 1  # forgotten
    assert _fail(detector, "user:a", 13)[0].attempt == 3  # remembered


def test_many_subjects_never_grow_past_capacity() -> None:
    detector = IntrusionDetector(capacity=10)
    for n in range(1000):
        detector.record_failure(f"user:{n}", NOW + n)
    assert len(detector) == 10


def test_flooding_with_new_subjects_does_not_lift_a_lockout() -> None:
    detector = IntrusionDetector(capacity=3)
    _fail(detector, ALICE, 0, 1, 2, 3)
    for n in range(100):
        detector.record_failure(f"user:made-up-{n}", NOW + 10)
    assert len(detector) == 3
    assert detector.locked_until(ALICE, NOW + 10) == NOW + 303


def test_when_every_subject_is_locked_out_the_least_recent_lockout_goes() -> None:
    detector = IntrusionDetector(capacity=2)
    _fail(detector, ALICE, 0, 0, 0, 0)
    _fail(detector, BOB, 1, 1, 1, 1)
    _fail(detector, LOCK, 2)
    assert detector.locked_until(ALICE, NOW + 2) is None
    assert detector.locked_until(BOB, NOW + 2) == NOW + 301


def test_the_subject_that_just_failed_is_never_the_one_forgotten() -> None:
    detector = IntrusionDetector(capacity=1)
    _fail(detector, ALICE, 0, 0, 0, 0)
    assert _fail(detector, BOB, 1, 2)[-1].attempt == 2
    assert detector.locked_until(ALICE, NOW + 2) is None


def test_failures_kept_per_subject_are_bounded() -> None:
    detector = IntrusionDetector()
    verdicts = [
        detector.record_failure(ALICE, NOW + n / 1000) for n in range(3 * MAX_FAILURES_KEPT)
    ]
    assert verdicts[-1].attempt == MAX_FAILURES_KEPT
    assert verdicts[-1].locked_out


def test_a_threshold_above_the_bound_still_locks_out() -> None:
    threshold = MAX_FAILURES_KEPT + 10
    detector = IntrusionDetector(threshold=threshold)
    verdicts = [detector.record_failure(ALICE, NOW) for _ in range(threshold + 1)]
    assert not verdicts[-2].locked_out
    assert verdicts[-1].lockout_until == NOW + 300


# --- snapshot and restore ----------------------------------------------------------------------


def test_snapshot_round_trip_keeps_lockouts_and_failures() -> None:
    detector = IntrusionDetector()
    _fail(detector, ALICE, 0, 1, 2, 3)
    _fail(detector, BOB, 4, 5)
    restored = IntrusionDetector()
    restored.restore(detector.snapshot())
    assert restored.locked_until(ALICE, NOW + 10) == NOW + 303
    assert restored.locked_until(BOB, NOW + 10) is None
    assert _fail(restored, BOB, 6)[0] == FailureVerdict(3, None, False)
    assert _fail(restored, BOB, 7)[0].locked_out
    assert restored.snapshot() != IntrusionDetector().snapshot()


def test_snapshot_of_a_restored_detector_is_the_same() -> None:
    detector = IntrusionDetector()
    _fail(detector, ALICE, 0, 1.5, 2.25, 3)
    _fail(detector, LOCK, 4)
    restored = IntrusionDetector()
    restored.restore(detector.snapshot())
    assert restored.snapshot() == detector.snapshot()


def test_snapshot_keeps_the_order_of_recent_use() -> None:
    detector = IntrusionDetector(capacity=2)
    _fail(detector, ALICE, 0)
    _fail(detector, BOB, 1)
    restored = IntrusionDetector(capacity=2)
    restored.restore(detector.snapshot())
    _fail(restored, LOCK, 2)  # forgets ALICE, the least recently touched
    assert [s["subject"] for s in json.loads(restored.snapshot())["subjects"]] == [BOB, LOCK]


def test_snapshot_is_versioned_json() -> None:
    detector = IntrusionDetector()
    _fail(detector, ALICE, 0)
    document = json.loads(detector.snapshot())
    assert document == {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "subjects": [{"subject": ALICE, "failures": [NOW], "locked_until": None}],
    }


def test_restore_replaces_the_whole_state() -> None:
    detector = IntrusionDetector()
    _fail(detector, ALICE, 0, 1, 2, 3)
    detector.restore(IntrusionDetector().snapshot())
    assert len(detector) == 0
    assert detector.locked_until(ALICE, NOW + 10) is None


def test_restore_beyond_capacity_keeps_the_most_recently_touched() -> None:
    big = IntrusionDetector()
    for n in range(5):
        _fail(big, f"user:{n}", n)
    small = IntrusionDetector(capacity=2)
    small.restore(big.snapshot())
    assert [s["subject"] for s in json.loads(small.snapshot())["subjects"]] == ["user:3", "user:4"]


def _snapshot(**changes: object) -> bytes:
    entry = {"subject": ALICE, "failures": [NOW], "locked_until": NOW + 300}
    document = {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "subjects": [entry]}
    for key, value in changes.items():
        if key in entry:
            entry[key] = value
        else:
            document[key] = value
    return json.dumps(document).encode()


def test_the_helper_snapshot_is_valid() -> None:
    detector = IntrusionDetector()
    detector.restore(_snapshot())
    assert detector.locked_until(ALICE, NOW) == NOW + 300


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe\xfa",
        b"[" * 100_000,
        b"[]",
        b"null",
        b'{"version": 1, "subjects": []}',
        _snapshot(format="something-else"),
        _snapshot(version=2),
        _snapshot(version="1"),
        _snapshot(version=True),
        _snapshot(subjects={}),
        _snapshot(subjects=[[ALICE, [NOW], None]]),
        _snapshot(subjects=[{"subject": 1, "failures": [], "locked_until": None}]),
        _snapshot(subjects=[{"subject": ALICE, "failures": []}]),
        _snapshot(failures=NOW),
        _snapshot(failures=["yesterday"]),
        _snapshot(failures=[True]),
        _snapshot(locked_until="soon"),
        _snapshot(locked_until=False),
        _snapshot(locked_until=10**400),
        _snapshot().replace(b"1800000300.0", b"1e400"),
        _snapshot().replace(b"1800000300.0", b"NaN"),
        _snapshot().replace(b"1800000300.0", b"Infinity"),
        _snapshot(
            subjects=[
                {"subject": ALICE, "failures": [], "locked_until": None},
                {"subject": ALICE, "failures": [], "locked_until": None},
            ]
        ),
    ],
)
def test_restore_of_anything_but_a_snapshot_raises_value_error(data: bytes) -> None:
    detector = IntrusionDetector()
    _fail(detector, BOB, 0, 1, 2, 3)
    with pytest.raises(ValueError, match="intrusion snapshot"):
        detector.restore(data)
    assert detector.locked_until(BOB, NOW + 10) == NOW + 303  # unchanged by a failed restore


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"threshold": 0}, "threshold"),
        ({"window_s": 0}, "window_s"),
        ({"window_s": -1}, "window_s"),
        ({"window_s": float("nan")}, "window_s"),
        ({"window_s": float("inf")}, "window_s"),
        ({"lockout_s": 0}, "lockout_s"),
        ({"lockout_s": float("inf")}, "lockout_s"),
        ({"capacity": 0}, "capacity"),
    ],
)
def test_nonsense_settings_are_refused(settings: dict[str, float], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        IntrusionDetector(**settings)
