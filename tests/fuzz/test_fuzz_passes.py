"""Fuzzes the weekly hours of guest passes as text (smartlock.core.passes.WeeklyHours.parse).

Rule: any text parses or raises ``ValueError`` (nothing else); what parses has a canonical text
(``str``) that parses back to the same hours; weekly hours built from valid windows round-trip
through their text.
"""

from __future__ import annotations

import itertools

from fuzz_support import edited_texts
from hypothesis import given
from hypothesis import strategies as st

from smartlock.core.passes import DAYS, FULL_DAY_NAMES, MINUTES_PER_DAY, WeeklyHours, Window


@st.composite
def week_days(draw: st.DrawFn) -> tuple[tuple[Window, ...], ...]:
    """The windows of 7 days: each day's sorted, apart and never touching; at least one window
    (hours that never open have no text: "" is refused)."""
    days = []
    for _ in DAYS:
        bounds = sorted(draw(st.sets(st.integers(0, MINUTES_PER_DAY), max_size=6)))
        pairs = zip(bounds[::2], bounds[1::2], strict=False)
        days.append(tuple(Window(start, end) for start, end in pairs))
    return tuple(days)


weekly_hours = week_days().filter(any).map(WeeklyHours)

_day_names = st.sampled_from(DAYS + FULL_DAY_NAMES).flatmap(
    lambda name: st.sampled_from([name, name.upper(), name.capitalize()])
)
_day_specs = st.lists(
    st.one_of(_day_names, st.builds("{}-{}".format, _day_names, _day_names)), min_size=1, max_size=3
).map(",".join)
_times = st.builds("{}:{:02d}".format, st.integers(0, 25), st.integers(0, 61)) | st.sampled_from(
    ["24:00", "8:00", "08:0", "0:00", "24:01"]
)
_windows = st.lists(st.builds("{}-{}".format, _times, _times), min_size=1, max_size=3).map(",".join)
_groups = st.builds("{} {}".format, _day_specs, _windows)
hours_texts = st.one_of(
    st.text(max_size=40),
    st.lists(_groups, min_size=1, max_size=3).map("; ".join),
    edited_texts(st.lists(_groups, min_size=1, max_size=3).map(";".join)),
    weekly_hours.map(str),
    edited_texts(weekly_hours.map(str)),
)


@given(weekly_hours)
def test_weekly_hours_round_trip_through_their_text(hours: WeeklyHours) -> None:
    assert WeeklyHours.parse(str(hours)) == hours


@given(hours_texts)
def test_any_text_parses_to_hours_with_a_canonical_text_or_raises_value_error(text: str) -> None:
    try:
        hours = WeeklyHours.parse(text)
    except ValueError:
        return
    assert WeeklyHours.parse(str(hours)) == hours
    for windows in hours.days:
        for before, after in itertools.pairwise(windows):
            assert before.end_min < after.start_min
