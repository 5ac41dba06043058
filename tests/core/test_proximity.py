"""The RSSI floor: pure checks of a reported signal strength against the lock's floor."""

from __future__ import annotations

import pytest

from smartlock.core.errors import Reason, Rejected
from smartlock.core.proximity import RSSI_UNAVAILABLE, check_floor, check_signal


def test_without_a_floor_any_signal_passes() -> None:
    check_signal(-127, None)
    check_signal(RSSI_UNAVAILABLE, None)


@pytest.mark.parametrize("rssi", [-60, -45, 0, 20])
def test_a_signal_at_or_above_the_floor_passes(rssi: int) -> None:
    check_signal(rssi, -60)


@pytest.mark.parametrize("rssi", [-61, -90, -127])
def test_a_signal_below_the_floor_is_refused_as_weak(rssi: int) -> None:
    with pytest.raises(Rejected) as refused:
        check_signal(rssi, -60)
    assert refused.value.reason is Reason.WEAK_SIGNAL
    assert f"{rssi} dBm" in str(refused.value)


def test_an_unreported_strength_is_refused_when_a_floor_is_set() -> None:
    with pytest.raises(Rejected) as refused:
        check_signal(RSSI_UNAVAILABLE, -90)
    assert refused.value.reason is Reason.WEAK_SIGNAL


@pytest.mark.parametrize("floor", [-128, 21, 127])
def test_a_floor_no_radio_can_report_is_a_usage_error(floor: int) -> None:
    with pytest.raises(ValueError, match="--min-rssi"):
        check_floor(floor)


def test_a_floor_in_range_is_accepted() -> None:
    assert check_floor(-70) == -70
