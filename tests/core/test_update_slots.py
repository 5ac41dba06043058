"""Two slots, a trial that must report healthy within a minute, and a highest-installed version
that only grows (before the trial starts), so no rollback to an older bundle is possible."""

from __future__ import annotations

import pytest

from smartlock.core.update_slots import GRACE_S, SlotState, SlotStateError, Trial

NOW = 1_800_000_000.0
START = SlotState("a", (1, 0, 0), (1, 0, 0))


def test_an_update_goes_into_the_spare_slot_on_trial_and_raises_the_floor_at_once() -> None:
    trial = START.start_trial((1, 1, 0), NOW)
    assert trial.trial == Trial("b", (1, 1, 0), NOW + GRACE_S)
    assert trial.slot_to_run == "b"
    assert trial.active == "a"  # the previous slot stays the one to go back to
    assert trial.highest_installed == (1, 1, 0)


def test_a_healthy_trial_becomes_the_active_slot() -> None:
    done = START.start_trial((1, 1, 0), NOW).healthy()
    assert (done.active, done.active_version, done.trial) == ("b", (1, 1, 0), None)
    assert done.spare == "a"


def test_a_trial_that_is_not_healthy_in_time_goes_back_by_itself() -> None:
    trial = START.start_trial((1, 1, 0), NOW)
    still, rolled = trial.check(NOW + GRACE_S - 0.1)
    assert (still, rolled) == (trial, False)
    back, rolled = trial.check(NOW + GRACE_S)
    assert rolled
    assert (back.active, back.active_version, back.slot_to_run) == ("a", (1, 0, 0), "a")
    assert back.highest_installed == (1, 1, 0)  # the failed version cannot come back


@pytest.mark.parametrize("version", [(1, 0, 0), (0, 9, 0)])
def test_no_trial_of_a_version_at_or_below_the_highest_installed(
    version: tuple[int, int, int],
) -> None:
    with pytest.raises(ValueError, match="not above"):
        START.start_trial(version, NOW)


def test_a_rolled_back_version_is_refused_next_time() -> None:
    back, _ = START.start_trial((1, 1, 0), NOW).check(NOW + GRACE_S)
    with pytest.raises(ValueError, match="not above"):
        back.start_trial((1, 1, 0), NOW + 100)
    assert back.start_trial((1, 1, 1), NOW + 100).trial is not None


def test_the_state_survives_a_restart_in_the_middle_of_a_trial() -> None:
    trial = START.start_trial((2, 0, 0), NOW)
    assert SlotState.decode(trial.encode()) == trial
    assert SlotState.decode(START.encode()) == START


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[]",
        b'{"v": 2}',
        b'{"v": 1, "active": "c", "active_version": "1.0.0", "highest_installed": "1.0.0", '
        b'"trial": null}',
        b'{"v": 1, "active": "a", "active_version": "2.0.0", "highest_installed": "1.0.0", '
        b'"trial": null}',
        b'{"v": 1, "active": "a", "active_version": "1.0.0", "highest_installed": "1.0.0", '
        b'"trial": {"slot": "a", "version": "1.0.0", "deadline": 1}}',
        b'{"v": 1, "active": "a", "active_version": "1.0.0", "highest_installed": "1.0.0", '
        b'"trial": {"slot": "b", "version": "1.0.0", "deadline": Infinity}}',
    ],
    ids=["empty", "list", "version-2", "slot-c", "active-above-highest", "trial-in-active", "inf"],
)
def test_a_damaged_state_file_is_a_clear_error(data: bytes) -> None:
    with pytest.raises(SlotStateError):
        SlotState.decode(data)
