"""Reading dates, durations and numbers the way people write them.

Dates go through ``dateparser`` (relative expressions, weekdays, many formats) anchored at the user's
"now" in their own time zone. Durations and numbers are a small grammar here: dateparser reads moments,
not lengths of time, and "half an hour" or "an hour and a half" must come out as exactly 30 and 90
minutes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import dateparser

_WORDS = {
    "zero": 0, "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30,
    "forty": 40, "forty-five": 45, "fifty": 50, "sixty": 60, "ninety": 90, "half": 0.5, "quarter": 0.25,
    "a couple of": 2, "couple of": 2, "a few": 3, "few": 3,
}
_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "wk": 604800, "week": 604800, "weeks": 604800,
}
_NUMBER = r"(?:\d+(?:[.,]\d+)?|" + "|".join(sorted((re.escape(w) for w in _WORDS), key=len, reverse=True)) + ")"
_PART = re.compile(rf"(?P<n>{_NUMBER})\s*(?P<u>{'|'.join(sorted(_UNITS, key=len, reverse=True))})\b", re.I)
_ISO = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$", re.I)
_CLOCK = re.compile(r"^(?P<h>\d{1,3}):(?P<m>\d{2})$")
_HOUR_MINUTES = re.compile(r"^(?P<h>\d+)\s*h\s*(?P<m>\d{1,2})$", re.I)
_AND_A_HALF = re.compile(rf"^(?P<n>{_NUMBER})\s+(?P<u>\w+)\s+and\s+a\s+half$", re.I)
_HALF_AN = re.compile(r"^(?:a\s+)?half\s+(?:an?\s+)?(?P<u>\w+)$", re.I)
_QUARTER = re.compile(r"^(?:a\s+)?quarter\s+(?:of\s+)?(?:an?\s+)?(?P<u>\w+)$", re.I)


def parse_number(value: Any) -> float | None:
    """A number from digits ("2.5", "2,5") or a word ("three", "a dozen" is not supported)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if text in _WORDS:
        return float(_WORDS[text])
    try:
        return float(text.replace(",", "."))
    except ValueError:
        return None


def parse_duration(text: str) -> timedelta | None:
    """``timedelta`` for "30 minutes", "half an hour", "1h30", "1:15", "an hour and a half", "PT45M"..."""
    cleaned = " ".join(text.strip().lower().replace("-", " ").split()).removeprefix("for ")
    if not cleaned:
        return None
    if (iso := _ISO.match(cleaned)) and any(iso.groupdict().values()):
        parts = {k: int(v or 0) for k, v in iso.groupdict().items()}
        return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    if clock := _CLOCK.match(cleaned):
        return timedelta(hours=int(clock["h"]), minutes=int(clock["m"]))
    if hm := _HOUR_MINUTES.match(cleaned):
        return timedelta(hours=int(hm["h"]), minutes=int(hm["m"]))
    for pattern, factor in ((_HALF_AN, 0.5), (_QUARTER, 0.25)):
        if (found := pattern.match(cleaned)) and (unit := _unit(found["u"])):
            return timedelta(seconds=unit * factor)
    if (found := _AND_A_HALF.match(cleaned)) and (unit := _unit(found["u"])):
        number = parse_number(found["n"])
        return None if number is None else timedelta(seconds=unit * (number + 0.5))
    total = 0.0
    consumed = 0
    for match in _PART.finditer(cleaned):
        number = parse_number(match["n"])
        unit = _unit(match["u"])
        if number is None or unit is None:
            return None
        total += number * unit
        consumed += len(match.group())
    rest = _PART.sub("", cleaned).replace("and", "").replace(",", "").strip()
    if total <= 0 or rest:
        return None
    return timedelta(seconds=total)


def _unit(word: str) -> int | None:
    return _UNITS.get(word.lower())


