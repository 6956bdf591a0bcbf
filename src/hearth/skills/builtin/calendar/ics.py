"""iCalendar (RFC 5545) in and out: the ``.ics`` export, and the events a CalDAV server stores.

Everything hearth writes is in UTC (``DTSTART:20260514T070000Z``): no ``VTIMEZONE`` to get wrong, and
every client shows it in its own user's zone. What it reads may be in any zone, floating (no zone:
taken in the user's) or all-day (a date: midnight to midnight in the user's zone).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

import icalendar

from hearth.records import CalendarEvent

PRODID = "-//hearth//calendar 1.0//EN"
MEDIA_TYPE = "text/calendar"


def event_component(event: CalendarEvent, *, stamp: datetime | None = None, sequence: int | None = None
                    ) -> icalendar.Event:
    """One ``VEVENT`` for ``event``, in UTC. ``DTSTAMP`` is ``stamp`` (default: the event's last change)."""
    component = icalendar.Event()
    component.add("uid", event.uid)
    component.add("dtstamp", (stamp or event.updated_at).astimezone(UTC))
    component.add("dtstart", event.starts_at.astimezone(UTC))
    component.add("dtend", event.ends_at.astimezone(UTC))
    component.add("summary", event.title)
    if event.location:
        component.add("location", event.location)
    if event.description:
        component.add("description", event.description)
    component.add("created", event.created_at.astimezone(UTC))
    component.add("last-modified", event.updated_at.astimezone(UTC))
    if sequence is not None:
        component.add("sequence", sequence)
    return component


def calendar_of(components: Iterable[icalendar.Event], *, name: str = "hearth") -> icalendar.Calendar:
    """A ``VCALENDAR`` (``PRODID``, ``VERSION:2.0``, Gregorian) holding ``components``."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", name)
    for component in components:
        calendar.add_component(component)
    return calendar


def to_ics(events: Iterable[CalendarEvent], *, name: str = "hearth") -> bytes:
    """The ``.ics`` file of ``events``: one ``VEVENT`` each, CRLF line endings as RFC 5545 wants."""
    data: bytes = calendar_of((event_component(e) for e in events), name=name).to_ical()
    return data


def read_event(component: Any, *, user_id: int, tz: tzinfo, now: datetime) -> CalendarEvent | None:
    """A ``VEVENT`` as a ``CalendarEvent`` (id = UID), or None for one hearth cannot place in time or
    that is cancelled (``STATUS:CANCELLED``)."""
    if str(component.get("status", "")).upper() == "CANCELLED":
        return None
    uid = str(component.get("uid", "")).strip()
    start_value = component.get("dtstart")
    if not uid or start_value is None:
        return None
    start = _moment(start_value.dt, tz)
    end_value = component.get("dtend")
    if end_value is not None:
        end = _moment(end_value.dt, tz)
    elif component.get("duration") is not None:
        end = start + component.get("duration").dt
    else:  # RFC 5545 3.6.1: a date lasts the day, a date-time is a moment
        all_day = isinstance(start_value.dt, date) and not isinstance(start_value.dt, datetime)
        end = start + (timedelta(days=1) if all_day else timedelta(0))
    created = _stamp(component, "created", now)
    changed = _stamp(component, "last-modified", None) or _stamp(component, "dtstamp", created)
    return CalendarEvent(
        id=uid, user_id=user_id, title=str(component.get("summary", "")).strip() or "(no title)",
        starts_at=start, ends_at=max(end, start), location=_text(component, "location"),
        description=_text(component, "description"), uid=uid, created_at=created, updated_at=changed or created)


def _moment(value: date | datetime, tz: tzinfo) -> datetime:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=tz)).astimezone(UTC)
    return datetime.combine(value, time(0), tzinfo=tz).astimezone(UTC)


def _stamp(component: Any, name: str, default: datetime | None) -> Any:
    value = component.get(name)
    if value is None or not isinstance(value.dt, datetime):
        return default
    return _moment(value.dt, UTC)


def _text(component: Any, name: str) -> str | None:
    value = component.get(name)
    return str(value).strip() or None if value is not None else None
