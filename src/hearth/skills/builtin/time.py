"""What time and date it is, in the user's time zone, or in another one."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from hearth.sdk import Result, Skill, SkillContext, SkillFailed, Text, intent

_ALIASES = {"utc": "UTC", "gmt": "UTC", "beijing": "Asia/Shanghai", "shanghai": "Asia/Shanghai",
            "london": "Europe/London", "paris": "Europe/Paris", "berlin": "Europe/Berlin", "tokyo": "Asia/Tokyo",
            "new york": "America/New_York", "los angeles": "America/Los_Angeles", "sydney": "Australia/Sydney",
            "singapore": "Asia/Singapore", "hong kong": "Asia/Hong_Kong", "moscow": "Europe/Moscow",
            "delhi": "Asia/Kolkata", "mumbai": "Asia/Kolkata", "sao paulo": "America/Sao_Paulo"}


def find_zone(place: str) -> ZoneInfo:
    """A time zone from an IANA name ("Europe/Oslo"), a city hearth knows, or a city in an IANA name."""
    wanted = place.strip().lower()
    if wanted in _ALIASES:
        return ZoneInfo(_ALIASES[wanted])
    for name in available_timezones():
        if name.lower() == wanted or name.lower().rsplit("/", 1)[-1].replace("_", " ") == wanted:
            return ZoneInfo(name)
    raise SkillFailed(f"I don't know the time zone of {place!r}; try a name like Europe/Oslo.",
                      code="unknown_zone")


class TimeSkill(Skill):
    """Tells the time and date, in your time zone or somewhere else."""

    name = "time"
    version = "1.0.0"

    @intent("now", examples=["what time is it", "what's the time", "what is the time", "tell me the time"])
    def now(self, params: dict[str, Any], context: SkillContext) -> Result:
        """The current time in the user's time zone."""
        moment = context.now
        return Result(text=f"It is {moment:%H:%M} ({moment.tzname()}) on {moment:%A, %d %B %Y}.",
                      data={"now": moment.isoformat(), "timezone": str(context.tz)})

    @intent("today", examples=["what day is it", "what's the date", "what is the date today", "what date is it"])
    def today(self, params: dict[str, Any], context: SkillContext) -> Result:
        """Today's date in the user's time zone."""
        moment = context.now
        return Result(text=f"Today is {moment:%A, %d %B %Y} (week {moment.isocalendar().week}).",
                      data={"date": moment.date().isoformat(), "weekday": f"{moment:%A}"})

    @intent("time_in", slots={"place": Text(description="a city or an IANA time zone", max_length=64)},
            examples=["what time is it in {place}", "time in {place}", "what's the time in {place}"])
    def time_in(self, params: dict[str, Any], context: SkillContext) -> Result:
        """The current time somewhere else."""
        zone = find_zone(params["place"])
        moment = datetime.now(zone)
        return Result(text=f"In {params['place']} it is {moment:%H:%M} ({moment.tzname()}) on {moment:%A, %d %B}.",
                      data={"now": moment.isoformat(), "timezone": str(zone)})