def parse_datetime(text: str, *, tz: tzinfo, now: datetime, prefer_future: bool = True) -> datetime | None:
    """An aware ``datetime`` for ``text`` in time zone ``tz``, relative to ``now``; None if unreadable.

    Read in this order: ISO 8601; "in <duration>" and "<duration> from now"; a time of day with an
    optional day word ("tomorrow at 9", "tonight at 8"); a day and a time in either order ("friday at 11",
    "at 11 on friday", "next monday 9:30"); then anything ``dateparser`` reads ("may 20", "next week").
    A clock time with no am/pm on a named day is read in waking hours: 7-11 in the morning, 12 at noon,
    1-6 in the afternoon. Text that is only a length of time ("an hour"), a number with no unit ("in 10")
    or ends in a dangling word ("tomorrow at") is not a moment: it is refused rather than guessed, so that
    a template can give those words to another slot.
    """
    text = " ".join(text.split())
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is not None:
        # the same instant in the user's zone: a stored "+02:00" reads back as CEST, not "UTC+02:00"
        return moment.astimezone(tz) if moment.tzinfo else moment.replace(tzinfo=tz)
    text = _spoken_clock(_LEADING_FOR.sub("", text))
    if _DANGLING.search(text) or _BARE_IN.match(text):
        return None
    relative = _IN.match(text) or _FROM_NOW.match(text)
    if relative is not None:
        span = parse_duration(relative["span"])
        if span is not None:
            return (now.astimezone(UTC) + span).astimezone(tz)  # real time, across DST changes
    local_now = now.astimezone(tz).replace(tzinfo=None)
    clock = _clock_time(text, local_now, prefer_future) or _day_and_time(text, local_now, prefer_future)
    if clock is not None:
        return clock.replace(tzinfo=tz)
    if parse_duration(text) is not None or not _only_date_words(text) or _BARE_NUMBER.match(text):
        # "an hour" is a length of time, dateparser would read it as an hour from now; "a table", "10" and
        # "a tomorrow" are not dates either, though dateparser finds one in each
        return None
    found = _dateparser(text, local_now, prefer_future)
    if found is None:
        return None
    aware = found.replace(tzinfo=tz)
    # "at 9" said at 15:00 means tomorrow's 9:00, not this morning's
    if prefer_future and aware < now and not _names_a_day(text) and found.date() == local_now.date():
        aware += timedelta(days=1)
    return aware


def _dateparser(text: str, local_now: datetime, prefer_future: bool) -> datetime | None:
    settings: dict[str, Any] = {
        "RELATIVE_BASE": local_now,
        "PREFER_DATES_FROM": "future" if prefer_future else "current_period",
        "RETURN_AS_TIMEZONE_AWARE": False,
        "PREFER_DAY_OF_MONTH": "first",
    }
    parsed: datetime | None = dateparser.parse(text, languages=["en"], settings=settings)
    return parsed


_LEADING_FOR = re.compile(r"^for\s+", re.I)  # "set a reminder for 7"
_DANGLING = re.compile(r"(?:^|\s)(?:at|on|in|for|to|from|by|of|and|until|till)$", re.I)
_BARE_IN = re.compile(r"^in\s+\d+(?:[.,]\d+)?$", re.I)  # "in 10": ten what?
_BARE_NUMBER = re.compile(r"^\d{1,4}$")
# dateparser finds a date in almost anything ("a flight to Paris"), so it only sees text made of these
_DATE_VOCABULARY = re.compile(
    r"\d+(?:st|nd|rd|th)?|\d+[:./-]\d+(?:[:./-]\d+)?|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*|"
    r"(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)[a-z]*|today|tonight|tomorrow|yesterday|noon|midday|midnight|"
    r"morning|afternoon|evening|night|weekend|fortnight|(?:second|minute|hour|day|week|month|year)s?|next|last|this|"
    r"coming|ago|now|from|in|on|at|the|of|after|before|am|pm|a\.m\.|p\.m\.|o'clock|half|quarter|past|and|"
    r"first|second|third|fourth|fifth|early|late|end|beginning|start|mid|[,.]",
    re.I)
_LINKING = re.compile(r"the|of|in|on|at|from|and|[,.]", re.I)
_IN = re.compile(r"^in\s+(?P<span>.+)$", re.I)
_FROM_NOW = re.compile(r"^(?P<span>.+?)\s+(?:from now|later)$", re.I)
_PERIOD = r"(?P<ampm>am|pm|a\.m\.|p\.m\.)"
_CLOCK_TIME = re.compile(
    r"^(?:(?P<day>today|tonight|tomorrow|this morning|this afternoon|this evening|tomorrow morning|"
    r"tomorrow afternoon|tomorrow evening|tomorrow night)\s*)?(?P<at>at\s+)?(?P<h>\d{1,2})(?:[:.h](?P<m>\d{2}))?\s*"
    rf"{_PERIOD}?(?:\s*(?P<day2>today|tonight|tomorrow))?$", re.I)
