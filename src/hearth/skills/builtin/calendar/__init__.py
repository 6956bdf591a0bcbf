"""The built-in calendar skill: ``skill`` (the intents), ``backends`` (hearth's database or a CalDAV
server), ``ics`` (iCalendar in and out)."""

from .skill import CalendarSkill

__all__ = ["CalendarSkill"]
