"""smartlock.core.passes: weekly hours, and when a guest pass lets its guest in."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from smartlock.adapters.store.records import PassRecord
from smartlock.core.errors import Reason, Rejected
from smartlock.core.passes import (
    MINUTES_PER_DAY,
    REFUSAL_PREFERENCE,
    WeeklyHours,
    Window,
    check_pass,
    choose_pass,
)

PARIS = ZoneInfo("Europe/Paris")
# Europe/Paris in 2026: 29 March 02:00 CET -> 03:00 CEST; 25 October 03:00 CEST -> 02:00 CET.


def paris(text: str) -> int:
    """The Unix second of a wall time in Paris (one that exists and is not repeated)."""
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp())


def utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp())


def wall(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


NOW = paris("2026-11-23 10:00")  # a Monday


def _pass(**changes: object) -> PassRecord:
    base = PassRecord(
        pass_id=7,
        guest="bob",
        lock_id="lock1",
        valid_from=paris("2026-11-01 00:00"),
        valid_until=paris("2026-12-01 00:00"),
        max_uses=None,
        uses=0,
        weekly_hours=None,
        created_at=paris("2026-10-31 12:00"),
    )
    return dataclasses.replace(base, **changes)


def _refusal(p: PassRecord, now: int = NOW) -> Rejected:
    with pytest.raises(Rejected) as caught:
        check_pass(p, now, PARIS)
    return caught.value


def _parse_error(text: str) -> str:
    with pytest.raises(ValueError, match=r"^weekly hours ") as caught:
        WeeklyHours.parse(text)
    message = str(caught.value)
    assert "\n" not in message
    return message


def _window(start: str, end: str) -> Window:
    def minutes(hhmm: str) -> int:
        hours, mins = hhmm.split(":")
        return int(hours) * 60 + int(mins)

    return Window(minutes(start), minutes(end))


OFFICE = _window("08:00", "18:00")

# --- parsing -----------------------------------------------------------------------------------


def test_day_range_with_one_window_parses() -> None:
    assert WeeklyHours.parse("mon-fri 08:00-18:00").days == ((OFFICE,),) * 5 + ((), ())


def test_several_windows_and_day_groups_parse() -> None:
    hours = WeeklyHours.parse("mon-fri 08:00-12:00,14:00-18:00; sat 10:00-14:00")
    assert hours.days[0] == (_window("08:00", "12:00"), _window("14:00", "18:00"))
    assert hours.days[4] == hours.days[0]
    assert hours.days[5] == (_window("10:00", "14:00"),)
    assert hours.days[6] == ()


def test_day_lists_and_ranges_mix() -> None:
    hours = WeeklyHours.parse("mon-tue,thu,sat,sun 09:00-10:00")
    assert [bool(windows) for windows in hours.days] == [True, True, False, True, False, True, True]


def test_case_and_spacing_do_not_matter() -> None:
    assert WeeklyHours.parse(
        "  MON - Fri  8:00 - 18:00 ;SAT ,Sun\t10:00-12:00 ;"
    ) == WeeklyHours.parse("mon-fri 08:00-18:00; sat-sun 10:00-12:00")


def test_full_day_names_are_understood() -> None:
    assert WeeklyHours.parse("Monday-Friday 08:00-18:00") == WeeklyHours.parse(
        "mon-fri 08:00-18:00"
    )


def test_a_window_may_end_at_24_00() -> None:
    assert WeeklyHours.parse("sun 00:00-24:00").days[6] == (Window(0, MINUTES_PER_DAY),)


def test_touching_windows_are_merged() -> None:
    assert WeeklyHours.parse("mon 08:00-12:00,12:00-14:00") == WeeklyHours.parse("mon 08:00-14:00")


def test_a_day_named_in_two_groups_gets_the_windows_of_both() -> None:
    hours = WeeklyHours.parse("mon-fri 08:00-12:00; mon 14:00-18:00")
    assert hours.days[0] == (_window("08:00", "12:00"), _window("14:00", "18:00"))
    assert hours.days[1] == (_window("08:00", "12:00"),)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("mon-fri 08:00-18:00", "mon-fri 08:00-18:00"),
        ("sun 00:00-24:00", "sun 00:00-24:00"),
        ("SAT,SUN 8:00-9:30", "sat-sun 08:00-09:30"),
        ("fri,mon,wed 10:00-11:00", "mon,wed,fri 10:00-11:00"),
        ("mon-fri 14:00-18:00,08:00-12:00", "mon-fri 08:00-12:00,14:00-18:00"),
        ("sat 10:00-14:00; mon-fri 08:00-18:00", "mon-fri 08:00-18:00; sat 10:00-14:00"),
        (
            "mon-fri 08:00-12:00; mon 14:00-18:00",
            "mon 08:00-12:00,14:00-18:00; tue-fri 08:00-12:00",
        ),
        ("mon 09:00-10:00; wed 09:00-10:00", "mon,wed 09:00-10:00"),
    ],
)
def test_str_is_the_canonical_text(text: str, canonical: str) -> None:
    assert str(WeeklyHours.parse(text)) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "mon-fri 08:00-18:00",
        "mon-fri 08:00-12:00,14:00-18:00; sat 10:00-14:00",
        "sun 00:00-24:00",
        "mon-sun 00:00-24:00",
        "tue 00:00-00:01,23:59-24:00",
        "mon 20:00-24:00; tue 00:00-02:00; thu,sat 06:15-07:45,19:00-21:30",
        "Monday 8:00-9:00 ; friday-sunday 10:00 - 11:00",
    ],
)
def test_canonical_text_parses_back_to_an_equal_value(text: str) -> None:
    hours = WeeklyHours.parse(text)
    assert WeeklyHours.parse(str(hours)) == hours
    assert str(WeeklyHours.parse(str(hours))) == str(hours)


def test_overnight_window_is_refused_with_how_to_split_it() -> None:
    assert _parse_error("mon-fri 18:00-08:00") == (
        'weekly hours "mon-fri 18:00-08:00": a window must end after it starts (overnight: split '
        'it, e.g. "mon-fri 18:00-24:00; tue-sat 00:00-08:00")'
    )
    WeeklyHours.parse("mon-fri 18:00-24:00; tue-sat 00:00-08:00")  # the advice works


def test_overnight_advice_wraps_from_sunday_to_monday() -> None:
    message = _parse_error("sat-sun 22:00-06:00")
    advice = message.split('e.g. "')[1].rstrip('")')
    assert advice == "sat-sun 22:00-24:00; mon,sun 00:00-06:00"
    assert WeeklyHours.parse(advice).days[0] == (_window("00:00", "06:00"),)


@pytest.mark.parametrize(
    ("text", "explanation"),
    [
        ("", 'give days and times, e.g. "mon-fri 08:00-18:00"'),
        (" ; ", 'give days and times, e.g. "mon-fri 08:00-18:00"'),
        ("mon-fri", '"mon-fri" has no time window'),
        ("08:00-18:00", '"08:00-18:00" names no day'),
        ("xyz 08:00-09:00", 'unknown day "xyz" (days are mon, tue, wed, thu, fri, sat, sun)'),
        ("mon,,tue 08:00-09:00", "a day is missing"),
        ("mon- 08:00-09:00", "a day is missing"),
        ("mon-wed-fri 08:00-09:00", '"mon-wed-fri" is not a day range'),
        ("fri-mon 08:00-09:00", 'day range "fri-mon" runs backwards (weeks start on mon: '),
        ("mon 08:00-18:00 tue 09:00-10:00", 'separate day groups with ";"'),
        ("mon 8am-5pm", 'after "mon" come times (HH:MM-HH:MM), not "8am-5pm"'),
        ("mon 0800-1800", '"0800" is not a time (write HH:MM, from 00:00 to 24:00)'),
        ("mon 08:00", '"08:00" is not a window (write HH:MM-HH:MM'),
        ("mon 08:00-09:00-10:00", '"08:00-09:00-10:00" is not a window'),
        ("mon 08:00-25:00", '"25:00" is not a time'),
        ("mon 08:60-09:00", '"08:60" is not a time'),
        ("mon 08:00-24:30", '"24:30" is not a time'),
        ("mon 24:00-24:00", '"24:00-24:00": 24:00 can only end a window'),
        ("mon 18:00-00:00", "a window that ends at midnight ends at 24:00 (write 18:00-24:00)"),
        ("mon 09:00-09:00", '"09:00-09:00": a window must end after it starts'),
        ("mon 08:00-12:00,11:00-13:00", "on mon, 08:00-12:00 overlaps 11:00-13:00"),
        ("mon-fri 08:00-12:00; wed 09:00-10:00", "on wed, 08:00-12:00 overlaps 09:00-10:00"),
    ],
)
def test_bad_weekly_hours_are_refused_with_a_clear_message(text: str, explanation: str) -> None:
    message = _parse_error(text)
    assert message.startswith(f'weekly hours "{" ".join(text.split())}": ')
    assert explanation in message


def test_parse_error_quotes_multi_line_text_on_one_line() -> None:
    assert _parse_error("mon\n25:00-26:00").startswith('weekly hours "mon 25:00-26:00": ')


def test_weekly_hours_built_directly_are_checked() -> None:
    with pytest.raises(ValueError, match="7 days"):
        WeeklyHours(((OFFICE,),))
    with pytest.raises(ValueError, match="out of order or touch"):
        WeeklyHours(((_window("10:00", "11:00"), _window("08:00", "09:00")),) + ((),) * 6)
    with pytest.raises(ValueError, match="out of order or touch"):
        WeeklyHours(((_window("08:00", "09:00"), _window("09:00", "10:00")),) + ((),) * 6)


@pytest.mark.parametrize(
    ("start", "end"), [(60, 60), (120, 60), (-1, 60), (0, MINUTES_PER_DAY + 1)]
)
def test_a_window_outside_the_day_or_backwards_is_refused(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="a window needs"):
        Window(start, end)


# --- contains, window_end, next_start ----------------------------------------------------------


def test_a_window_includes_its_start_and_excludes_its_end() -> None:
    hours = WeeklyHours.parse("mon-fri 08:00-18:00")
    assert not hours.contains(wall("2026-11-23 07:59:59.999999"))
    assert hours.contains(wall("2026-11-23 08:00"))
    assert hours.contains(wall("2026-11-23 17:59:59.999999"))
    assert not hours.contains(wall("2026-11-23 18:00"))


def test_days_outside_the_range_are_closed() -> None:
    hours = WeeklyHours.parse("mon-fri 08:00-18:00")
    assert hours.contains(wall("2026-11-27 12:00"))  # Friday
    assert not hours.contains(wall("2026-11-28 12:00"))  # Saturday
    assert not hours.contains(wall("2026-11-29 12:00"))  # Sunday


def test_an_aware_datetime_is_read_on_its_own_wall_clock() -> None:
    hours = WeeklyHours.parse("mon 08:00-09:00")
    instant = dt.datetime(2026, 11, 23, 7, 30, tzinfo=dt.UTC)  # 08:30 in Paris
    assert hours.contains(instant.astimezone(PARIS))
    assert not hours.contains(instant)


def test_a_window_to_24_00_covers_the_last_second_of_the_day() -> None:
    hours = WeeklyHours.parse("sun 00:00-24:00")
    assert hours.contains(wall("2026-11-29 00:00"))
    assert hours.contains(wall("2026-11-29 23:59:59.999999"))
    assert not hours.contains(wall("2026-11-30 00:00"))  # Monday


def test_window_end_is_the_end_of_the_window_holding_the_time() -> None:
    hours = WeeklyHours.parse("mon 08:00-12:00,14:00-18:00")
    assert hours.window_end(wall("2026-11-23 08:00")) == wall("2026-11-23 12:00")
    assert hours.window_end(wall("2026-11-23 15:30")) == wall("2026-11-23 18:00")
    assert hours.window_end(wall("2026-11-23 12:00")) is None
    assert hours.window_end(wall("2026-11-24 09:00")) is None


def test_window_end_keeps_the_time_zone_of_its_argument() -> None:
    hours = WeeklyHours.parse("mon 08:00-12:00")
    end = hours.window_end(wall("2026-11-23 09:00").replace(tzinfo=PARIS))
    assert end == wall("2026-11-23 12:00").replace(tzinfo=PARIS)
    assert end is not None
    assert end.tzinfo is PARIS


def test_a_window_to_24_00_ends_at_the_next_midnight() -> None:
    hours = WeeklyHours.parse("sat 20:00-24:00")
    assert hours.window_end(wall("2026-11-28 23:00")) == wall("2026-11-29 00:00")


def test_a_window_to_24_00_runs_on_into_one_from_00_00() -> None:
    hours = WeeklyHours.parse("mon 20:00-24:00; tue 00:00-02:00")
    assert hours.window_end(wall("2026-11-23 21:00")) == wall("2026-11-24 02:00")
    assert hours.window_end(wall("2026-11-24 01:00")) == wall("2026-11-24 02:00")


def test_sunday_to_24_00_runs_on_into_monday() -> None:
    hours = WeeklyHours.parse("mon 00:00-06:00; sun 20:00-24:00")
    assert hours.window_end(wall("2026-11-29 21:00")) == wall("2026-11-30 06:00")


def test_hours_open_all_week_end_a_week_after_tonights_midnight() -> None:
    hours = WeeklyHours.parse("mon-sun 00:00-24:00")
    assert hours.window_end(wall("2026-11-25 12:00")) == wall("2026-12-03 00:00")


def test_next_start_finds_the_next_opening() -> None:
    hours = WeeklyHours.parse("mon 08:00-12:00,14:00-18:00; thu 09:00-10:00")
    assert hours.next_start(wall("2026-11-23 07:00")) == wall("2026-11-23 08:00")
    assert hours.next_start(wall("2026-11-23 08:00")) == wall("2026-11-23 14:00")
    assert hours.next_start(wall("2026-11-23 19:00")) == wall("2026-11-26 09:00")
    assert hours.next_start(wall("2026-11-27 09:00")) == wall("2026-11-30 08:00")


def test_next_start_of_one_window_a_week_is_a_week_later() -> None:
    hours = WeeklyHours.parse("mon 08:00-09:00")
    assert hours.next_start(wall("2026-11-23 08:30")) == wall("2026-11-30 08:00")


def test_hours_without_windows_never_open() -> None:
    hours = WeeklyHours(((),) * 7)
    assert not hours.contains(wall("2026-11-23 08:30"))
    assert hours.next_start(wall("2026-11-23 08:30")) is None
    assert str(hours) == ""


# --- check_pass --------------------------------------------------------------------------------


def test_pass_without_hours_allows_access_until_it_ends() -> None:
    p = _pass()
    assert check_pass(p, NOW, PARIS) == p.valid_until


def test_pass_allows_access_from_valid_from_exactly() -> None:
    p = _pass(valid_from=NOW)
    assert check_pass(p, NOW, PARIS) == p.valid_until


def test_pass_has_expired_at_valid_until_exactly() -> None:
    assert check_pass(_pass(valid_until=NOW + 1), NOW, PARIS) == NOW + 1
    assert _refusal(_pass(valid_until=NOW)).reason is Reason.EXPIRED


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"revoked_at": NOW - 60}, Reason.PASS_REVOKED),
        ({"valid_from": NOW + 1}, Reason.NOT_YET_VALID),
        ({"valid_until": NOW - 1}, Reason.EXPIRED),
        ({"max_uses": 3, "uses": 3}, Reason.USES_EXHAUSTED),
        ({"max_uses": 3, "uses": 4}, Reason.USES_EXHAUSTED),
        ({"max_uses": 0, "uses": 0}, Reason.USES_EXHAUSTED),
        ({"weekly_hours": "sat-sun 08:00-18:00"}, Reason.OUTSIDE_HOURS),
        ({"weekly_hours": "mon 10:01-18:00"}, Reason.OUTSIDE_HOURS),
        ({"weekly_hours": "mon 08:00-10:00"}, Reason.OUTSIDE_HOURS),
    ],
)
def test_each_refusal_has_its_reason(changes: dict[str, object], reason: Reason) -> None:
    refusal = _refusal(_pass(**changes))
    assert refusal.reason is reason
    assert (refusal.who, refusal.pass_id) == ("bob", 7)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"revoked_at": NOW - 60, "valid_until": NOW - 1, "max_uses": 1, "uses": 1},
            Reason.PASS_REVOKED,
        ),
        ({"valid_from": NOW + 1, "max_uses": 1, "uses": 1}, Reason.NOT_YET_VALID),
        ({"valid_until": NOW, "max_uses": 1, "uses": 1}, Reason.EXPIRED),
        ({"max_uses": 1, "uses": 1, "weekly_hours": "sun 08:00-09:00"}, Reason.USES_EXHAUSTED),
    ],
)
def test_checks_are_made_in_the_documented_order(
    changes: dict[str, object], reason: Reason
) -> None:
    assert _refusal(_pass(**changes)).reason is reason


def test_the_last_use_is_allowed() -> None:
    assert check_pass(_pass(max_uses=3, uses=2), NOW, PARIS) == _pass().valid_until


def test_a_pass_without_a_use_count_is_never_used_up() -> None:
    assert check_pass(_pass(max_uses=None, uses=10_000), NOW, PARIS) == _pass().valid_until


def test_access_lasts_until_the_end_of_the_weekly_window() -> None:
    p = _pass(weekly_hours="mon-fri 08:00-12:00,14:00-18:00")
    assert check_pass(p, NOW, PARIS) == paris("2026-11-23 12:00")
    assert check_pass(p, paris("2026-11-23 14:00"), PARIS) == paris("2026-11-23 18:00")


def test_access_lasts_until_the_pass_ends_if_that_comes_first() -> None:
    p = _pass(weekly_hours="mon-fri 08:00-18:00", valid_until=paris("2026-11-23 11:00"))
    assert check_pass(p, NOW, PARIS) == paris("2026-11-23 11:00")


def test_access_runs_on_past_midnight_into_the_next_days_window() -> None:
    p = _pass(weekly_hours="mon 20:00-24:00; tue 00:00-02:00")
    assert check_pass(p, paris("2026-11-23 23:00"), PARIS) == paris("2026-11-24 02:00")


def test_weekly_hours_are_read_in_the_given_time_zone() -> None:
    p = _pass(weekly_hours="mon 10:00-11:00")
    assert check_pass(p, NOW, PARIS) == paris("2026-11-23 11:00")
    with pytest.raises(Rejected) as caught:
        check_pass(p, NOW, ZoneInfo("America/New_York"))  # 04:00 there
    assert caught.value.reason is Reason.OUTSIDE_HOURS


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"revoked_at": paris("2026-11-20 12:00")}, "pass 7 was revoked at 2026-11-20 12:00 "),
        ({"valid_from": paris("2026-11-23 10:30")}, "pass 7 starts at 2026-11-23 10:30 "),
        ({"valid_until": paris("2026-11-23 09:45")}, "pass 7 ended at 2026-11-23 09:45 "),
        ({"max_uses": 5, "uses": 5}, "pass 7 has been used 5 of 5 times"),
    ],
)
def test_refusals_tell_the_guest_what_and_when(changes: dict[str, object], detail: str) -> None:
    assert _refusal(_pass(**changes)).detail.startswith(detail)


def test_not_yet_valid_names_the_start_in_the_sites_time_zone() -> None:
    p = _pass(valid_from=paris("2026-11-24 08:00"))
    assert _refusal(p).detail == "pass 7 starts at 2026-11-24 08:00 Europe/Paris"


def test_times_off_the_minute_are_shown_with_seconds() -> None:
    p = _pass(valid_from=paris("2026-11-24 08:00") + 7)
    assert _refusal(p).detail == "pass 7 starts at 2026-11-24 08:00:07 Europe/Paris"


def test_outside_hours_refusal_names_the_hours_and_the_next_opening() -> None:
    p = _pass(weekly_hours="tue-fri 08:00-18:00")
    assert _refusal(p).detail == (
        "pass 7 is for tue-fri 08:00-18:00 (Europe/Paris), not mon 10:00; "
        "next opening 2026-11-24 08:00"
    )


def test_outside_hours_refusal_says_when_the_pass_ends_before_they_open_again() -> None:
    p = _pass(weekly_hours="tue-fri 08:00-18:00", valid_until=paris("2026-11-24 08:00"))
    assert _refusal(p).detail == (
        "pass 7 is for tue-fri 08:00-18:00 (Europe/Paris), not mon 10:00; "
        "it ends at 2026-11-24 08:00 Europe/Paris, before they open again"
    )


def test_unreadable_weekly_hours_in_a_record_are_a_local_error() -> None:
    with pytest.raises(ValueError, match="weekly hours"):
        check_pass(_pass(weekly_hours="mon 18:00-08:00"), NOW, PARIS)


# --- daylight saving time (Europe/Paris) -------------------------------------------------------


def test_weekly_hours_follow_the_wall_clock_across_the_spring_change() -> None:
    p = _pass(
        weekly_hours="mon-fri 08:00-18:00",
        valid_from=paris("2026-03-01 00:00"),
        valid_until=paris("2026-04-30 00:00"),
    )
    # Friday before the change: 08:00 CET is 07:00 UTC
    assert check_pass(p, utc("2026-03-27 07:00"), PARIS) == utc("2026-03-27 17:00")
    assert _refusal(p, utc("2026-03-27 06:59:59")).reason is Reason.OUTSIDE_HOURS
    # Monday after it: 08:00 CEST is 06:00 UTC
    assert check_pass(p, utc("2026-03-30 06:00"), PARIS) == utc("2026-03-30 16:00")
    assert _refusal(p, utc("2026-03-30 05:59:59")).reason is Reason.OUTSIDE_HOURS
    assert _refusal(p, utc("2026-03-30 16:00")).reason is Reason.OUTSIDE_HOURS


def test_weekly_hours_follow_the_wall_clock_across_the_autumn_change() -> None:
    p = _pass(
        weekly_hours="mon-fri 08:00-18:00",
        valid_from=paris("2026-10-01 00:00"),
        valid_until=paris("2026-11-30 00:00"),
    )
    assert check_pass(p, utc("2026-10-23 06:00"), PARIS) == utc("2026-10-23 16:00")  # CEST
    assert check_pass(p, utc("2026-10-26 07:00"), PARIS) == utc("2026-10-26 17:00")  # CET
    assert _refusal(p, utc("2026-10-26 06:59:59")).reason is Reason.OUTSIDE_HOURS


def _dst_pass(weekly_hours: str) -> PassRecord:
    return _pass(
        weekly_hours=weekly_hours,
        valid_from=paris("2026-03-01 00:00"),
        valid_until=paris("2026-11-30 00:00"),
    )


def test_all_day_access_on_the_23_hour_day_ends_at_the_next_midnight() -> None:
    p = _dst_pass("sun 00:00-24:00")
    # Monday 00:00 CEST is 22:00 UTC on Sunday
    assert check_pass(p, utc("2026-03-28 23:00"), PARIS) == utc("2026-03-29 22:00")
    assert check_pass(p, utc("2026-03-29 12:00"), PARIS) == utc("2026-03-29 22:00")


def test_all_day_access_on_the_25_hour_day_ends_at_the_next_midnight() -> None:
    p = _dst_pass("sun 00:00-24:00")
    # Sunday 00:00 CEST is 22:00 UTC on Saturday; Monday 00:00 CET is 23:00 UTC on Sunday
    assert check_pass(p, utc("2026-10-24 22:00"), PARIS) == utc("2026-10-25 23:00")
    assert _refusal(p, utc("2026-10-24 21:59:59")).reason is Reason.OUTSIDE_HOURS


def test_a_window_ending_in_the_skipped_hour_ends_when_the_clock_jumps_over_it() -> None:
    p = _dst_pass("sun 00:00-02:30")
    # 01:30 CET; the clock jumps from 02:00 CET to 03:00 CEST at 01:00 UTC
    assert check_pass(p, utc("2026-03-29 00:30"), PARIS) == utc("2026-03-29 01:00")
    assert _refusal(p, utc("2026-03-29 01:00")).reason is Reason.OUTSIDE_HOURS


def test_a_window_starting_in_the_skipped_hour_opens_when_the_clock_jumps_into_it() -> None:
    p = _dst_pass("sun 02:30-04:00")
    assert _refusal(p, utc("2026-03-29 00:59:59")).reason is Reason.OUTSIDE_HOURS  # 01:59:59 CET
    assert check_pass(p, utc("2026-03-29 01:00"), PARIS) == utc("2026-03-29 02:00")  # 04:00 CEST


def test_a_window_ending_in_the_repeated_hour_ends_at_its_next_occurrence() -> None:
    p = _dst_pass("sun 00:00-02:30")
    # 01:00 CEST: the window ends at the first 02:30, in CEST
    assert check_pass(p, utc("2026-10-24 23:00"), PARIS) == utc("2026-10-25 00:30")
    # 02:40 CEST: outside, until the clock goes back to 02:00 (CET)
    assert _refusal(p, utc("2026-10-25 00:40")).reason is Reason.OUTSIDE_HOURS
    # 02:10 CET: inside again, until the second 02:30
    assert check_pass(p, utc("2026-10-25 01:10"), PARIS) == utc("2026-10-25 01:30")


# --- choose_pass -------------------------------------------------------------------------------


def test_choose_pass_takes_the_first_pass_that_allows_access() -> None:
    first = _pass(pass_id=1, valid_until=paris("2026-11-24 00:00"))
    second = _pass(pass_id=2)
    assert choose_pass([first, second], NOW, PARIS) == (first, paris("2026-11-24 00:00"))


def test_choose_pass_skips_passes_that_refuse() -> None:
    used_up = _pass(pass_id=1, max_uses=1, uses=1)
    good = _pass(pass_id=2, weekly_hours="mon 09:00-11:00")
    assert choose_pass(iter([used_up, good]), NOW, PARIS) == (good, paris("2026-11-23 11:00"))


@pytest.mark.parametrize("passes", [[], iter(())], ids=["list", "iterator"])
def test_no_pass_at_all_is_refused_as_no_pass(passes: list[PassRecord]) -> None:
    with pytest.raises(Rejected) as caught:
        choose_pass(passes, NOW, PARIS)
    assert caught.value.reason is Reason.NO_PASS


_REFUSED_FOR = {
    Reason.OUTSIDE_HOURS: {"weekly_hours": "sun 08:00-09:00"},
    Reason.NOT_YET_VALID: {"valid_from": NOW + 3600},
    Reason.USES_EXHAUSTED: {"max_uses": 2, "uses": 2},
    Reason.EXPIRED: {"valid_until": NOW - 3600},
    Reason.PASS_REVOKED: {"revoked_at": NOW - 3600},
}


@pytest.mark.parametrize(
    ("stronger", "weaker"),
    list(itertools.combinations(REFUSAL_PREFERENCE, 2)),
    ids=str,
)
def test_choose_pass_raises_the_most_relevant_refusal(stronger: Reason, weaker: Reason) -> None:
    for order in ([stronger, weaker], [weaker, stronger]):
        passes = [_pass(pass_id=n, **_REFUSED_FOR[reason]) for n, reason in enumerate(order)]
        with pytest.raises(Rejected) as caught:
            choose_pass(passes, NOW, PARIS)
        assert caught.value.reason is stronger, order


def test_preference_is_outside_hours_first_and_revoked_last() -> None:
    assert REFUSAL_PREFERENCE == (
        Reason.OUTSIDE_HOURS,
        Reason.NOT_YET_VALID,
        Reason.USES_EXHAUSTED,
        Reason.EXPIRED,
        Reason.PASS_REVOKED,
    )


def test_among_equal_refusals_the_first_pass_is_the_one_raised() -> None:
    passes = [_pass(pass_id=n, valid_until=NOW - n) for n in (3, 1, 2)]
    with pytest.raises(Rejected) as caught:
        choose_pass(passes, NOW, PARIS)
    assert caught.value.pass_id == 3