# a time of day that is unmistakably one: "at 11", "9:30", "3pm" (a bare "11" next to a day could be a date)
_TIME = (r"(?:(?P<at>at\s+)(?P<h>\d{1,2})(?:[:.](?P<m>\d{2}))?\s*" + _PERIOD + r"?"
         r"|(?P<h2>\d{1,2})[:.](?P<m2>\d{2})\s*(?P<ampm2>am|pm|a\.m\.|p\.m\.)?"
         r"|(?P<h3>\d{1,2})\s*(?P<ampm3>am|pm|a\.m\.|p\.m\.))")
_DAY_THEN_TIME = re.compile(rf"^(?P<daytext>.+?),?\s+{_TIME}$", re.I)
_TIME_THEN_DAY = re.compile(rf"^{_TIME}\s+(?P<daytext>.+)$", re.I)
_WEEKDAYS = {"monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "wednesday": 2, "wed": 2, "thursday": 3,
             "thu": 3, "thur": 3, "thurs": 3, "friday": 4, "fri": 4, "saturday": 5, "sat": 5, "sunday": 6,
             "sun": 6}
_WEEKDAY = re.compile(rf"^(?:(?P<which>this|next|coming)\s+)?(?P<weekday>{'|'.join(_WEEKDAYS)})$", re.I)
_PART_OF_DAY = re.compile(r"\s+(?P<part>morning|afternoon|evening|night)$", re.I)
_DAY_OFFSET = {"today": 0, "tonight": 0, "tomorrow": 1}


def _clock_time(text: str, now: datetime, prefer_future: bool) -> datetime | None:
    """Times of day that dateparser misreads: "at 9", "9:30pm", "tonight at 8", "tomorrow morning at 7"."""
    match = _CLOCK_TIME.match(text.strip())
    if match is None:
        return None
    hour, minute = int(match["h"]), int(match["m"] or 0)
    if hour > 23 or minute > 59 or not (match["day"] or match["day2"] or match["at"] or match["m"] or match["ampm"]):
        return None  # a bare "10" is not a time of day
    day_words = " ".join(w for w in (match["day"], match["day2"]) if w).lower()
    ampm = (match["ampm"] or "").replace(".", "").lower()
    offset = 1 if "tomorrow" in day_words else 0
    base = (now + timedelta(days=offset)).replace(hour=0, minute=0, second=0, microsecond=0)
    if day_words or ampm or hour > 12:
        part = next((w for w in ("morning", "afternoon", "evening", "night") if w in day_words), "")
        if "tonight" in day_words:
            part = "evening"
        moment = base.replace(hour=_hour_of_day(hour, ampm, part, named_day=bool(day_words)), minute=minute)
        if prefer_future and not day_words and moment < now:
            moment += timedelta(days=1)  # "9am" said in the afternoon: tomorrow's
        return moment
    # "at 9": the next 9 o'clock, morning or evening, that is still ahead
    candidates = [base.replace(hour=h % 24, minute=minute) + timedelta(days=d)
                  for d in (0, 1) for h in (hour % 12, hour % 12 + 12)]
    ahead = [c for c in candidates if c > now] if prefer_future else candidates
    chosen: datetime = min(ahead) if ahead else candidates[0]
    return chosen


def _hour_of_day(hour: int, ampm: str, part: str, *, named_day: bool) -> int:
    """The 24-hour clock hour for "5pm", "5 in the evening", or "5" on a named day (waking hours)."""
    if ampm == "pm" or (not ampm and part in ("afternoon", "evening", "night")):
        return hour + 12 if hour < 12 else hour
    if ampm == "am":
        return 0 if hour == 12 else hour
    if not ampm and not part and named_day and 1 <= hour <= 6:
        return hour + 12  # "tomorrow at 5" is 17:00, not 05:00
    return hour


