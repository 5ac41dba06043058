"""Fuzzes the time option parser of the owner's commands (smartlock.admin.parse_when).

Rule: any text gives a Unix time a message can carry (0 to 2**32 - 1) or raises ``ConfigError``,
nothing else; ``+N`` with ``m``, ``h`` or ``d`` is that long after ``now``, and an ISO time with an
offset is that instant.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from fuzz_support import NOW, when_texts
from hypothesis import example, given
from hypothesis import strategies as st

from smartlock.admin import LATEST_TIME, parse_when
from smartlock.core.errors import ConfigError

ZONES = st.sampled_from(
    [dt.UTC, ZoneInfo("Europe/Paris"), ZoneInfo("Pacific/Kiritimati"), ZoneInfo("America/St_Johns")]
)
UNIT_S = {"m": 60, "h": 3600, "d": 86400}
RELATIVE = re.compile(r"\+([0-9]+)([mhd])")


def parsed_or_refused(text: str, zone: dt.tzinfo) -> int | None:
    try:
        moment = parse_when(text, zone, now=int(NOW))
    except ConfigError:
        return None
    assert type(moment) is int
    assert 0 <= moment <= LATEST_TIME
    return moment


@given(when_texts, ZONES)
# Regressions: str.isdigit() holds for digits int() refuses ('፩', '²'), and int() refuses more
# than 4300 digits: ValueError escaped instead of ConfigError.
@example(text="+፩m", zone=dt.UTC)
@example(text="+²h", zone=dt.UTC)
@example(text="+" + "1" * 5000 + "d", zone=dt.UTC)
def test_any_text_is_a_time_a_message_can_carry_or_a_config_error(
    text: str, zone: dt.tzinfo
) -> None:
    moment = parsed_or_refused(text, zone)
    relative = RELATIVE.fullmatch(text.strip())
    if moment is not None and relative:
        assert moment == int(NOW) + int(relative[1]) * UNIT_S[relative[2]]


@given(st.datetimes(timezones=st.timezones()), ZONES)
def test_an_iso_time_with_an_offset_is_that_instant(moment: dt.datetime, zone: dt.tzinfo) -> None:
    parsed = parsed_or_refused(moment.isoformat(), zone)
    instant = int(dt.datetime.fromisoformat(moment.isoformat()).timestamp())
    if 0 <= instant <= LATEST_TIME:
        assert parsed == instant
    else:
        assert parsed is None
