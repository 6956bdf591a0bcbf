"""Reading dates and durations as people write them (``hearth.sdk.parsing``), and ``DateTime(after=...)``.

"now" is Tuesday 12 May 2026, 09:00 in Oslo (CEST, +02:00) unless a case says otherwise.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hearth.sdk import DateTime, Skill, SlotError, intent
from hearth.sdk.parsing import parse_datetime, parse_duration
from hearth.sdk.slots import parse_slots

OSLO = ZoneInfo("Europe/Oslo")
NOW = datetime(2026, 5, 12, 9, 0, tzinfo=OSLO)


def at(day: int, hour: int, minute: int = 0, month: int = 5) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=OSLO)


@pytest.mark.parametrize(("text", "expected"), [
    ("friday at 11", at(15, 11)),
    ("on friday at 11", at(15, 11)),
    ("at 11 on friday", at(15, 11)),
    ("11am on friday", at(15, 11)),
    ("friday 10:00", at(15, 10)),
    ("friday evening at 7", at(15, 19)),
    ("next monday at 9:30", at(18, 9, 30)),
    ("tuesday at 8pm", at(12, 20)),  # today, still ahead
    ("tuesday at 8am", at(19, 8)),  # today's has passed: next week's
    ("tomorrow at 5", at(13, 17)),  # waking hours on a named day
    ("tomorrow at 9:15", at(13, 9, 15)),
    ("tomorrow morning at 7", at(13, 7)),
    ("tonight at 8", at(12, 20)),
    ("at 5", at(12, 17)),  # the next 5 o'clock still ahead
    ("may 20 at 3pm", at(20, 15)),
    ("in half an hour", at(12, 9, 30)),
    ("in an hour and a half", at(12, 10, 30)),
    ("2 hours from now", at(12, 11)),
    ("for tomorrow at 7", at(13, 7)),
    ("2026-05-20T10:00:00+02:00", at(20, 10)),
    ("2026-05-20 10:00", at(20, 10)),
])
def test_moments(text: str, expected: datetime) -> None:
    assert parse_datetime(text, tz=OSLO, now=NOW) == expected


@pytest.mark.parametrize("text", [
    "in 10",  # ten what?
    "10",
    "tomorrow at",  # a dangling word belongs to something else
    "friday on",
    "an hour",  # a length of time, not a moment
    "30 minutes",
    "a table",
    "a flight to Paris",
    "",
])
def test_not_moments(text: str) -> None:
    assert parse_datetime(text, tz=OSLO, now=NOW) is None


def test_an_iso_moment_with_an_offset_reads_back_in_the_users_zone() -> None:
    moment = parse_datetime("2026-05-20T08:00:00+00:00", tz=OSLO, now=NOW)
    assert moment == at(20, 10) and moment is not None and moment.tzname() == "CEST"


def test_in_a_duration_counts_real_time_across_a_clock_change() -> None:
    before = datetime(2026, 3, 29, 1, 30, tzinfo=OSLO)  # the clocks go from 02:00 to 03:00 that night
    assert parse_datetime("in 2 hours", tz=OSLO, now=before) == datetime(2026, 3, 29, 4, 30, tzinfo=OSLO)


@pytest.mark.parametrize(("text", "minutes"), [
    ("half an hour", 30), ("1h30", 90), ("an hour and a half", 90), ("for 45 minutes", 45), ("PT2H", 120),
    ("9:15", 555),
])
def test_durations(text: str, minutes: int) -> None:
    assert parse_duration(text) == timedelta(minutes=minutes)


class _Agenda(Skill):
    @intent("list", slots={"start": DateTime(), "end": DateTime(after="start")})
    def list(self, params: dict[str, Any]) -> str:
        return "ok"


def test_an_end_is_read_after_its_start() -> None:
    slots = _Agenda.list.__hearth_intent__.slots  # type: ignore[attr-defined]
    parsed, problems = parse_slots(slots, {"end": "wednesday", "start": "monday"}, tz=OSLO, now=NOW)
    assert problems == {} and parsed == {"end": at(20, 0), "start": at(18, 0)}
    parsed, problems = parse_slots(slots, {"start": "tomorrow at 9", "end": "tomorrow at 17"}, tz=OSLO, now=NOW)
    assert parsed == {"start": at(13, 9), "end": at(13, 17)}
    parsed, problems = parse_slots(slots, {"start": "tomorrow at 9", "end": "17:00"}, tz=OSLO, now=NOW)
    assert parsed["end"] == at(13, 17)
    parsed, problems = parse_slots(slots, {"start": "friday at 9", "end": "2026-05-14 10:00"}, tz=OSLO, now=NOW)
    assert "end" not in parsed and "is not after" in problems["end"]
    with pytest.raises(SlotError):
        DateTime().parse("whenever", tz=OSLO, now=NOW)


def test_after_must_name_a_datetime_slot_of_the_intent() -> None:
    with pytest.raises(ValueError, match="after='begin'"):
        class _Broken(Skill):
            @intent("list", slots={"end": DateTime(after="begin")})
            def list(self, params: dict[str, Any]) -> str:
                return "ok"


@pytest.mark.parametrize(("text", "expected"), [
    ("at quarter past 5", at(12, 17, 15)),
    ("tomorrow at half past 7", at(13, 7, 30)),
    ("quarter to 1 tomorrow", at(13, 12, 45)),
])
def test_spoken_clock_times(text: str, expected: datetime) -> None:
    assert parse_datetime(text, tz=OSLO, now=NOW) == expected


def test_day_time_is_taken_when_only_a_day_is_said() -> None:
    reminder = DateTime(day_time=time(9))
    assert reminder.parse("friday", tz=OSLO, now=NOW) == at(15, 9)
    assert reminder.parse("tomorrow", tz=OSLO, now=NOW) == at(13, 9)
    assert reminder.parse("friday at 7pm", tz=OSLO, now=NOW) == at(15, 19)
    assert reminder.parse("in 2 days", tz=OSLO, now=NOW) == at(14, 9)  # two days from now, to the minute
    assert DateTime().parse("friday", tz=OSLO, now=NOW) == at(15, 0)