def _day_and_time(text: str, now: datetime, prefer_future: bool) -> datetime | None:
    """A day and a time of day in either order: "friday at 11", "at 11 on friday", "may 20 3pm"."""
    match = _DAY_THEN_TIME.match(text) or _TIME_THEN_DAY.match(text)
    if match is None:
        return None
    groups = match.groupdict()
    hour = int(groups["h"] or groups["h2"] or groups["h3"])
    minute = int(groups["m"] or groups["m2"] or 0)
    ampm = (groups["ampm"] or groups["ampm2"] or groups["ampm3"] or "").replace(".", "").lower()
    if hour > 23 or minute > 59 or (ampm and not 1 <= hour <= 12):
        return None
    day_text = re.sub(r"^on\s+", "", groups["daytext"].strip(), flags=re.I)
    part = ""
    if found := _PART_OF_DAY.search(day_text):
        part, day_text = found["part"].lower(), day_text[:found.start()]
    day = _day(day_text, now, prefer_future)
    if day is None:
        return None
    moment = day.replace(hour=_hour_of_day(hour, ampm, part, named_day=True), minute=minute, second=0,
                         microsecond=0)
    if prefer_future and moment < now and _WEEKDAY.match(day_text) and day.date() == now.date():
        moment += timedelta(days=7)  # "tuesday at 8" said on Tuesday at 9: next week's
    return moment


def _day(text: str, now: datetime, prefer_future: bool) -> datetime | None:
    """Midnight of the day that ``text`` names ("friday", "next monday", "tomorrow", "may 20")."""
    lowered = text.strip().lower()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if lowered in _DAY_OFFSET:
        return today + timedelta(days=_DAY_OFFSET[lowered])
    if lowered == "day after tomorrow" or lowered == "the day after tomorrow":
        return today + timedelta(days=2)
    if weekday := _WEEKDAY.match(lowered):
        ahead = (_WEEKDAYS[weekday["weekday"]] - today.weekday()) % 7
        if weekday["which"] and ahead == 0:
            ahead = 7  # "next tuesday" said on a Tuesday
        return today + timedelta(days=ahead)
    if _BARE_NUMBER.match(lowered) or parse_duration(lowered) is not None or not _only_date_words(lowered):
        return None  # "11" or "a" next to a time is not a day
    found = _dateparser(text, now, prefer_future)
    return None if found is None else found.replace(hour=0, minute=0, second=0, microsecond=0)


def _names_a_day(text: str) -> bool:
    return bool(re.search(r"\b(today|yesterday|ago|last|\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2})\b", text, re.I))


def _only_date_words(text: str) -> bool:
    """Whether ``text`` is made of date words only, and not only of linking words."""
    words = re.findall(r"[\w'.:/-]+|,", text)
    return (any(not _LINKING.fullmatch(w) for w in words)
            and all(_DATE_VOCABULARY.fullmatch(w) for w in words))


_PAST = re.compile(r"\b(?:a\s+)?(?P<part>quarter|half)\s+past\s+(?P<h>\d{1,2})\b", re.I)
_QUARTER_TO = re.compile(r"\b(?:a\s+)?quarter\s+to\s+(?P<h>\d{1,2})\b", re.I)


def _spoken_clock(text: str) -> str:
    """ "quarter past 5" as "5:15", "half past 5" as "5:30", "quarter to 5" as "4:45"."""
    text = _PAST.sub(lambda m: f"{m['h']}:{'15' if m['part'].lower() == 'quarter' else '30'}", text)
    return _QUARTER_TO.sub(lambda m: f"{(int(m['h']) - 1) % 12 or 12}:45", text)


_NAMES_A_TIME = re.compile(
    r"\d[:.]\d{2}|\d\s*(?:am|pm|a\.m\.|p\.m\.|h\b|o'clock)|\bat\s+\d|\b(?:in|from now|later|ago|noon|midday|"
    r"midnight|morning|afternoon|evening|night|tonight|now|quarter|half|hours?|minutes?|seconds?|hrs?|mins?|secs?)\b",
    re.I)


def names_a_time(text: str) -> bool:
    """Whether ``text`` says a time of day or a span from now, not only a day ("friday", "may 20")."""
    return bool(_NAMES_A_TIME.search(text))
