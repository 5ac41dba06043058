"""Guest passes: when a pass lets its guest in (README, "Roles": guests enter through passes).

A pass (:class:`~smartlock.core.records.PassRecord`) allows access at ``now`` unless,
checked in this order:

1. it was revoked (``pass_revoked``);
2. ``now < valid_from`` (``not_yet_valid``);
3. ``now >= valid_until`` (``expired``): the validity is the half-open interval
   ``[valid_from, valid_until)``;
4. it has a use count and ``uses >= max_uses`` (``uses_exhausted``);
5. it has weekly hours and ``now`` falls outside them (``outside_hours``).

Time zones: ``valid_from``, ``valid_until`` and ``revoked_at`` are absolute instants (Unix
seconds) and mean the same everywhere.  Weekly hours are wall-clock times in the *site's* time
zone (``Site.timezone``): "mon-fri 08:00-18:00" opens at 08:00 on the lock's own clock in winter
and in summer alike.  Across a daylight-saving change a window follows the wall clock: an end that
falls in the hour skipped in spring ends when the clock jumps over it, and an end in the hour
repeated in autumn ends at its first occurrence after ``now``.

Weekly hours, as text (``WeeklyHours.parse``): day groups separated by ``;``, each a day spec and
comma-separated windows, e.g. ``"mon-fri 08:00-12:00,14:00-18:00; sat 10:00-14:00"``.  Days are
``mon`` .. ``sun`` (full names work too), as ranges ``mon-fri`` (running forward, Monday first)
and lists ``sat,sun``.  Times are ``HH:MM`` on a 24-hour clock; a window ends after it starts and
may end at ``24:00``; the windows of one day may not overlap (touching windows are merged).
Case and spacing do not matter.  ``str()`` gives the canonical text, which the store keeps.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from smartlock.core.errors import Reason, Rejected

if TYPE_CHECKING:  # annotations only
    from smartlock.core.records import PassRecord

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MINUTES_PER_DAY = 24 * 60
EXAMPLE = '"mon-fri 08:00-18:00"'
# When no pass allows access, the refusal shown is the one closest to "you may enter": the
# guest is at the right door at the wrong hour, rather than holding a pass that is used up.
REFUSAL_PREFERENCE = (
    Reason.OUTSIDE_HOURS,
    Reason.NOT_YET_VALID,
    Reason.USES_EXHAUSTED,
    Reason.EXPIRED,
    Reason.PASS_REVOKED,
)

_DAY_NUMBERS = {name: n for names in (DAYS, FULL_DAY_NAMES) for n, name in enumerate(names)}
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_Complaint = Callable[[str], ValueError]  # a problem -> the ValueError that quotes the whole text


@dataclass(frozen=True, order=True)
class Window:
    """One daily opening ``[start_min, end_min)``, in minutes after local midnight."""

    start_min: int
    end_min: int

    def __post_init__(self) -> None:
        if not 0 <= self.start_min < self.end_min <= MINUTES_PER_DAY:
            raise ValueError(f"a window needs 0 <= start < end <= 24:00, not {self}")

    def __str__(self) -> str:
        return f"{_hhmm(self.start_min)}-{_hhmm(self.end_min)}"


@dataclass(frozen=True)
class WeeklyHours:
    """The windows of each day of the week, Monday first: sorted, apart, never touching."""

    days: tuple[tuple[Window, ...], ...]

    def __post_init__(self) -> None:
        if len(self.days) != len(DAYS):
            raise ValueError("weekly hours need the windows of 7 days, Monday first")
        for windows in self.days:
            for before, after in itertools.pairwise(windows):
                if after.start_min <= before.end_min:
                    raise ValueError(f"windows {before} and {after} are out of order or touch")

    @classmethod
    def parse(cls, text: str) -> WeeklyHours:
        """Read weekly hours written as the module docstring says; ``ValueError`` if not."""
        shown = " ".join(text.split())

        def bad(problem: str) -> ValueError:
            return ValueError(f'weekly hours "{shown}": {problem}')

        per_day: list[list[Window]] = [[] for _ in DAYS]
        groups = [group.strip() for group in shown.split(";")]
        if not any(groups):
            raise bad(f"give days and times, e.g. {EXAMPLE}")
        for group in filter(None, groups):
            first_digit = next((i for i, char in enumerate(group) if char in "0123456789"), None)
            if first_digit is None:
                raise bad(f'"{group}" has no time window (e.g. {EXAMPLE})')
            day_text, times_text = group[:first_digit].strip(), group[first_digit:].strip()
            if not day_text:
                raise bad(f'"{group}" names no day (e.g. {EXAMPLE})')
            if any(char.isalpha() for char in times_text):
                raise bad(
                    f'after "{day_text}" come times (HH:MM-HH:MM), not "{times_text}"; '
                    'separate day groups with ";"'
                )
            days = _parse_days(day_text, bad)
            for window_text in times_text.split(","):
                window = _parse_window(window_text.strip(), days, bad)
                for day in days:
                    per_day[day].append(window)
        return cls(tuple(_merge(DAYS[day], windows, bad) for day, windows in enumerate(per_day)))

    def __str__(self) -> str:
        """The canonical text: days with equal windows grouped, in week order from Monday."""
        groups: dict[tuple[Window, ...], list[int]] = {}
        for day, windows in enumerate(self.days):
            if windows:
                groups.setdefault(windows, []).append(day)
        return "; ".join(
            f"{_format_days(days)} {','.join(str(w) for w in windows)}"
            for windows, days in groups.items()
        )

    def contains(self, local: dt.datetime) -> bool:
        """Whether the wall-clock time ``local`` (naive or aware) is inside a window."""
        return self._window_at(local) is not None

    def window_end(self, local: dt.datetime) -> dt.datetime | None:
        """The wall-clock end of the window holding ``local`` (same tzinfo), None when outside.

        A window ending at 24:00 continues into a window starting at 00:00 the next day, so
        "mon-sun 00:00-24:00" does not end at every midnight; the search stops a week ahead,
        so hours open all week long end 7 days after tonight's midnight.  The result is a wall
        time: turning it into an instant around a daylight-saving change is
        :func:`check_pass`'s job.
        """
        window = self._window_at(local)
        if window is None:
            return None
        day, days_ahead, end_min = local.weekday(), 0, window.end_min
        while end_min == MINUTES_PER_DAY and days_ahead < len(DAYS):
            following = self.days[(day + days_ahead + 1) % len(DAYS)]
            if not following or following[0].start_min != 0:
                break
            days_ahead, end_min = days_ahead + 1, following[0].end_min
        return _midnight(local) + dt.timedelta(days=days_ahead, minutes=end_min)

    def next_start(self, local: dt.datetime) -> dt.datetime | None:
        """The wall-clock start of the next window to open after ``local``; None if none will."""
        day, seconds = local.weekday(), _seconds_into_day(local)
        for days_ahead in range(len(DAYS) + 1):
            for window in self.days[(day + days_ahead) % len(DAYS)]:
                if days_ahead or window.start_min * 60 > seconds:
                    return _midnight(local) + dt.timedelta(
                        days=days_ahead, minutes=window.start_min
                    )
        return None

    def _window_at(self, local: dt.datetime) -> Window | None:
        seconds = _seconds_into_day(local)  # whole seconds: the bounds are whole minutes
        for window in self.days[local.weekday()]:
            if window.start_min * 60 <= seconds < window.end_min * 60:
                return window
        return None


def check_pass(p: PassRecord, now: int, tz: ZoneInfo) -> int:
    """Raise :class:`Rejected` unless ``p`` allows access at ``now``; else return ``access_until``.

    ``access_until`` is the Unix second until which the pass allows access without a break from
    ``now`` on: ``valid_until``, or the end of the current weekly window if that comes first.
    Weekly hours are read in ``tz``, the site's time zone.  A ``weekly_hours`` text that does not
    parse is a local error (the store writes canonical text only): ``ValueError``.
    """
    name = f"pass {p.pass_id}"

    def refuse(reason: Reason, detail: str) -> Rejected:
        return Rejected(reason, detail, who=p.guest, pass_id=p.pass_id)

    if p.revoked_at is not None:
        raise refuse(
            Reason.PASS_REVOKED, f"{name} was revoked at {_instant_text(p.revoked_at, tz)}"
        )
    if now < p.valid_from:
        raise refuse(Reason.NOT_YET_VALID, f"{name} starts at {_instant_text(p.valid_from, tz)}")
    if now >= p.valid_until:
        raise refuse(Reason.EXPIRED, f"{name} ended at {_instant_text(p.valid_until, tz)}")
    if p.max_uses is not None and p.uses >= p.max_uses:
        raise refuse(Reason.USES_EXHAUSTED, f"{name} has been used {p.uses} of {p.max_uses} times")
    if p.weekly_hours is None:
        return p.valid_until
    hours = WeeklyHours.parse(p.weekly_hours)
    local = dt.datetime.fromtimestamp(now, tz)
    end = hours.window_end(local)
    if end is None:
        raise refuse(Reason.OUTSIDE_HOURS, _outside_hours_detail(p, hours, local, now, tz))
    return min(p.valid_until, _first_instant_reading(end, now))


def choose_pass(passes: Iterable[PassRecord], now: int, tz: ZoneInfo) -> tuple[PassRecord, int]:
    """The first of ``passes`` that allows access at ``now``, with its ``access_until``.

    When none does, raise the refusal of the most relevant one (``REFUSAL_PREFERENCE``; the first
    pass refused for that reason), or ``no_pass`` when there are no passes at all.  The caller
    gives the passes of one guest for one lock, in the order it prefers them.
    """
    best: Rejected | None = None
    for p in passes:
        try:
            return p, check_pass(p, now, tz)
        except Rejected as refusal:
            if best is None or _rank(refusal) < _rank(best):
                best = refusal
    if best is None:
        raise Rejected(Reason.NO_PASS, "no pass for this lock")
    raise best


# --- parsing -----------------------------------------------------------------------------------


def _parse_days(text: str, bad: _Complaint) -> list[int]:
    days: set[int] = set()
    for item in text.split(","):
        ends = [_day_number(part.strip(), bad) for part in item.split("-")]
        if len(ends) > 2:
            raise bad(f'"{item.strip()}" is not a day range (e.g. "mon-fri")')
        first, last = ends[0], ends[-1]
        if first > last:
            wrapped = _format_days([*range(first, len(DAYS)), *range(last + 1)])
            raise bad(
                f'day range "{item.strip()}" runs backwards (weeks start on mon: "{wrapped}")'
            )
        days.update(range(first, last + 1))
    return sorted(days)


def _day_number(name: str, bad: _Complaint) -> int:
    number = _DAY_NUMBERS.get(name.lower())
    if number is None:
        shown = f'unknown day "{name}"' if name else "a day is missing"
        raise bad(f"{shown} (days are {', '.join(DAYS)})")
    return number


def _parse_window(text: str, days: list[int], bad: _Complaint) -> Window:
    parts = [part.strip() for part in text.split("-")]
    if len(parts) != 2:
        raise bad(f'"{text}" is not a window (write HH:MM-HH:MM, e.g. 08:00-18:00)')
    start, end = (_minutes(part, bad) for part in parts)
    if start == MINUTES_PER_DAY:
        raise bad(f'"{text}": 24:00 can only end a window')
    if end == 0:
        raise bad(
            f'"{text}": a window that ends at midnight ends at 24:00 (write {_hhmm(start)}-24:00)'
        )
    if end == start:
        raise bad(f'"{text}": a window must end after it starts')
    if end < start:
        shown_days = _format_days(days)
        next_days = _format_days([(day + 1) % len(DAYS) for day in days])
        raise bad(
            "a window must end after it starts (overnight: split it, e.g. "
            f'"{shown_days} {_hhmm(start)}-24:00; {next_days} 00:00-{_hhmm(end)}")'
        )
    return Window(start, end)


def _minutes(text: str, bad: _Complaint) -> int:
    match = _TIME.fullmatch(text)
    hours, minutes = (int(match[1]), int(match[2])) if match else (-1, -1)
    if not (0 <= hours <= 23 and 0 <= minutes <= 59) and (hours, minutes) != (24, 0):
        raise bad(f'"{text}" is not a time (write HH:MM, from 00:00 to 24:00)')
    return hours * 60 + minutes


def _merge(day: str, windows: list[Window], bad: _Complaint) -> tuple[Window, ...]:
    merged: list[Window] = []
    for window in sorted(windows):
        if merged and window.start_min < merged[-1].end_min:
            raise bad(f"on {day}, {merged[-1]} overlaps {window}")
        if merged and window.start_min == merged[-1].end_min:
            merged[-1] = Window(merged[-1].start_min, window.end_min)
        else:
            merged.append(window)
    return tuple(merged)


def _format_days(days: Iterable[int]) -> str:
    """Days in week order, runs of two or more written as ranges: "mon-wed,fri"."""
    runs: list[list[int]] = []
    for day in sorted(set(days)):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        DAYS[run[0]] if len(run) == 1 else f"{DAYS[run[0]]}-{DAYS[run[-1]]}" for run in runs
    )


# --- time --------------------------------------------------------------------------------------


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _seconds_into_day(local: dt.datetime) -> int:
    return local.hour * 3600 + local.minute * 60 + local.second


def _midnight(local: dt.datetime) -> dt.datetime:
    return local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)


def _first_instant_reading(wall: dt.datetime, after: int) -> int:
    """The first Unix second after ``after`` at which the clock of ``wall.tzinfo`` reads ``wall``.

    A wall time that occurs twice (autumn) counts at its first occurrence after ``after``; one
    that never occurs (spring) is reached when the clock jumps over it.
    """
    naive = wall.replace(tzinfo=None)
    early, late = sorted(int(wall.replace(fold=fold).timestamp()) for fold in (0, 1))

    def reading(instant: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(instant, wall.tzinfo).replace(tzinfo=None)

    if reading(early) == naive:  # the wall time exists, once (early == late) or twice
        return early if early > after else late
    while late - early > 1:  # skipped: reading(early) < naive <= reading(late), one jump between
        middle = (early + late) // 2
        if reading(middle) >= naive:
            late = middle
        else:
            early = middle
    return late


def _instant_text(instant: int, tz: ZoneInfo) -> str:
    return f"{_wall_text(dt.datetime.fromtimestamp(instant, tz))} {tz}"


def _wall_text(local: dt.datetime) -> str:
    return local.strftime("%Y-%m-%d %H:%M:%S" if local.second else "%Y-%m-%d %H:%M")


def _outside_hours_detail(
    p: PassRecord, hours: WeeklyHours, local: dt.datetime, now: int, tz: ZoneInfo
) -> str:
    detail = f"pass {p.pass_id} is for {hours} ({tz}), not {DAYS[local.weekday()]} {local:%H:%M}"
    start = hours.next_start(local)
    if start is None:
        return detail
    if _first_instant_reading(start, now) >= p.valid_until:
        return f"{detail}; it ends at {_instant_text(p.valid_until, tz)}, before they open again"
    return f"{detail}; next opening {_wall_text(start)}"


def _rank(refusal: Rejected) -> int:
    return REFUSAL_PREFERENCE.index(refusal.reason)
