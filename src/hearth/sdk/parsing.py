"""Reading dates, durations and numbers the way people write them.

Dates go through ``dateparser`` (relative expressions, weekdays, many formats) anchored at the user's
"now" in their own time zone. Durations and numbers are a small grammar here: dateparser reads moments,
not lengths of time, and "half an hour" or "an hour and a half" must come out as exactly 30 and 90
minutes.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo
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
    """An aware ``datetime`` for ``text`` in time zone ``tz``, relative to ``now``; None if unreadable."""
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is not None:
        return moment if moment.tzinfo else moment.replace(tzinfo=tz)
    local_now = now.astimezone(tz).replace(tzinfo=None)
    clock = _clock_time(text, local_now, prefer_future)
    if clock is not None:
        return clock.replace(tzinfo=tz)
    settings: dict[str, Any] = {
        "RELATIVE_BASE": local_now,
        "PREFER_DATES_FROM": "future" if prefer_future else "current_period",
        "RETURN_AS_TIMEZONE_AWARE": False,
        "PREFER_DAY_OF_MONTH": "first",
    }
    parsed = dateparser.parse(text, languages=["en"], settings=settings)
    if parsed is None:
        return None
    found: datetime = parsed.replace(tzinfo=tz)
    # "at 9" said at 15:00 means tomorrow's 9:00, not this morning's
    if prefer_future and found < now and not _names_a_day(text) and found.date() == local_now.date():
        found += timedelta(days=1)
    return found


_CLOCK_TIME = re.compile(
    r"^(?:(?P<day>today|tonight|tomorrow|this morning|this afternoon|this evening|tomorrow morning|"
    r"tomorrow afternoon|tomorrow evening|tomorrow night)\s*)?(?:at\s+)?(?P<h>\d{1,2})(?:[:.h](?P<m>\d{2}))?\s*"
    r"(?P<ampm>am|pm|a\.m\.|p\.m\.)?(?:\s*(?P<day2>today|tonight|tomorrow))?$", re.I)
_DAY_OFFSET = {"today": 0, "tonight": 0, "tomorrow": 1}


def _clock_time(text: str, now: datetime, prefer_future: bool) -> datetime | None:
    """Times of day that dateparser misreads: "at 9", "9:30pm", "tonight at 8", "tomorrow morning at 7"."""
    match = _CLOCK_TIME.match(text.strip())
    if match is None:
        return None
    hour, minute = int(match["h"]), int(match["m"] or 0)
    if hour > 23 or minute > 59:
        return None
    day_words = " ".join(w for w in (match["day"], match["day2"]) if w).lower()
    ampm = (match["ampm"] or "").replace(".", "").lower()
    evening = any(w in day_words for w in ("tonight", "evening", "afternoon", "night"))
    if ampm == "pm" or (not ampm and evening):
        if hour < 12:
            hour += 12
    elif ampm == "am" and hour == 12:
        hour = 0
    offset = 1 if "tomorrow" in day_words else 0
    base = (now + timedelta(days=offset)).replace(hour=0, minute=0, second=0, microsecond=0)
    if day_words or ampm or hour > 12:
        moment = base.replace(hour=hour, minute=minute)
        if prefer_future and not day_words and moment < now:
            moment += timedelta(days=1)  # "9am" said in the afternoon: tomorrow's
        return moment
    # "at 9": the next 9 o'clock, morning or evening, that is still ahead
    candidates = [base.replace(hour=h % 24, minute=minute) + timedelta(days=d)
                  for d in (0, 1) for h in (hour % 12, hour % 12 + 12)]
    ahead = [c for c in candidates if c > now] if prefer_future else candidates
    chosen: datetime = min(ahead) if ahead else candidates[0]
    return chosen


def _names_a_day(text: str) -> bool:
    return bool(re.search(r"\b(today|yesterday|ago|last|\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2})\b", text, re.I))
