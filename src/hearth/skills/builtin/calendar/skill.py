"""The built-in calendar: the real version of the seed's ``CalendarSkill`` template.

It keeps the template's intent (``schedule_meeting``, answering ``{"status": "confirmed", "meeting_id":
...}``) and adds listing, moving, cancelling and an ``.ics`` export. Events are stored in UTC and shown in
the user's time zone (``context.tz``), in hearth's database or on a CalDAV server (``backends``).

A meeting is never double-booked silently: a new or moved event that overlaps others is refused with a
``SkillFailed`` that names them and offers the next free slot of the same length, so the user (or the
model) can pick it in one more sentence.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime, time, timedelta, tzinfo
from typing import Any, ClassVar

from hearth.records import CalendarEvent
from hearth.sdk import Choice, DateTime, Duration, Result, Skill, SkillContext, SkillFailed, Text, intent

from .backends import CalendarBackend, EventRows, LocalBackend, open_backend
from .ics import MEDIA_TYPE, to_ics

DEFAULT_DURATION = timedelta(minutes=30)
DEFAULT_TITLE = "Meeting"
SLOT_STEP = timedelta(minutes=15)
SLOT_HORIZON = timedelta(days=7)
RANGES = ("today", "tomorrow", "this week", "next week", "this weekend", "next weekend")
EXPORT_URL = "/v1/calendar.ics"
SHORT_ID = 8


class CalendarSkill(Skill):
    """Your calendar: schedule, list, move and cancel meetings, and export them as an .ics file."""

    name = "calendar"
    version = "1.0.0"
    config_schema: ClassVar[Mapping[str, Any]] = {
        "type": "object",
        "properties": {
            "backend": {"type": "string", "enum": ["local", "caldav"], "default": "local",
                        "description": "where events live: hearth's database, or a CalDAV server"},
            "url": {"type": "string", "description": "the CalDAV server's URL (caldav backend)"},
            "username": {"type": "string", "description": "the CalDAV login; may be $env:NAME"},
            "password": {"type": "string", "writeOnly": True,
                         "description": "the CalDAV password; use $env:NAME to keep it out of the database"},
            "calendar": {"type": "string",
                         "description": "the CalDAV calendar's name or URL (default: the account's first one)"},
        },
        "additionalProperties": False,
    }

    def __init__(self, events: EventRows, *, environ: Mapping[str, str] | None = None) -> None:
        """``events`` is the local store; ``environ`` resolves ``$env:NAME`` config values (default: the
        process environment, read at each call)."""
        self._events = events
        self._environ = environ

    # --- intents ------------------------------------------------------------------------------------------

    @intent(
        "schedule_meeting",
        slots={
            "start": DateTime(description="when the meeting starts"),
            "duration": Duration(description="how long it lasts (default 30 minutes)", required=False,
                                 maximum=timedelta(days=7)),
            "title": Text(description="what the meeting is called (default 'Meeting')", required=False,
                          max_length=500),
            "location": Text(description="where it takes place", required=False, max_length=500),
        },
        # Fuller templates first: on a tie the first wins, and a shorter one can read a sentence wrongly
        # ("... for half an hour at Room 7" as a title up to "Room" and a start at 7 o'clock).
        examples=[
            "schedule a meeting {start} for {duration}",
            "schedule a meeting {start} for {duration} at {location}",
            "schedule {title} {start} for {duration}",
            "schedule {title} {start} for {duration} at {location}",
            "book a meeting {start} for {duration}",
            "book {title} {start} for {duration}",
            "schedule a meeting {start}",
            "schedule {title} {start}",
            "book {title} {start}",
            "put {title} on my calendar {start}",
        ],
        side_effects=True,
    )
    async def schedule_meeting(self, params: dict[str, Any], context: SkillContext) -> Result:
        """Schedule a meeting (refused, with the next free slot, if it overlaps another event)."""
        start: datetime = params["start"]
        length: timedelta = params.get("duration") or DEFAULT_DURATION
        title = params.get("title") or DEFAULT_TITLE
        location = params.get("location")
        backend = self._backend(context)
        try:
            await self._refuse_conflicts(backend, context, start, length)
            event = await backend.add(context.user.id, title, start, start + length, location=location)
        finally:
            await backend.aclose()
        where = f" at {event.location}" if event.location else ""
        text = (f"Scheduled “{event.title}” on {span(event, context.tz)}{where} ({zone_name(event, context.tz)}). "
                f"Id: {event.id[:SHORT_ID]}.")
        return Result(text=text, data={"status": "confirmed", "meeting_id": event.id, **describe(event, context.tz)})

    @intent(
        "list_events",
        slots={
            "range": Choice(options=RANGES, description="which days", required=False),
            "start": DateTime(description="from when", required=False),
            "end": DateTime(description="until when", required=False, after="start"),
        },
        examples=[
            "what's on my calendar",
            "what is on my calendar",
            "show my calendar",
            "list my meetings",
            "what is on my calendar {range}",
            "what's on my calendar {range}",
            "show my calendar {range}",
            "list my meetings {range}",
            "list my events {range}",
            "what meetings do I have {range}",
            "what is on my calendar on {start}",
            "what is on my calendar from {start} to {end}",
            "list my meetings from {start} to {end}",
        ],
    )
    async def list_events(self, params: dict[str, Any], context: SkillContext) -> Result:
        """List the events in a range (default: the next 7 days)."""
        start, end, label = window(params, context.now, context.tz)
        backend = self._backend(context)
        try:
            events = await backend.between(context.user.id, start, end)
        finally:
            await backend.aclose()
        data = {"from": start.isoformat(), "to": end.isoformat(), "events": [describe(e, context.tz) for e in events]}
        if not events:
            return Result(text=f"Nothing on your calendar {label}.", data=data)
        lines = [f"Your calendar {label} ({zone_name(events[0], context.tz)}):"]
        day = None
        for event in events:
            local = event.starts_at.astimezone(context.tz)
            if local.date() != day:
                day = local.date()
                lines.append(f"{local:%A} {local.day} {local:%B}")
            where = f" — {event.location}" if event.location else ""
            lines.append(f"  {clock(event, context.tz)}  {event.title}{where}  [{event.id[:SHORT_ID]}]")
        return Result(text="\n".join(lines), data=data)

    @intent(
        "move_event",
        slots={
            "event": Text(description="the event's title words or id", max_length=200),
            "start": DateTime(description="the new start"),
            "duration": Duration(description="the new length (default: unchanged)", required=False,
                                 maximum=timedelta(days=7)),
        },
        examples=[
            # with a duration first: on a tie, the template that reads more of the sentence as typed slots
            # wins ("... to tomorrow at 6pm for 45 minutes" is not a start of "45 minutes")
            "move {event} to {start} for {duration}",
            "reschedule {event} to {start} for {duration}",
            "move {event} to {start}",
            "move my {event} to {start}",
            "reschedule {event} to {start}",
            "reschedule my {event} to {start}",
            "push {event} to {start}",
        ],
        side_effects=True,
    )
    async def move_event(self, params: dict[str, Any], context: SkillContext) -> Result:
        """Move an event to a new time (refused, with the next free slot, if that overlaps another event)."""
        start: datetime = params["start"]
        backend = self._backend(context)
        try:
            event = await self._one(backend, context, params["event"])
            length: timedelta = params.get("duration") or event.duration or DEFAULT_DURATION
            await self._refuse_conflicts(backend, context, start, length, exclude=event.id)
            moved = await backend.move(context.user.id, event.id, start, start + length)
        finally:
            await backend.aclose()
        text = f"Moved “{moved.title}” to {span(moved, context.tz)} ({zone_name(moved, context.tz)})."
        return Result(text=text, data={"status": "moved", "meeting_id": moved.id, **describe(moved, context.tz)})

    @intent(
        "cancel_event",
        slots={"event": Text(description="the event's title words or id", max_length=200)},
        examples=[
            "cancel {event} on my calendar",
            "cancel the meeting {event}",
            "cancel my meeting {event}",
            "cancel the {event} meeting",
            "cancel my {event} meeting",
            "cancel the event {event}",
            "remove {event} from my calendar",
            "delete {event} from my calendar",
        ],
        side_effects=True,
    )
    async def cancel_event(self, params: dict[str, Any], context: SkillContext) -> Result:
        """Cancel an event."""
        backend = self._backend(context)
        try:
            event = await self._one(backend, context, params["event"])
            cancelled = await backend.cancel(context.user.id, event.id)
        finally:
            await backend.aclose()
        text = f"Cancelled “{cancelled.title}” ({span(cancelled, context.tz)}, {zone_name(cancelled, context.tz)})."
        return Result(text=text, data={"status": "cancelled", "meeting_id": cancelled.id,
                                       **describe(cancelled, context.tz)})

    @intent(
        "export_calendar",
        examples=["export my calendar", "download my calendar", "export my calendar as ics",
                  "give me my calendar as an ics file"],
    )
    async def export_calendar(self, params: dict[str, Any], context: SkillContext) -> Result:
        """Export the calendar as an iCalendar (.ics) file."""
        backend = self._backend(context)
        try:
            events = await backend.all(context.user.id)
        finally:
            await backend.aclose()
        ics = to_ics(events).decode()
        count = f"{len(events)} event{'' if len(events) == 1 else 's'}"
        if isinstance(backend, LocalBackend):
            text = (f"Your calendar ({count}) as an .ics file: download it from GET {EXPORT_URL} (with your API key) "
                    "and import it into any calendar app.")
        else:
            text = (f"Your calendar is {backend.where} ({count}); here it is as .ics text. Your calendar app can also "
                    "subscribe to that server directly.")
        return Result(text=text, data={"format": MEDIA_TYPE, "filename": "calendar.ics", "events": len(events),
                                       "url": EXPORT_URL if isinstance(backend, LocalBackend) else None, "ics": ics})

    # --- for hearth's own routes ----------------------------------------------------------------------------

    async def export_ics(self, user_id: int) -> bytes:
        """The user's events in hearth's own calendar as an ``.ics`` file (for ``GET /v1/calendar.ics``)."""
        return to_ics(await self._events.all(user_id))

    # --- helpers ----------------------------------------------------------------------------------------------

    def _backend(self, context: SkillContext) -> CalendarBackend:
        environ = os.environ if self._environ is None else self._environ
        return open_backend(context.config, self._events, environ=environ, tz=context.tz)

    async def _one(self, backend: CalendarBackend, context: SkillContext, text: str) -> CalendarEvent:
        """The one event ``text`` names; ``SkillFailed`` listing the candidates when it names several."""
        text = trim(text)
        found = await backend.find(context.user.id, text, now=context.now)
        upcoming = [e for e in found if e.ends_at > context.now]
        candidates = upcoming or found
        if not candidates:
            raise SkillFailed(f"I found no event matching “{text}” on {backend.where}.", code="not_found")
        if len(candidates) > 1:
            listed = "; ".join(f"“{e.title}” on {span(e, context.tz)} [{e.id[:SHORT_ID]}]" for e in candidates[:10])
            raise SkillFailed(f"“{text}” matches {len(candidates)} events: {listed}. Which one? Say its title more "
                              "fully, or its id in brackets.", code="ambiguous")
        return candidates[0]

    async def _refuse_conflicts(self, backend: CalendarBackend, context: SkillContext, start: datetime,
                                length: timedelta, *, exclude: str | None = None) -> None:
        end = start + length
        conflicts = await backend.overlapping(context.user.id, start, end, exclude_id=exclude)
        if not conflicts:
            return
        tz = context.tz
        names = "; ".join(f"“{e.title}” ({span(e, tz)} {zone_name(e, tz)})" for e in conflicts[:5])
        more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        busy = await backend.between(context.user.id, start, start + SLOT_HORIZON + length)
        free = next_free_slot(busy, start, length, exclude=exclude)
        if free is None:
            offer = f"There is no free {minutes(length)} slot in the 7 days after it."
        else:
            local = free.astimezone(tz)
            offer = (f"The next free {minutes(length)} slot is {local:%a} {local.day} {local:%b}, "
                     f"{local:%H:%M}–{(free + length).astimezone(tz):%H:%M} ({local.tzname()}; "
                     f"start={local.isoformat()}).")
        raise SkillFailed(f"That time overlaps {names}{more}, so I did not book it. {offer}",
                          code="conflict")


# --- times in words -------------------------------------------------------------------------------------------


def next_free_slot(busy: Sequence[CalendarEvent], start: datetime, length: timedelta, *,
                   exclude: str | None = None, step: timedelta = SLOT_STEP,
                   horizon: timedelta = SLOT_HORIZON) -> datetime | None:
    """The first start after ``start``, on a ``step`` boundary (quarter hours), at most ``horizon`` later,
    from which ``length`` overlaps none of ``busy``; None if there is none."""
    events = sorted((e for e in busy if e.id != exclude), key=lambda e: e.starts_at)
    seconds = step.total_seconds()
    offset = start.timestamp() % seconds
    candidate = start + timedelta(seconds=seconds - offset) if offset else start + step
    last = start + horizon
    while candidate <= last:
        end = candidate + length
        clash = next((e for e in events if e.starts_at < end and e.ends_at > candidate), None)
        if clash is None:
            return candidate
        # jump past the clash to the next boundary: the same answer as stepping, in fewer steps
        behind = (clash.ends_at - candidate).total_seconds()
        candidate += timedelta(seconds=max(seconds, -(-behind // seconds) * seconds))
    return None


def window(params: Mapping[str, Any], now: datetime, tz: tzinfo) -> tuple[datetime, datetime, str]:
    """``[start, end)`` and its name, from a list request's ``range`` or ``start``/``end``."""
    today = now.astimezone(tz).date()

    def midnight(days: int) -> datetime:
        return datetime.combine(today + timedelta(days=days), time(0), tzinfo=tz)

    chosen = params.get("range")
    if chosen == "today":
        return midnight(0), midnight(1), "today"
    if chosen == "tomorrow":
        return midnight(1), midnight(2), "tomorrow"
    if chosen in ("this week", "next week"):
        monday = 7 - today.weekday()
        if chosen == "this week":
            return midnight(0), midnight(monday), "this week"
        return midnight(monday), midnight(monday + 7), "next week"
    if chosen in ("this weekend", "next weekend"):
        saturday = (5 - today.weekday()) % 7 if today.weekday() < 5 else -(today.weekday() - 5)
        if chosen == "next weekend":
            saturday += 7
        return max(midnight(saturday), now), midnight(saturday + 2), chosen
    start: datetime | None = params.get("start")
    end: datetime | None = params.get("end")
    if start is None and end is None:
        return now, now + timedelta(days=7), "in the next 7 days"
    if start is None:
        start = now
    if end is None:
        local = start.astimezone(tz)
        end = (datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=tz)
               if local.time() == time(0) else start + timedelta(days=1))
    if end <= start:
        raise SkillFailed("The end of that range is before its start.", code="bad_range")
    first, last = start.astimezone(tz), end.astimezone(tz)
    return start, end, f"from {first:%a} {first.day} {first:%b} {first:%H:%M} to {last:%a} {last.day} {last:%b} " \
                       f"{last:%H:%M}"


_EDGE_WORDS = frozenset({"my", "the", "a", "an", "to", "for", "at", "on", "with"})


def trim(text: str) -> str:
    """``text`` without the little words around a title ("the standup", "my dentist" -> "standup", "dentist"),
    as a person or a model names an event; the title search then looks for the words that matter."""
    words = text.split()
    while len(words) > 1 and words[-1].lower() in _EDGE_WORDS:
        words.pop()
    while len(words) > 1 and words[0].lower() in _EDGE_WORDS:
        words.pop(0)
    return " ".join(words)


def span(event: CalendarEvent, tz: tzinfo) -> str:
    """"Tue 14 May, 15:00–15:30" in ``tz`` (both dates when it ends on another day)."""
    start, end = event.starts_at.astimezone(tz), event.ends_at.astimezone(tz)
    day = f"{start:%a} {start.day} {start:%b}"
    if start.date() == end.date() or end - start <= timedelta(0):
        return f"{day}, {clock(event, tz)}"
    return f"{day} {start:%H:%M} – {end:%a} {end.day} {end:%b} {end:%H:%M}"


def clock(event: CalendarEvent, tz: tzinfo) -> str:
    start, end = event.starts_at.astimezone(tz), event.ends_at.astimezone(tz)
    return f"{start:%H:%M}–{end:%H:%M}" if end > start else f"{start:%H:%M}"


def zone_name(event: CalendarEvent, tz: tzinfo) -> str:
    return event.starts_at.astimezone(tz).tzname() or str(tz)


def minutes(length: timedelta) -> str:
    """"30-minute", "1-hour", "1 h 30 min" for a slot's length."""
    total = int(length.total_seconds() // 60)
    if total < 60:
        return f"{total}-minute"
    if total % 60 == 0:
        return f"{total // 60}-hour"
    return f"{total // 60} h {total % 60} min"


def describe(event: CalendarEvent, tz: tzinfo) -> dict[str, Any]:
    """An event for the model: ISO 8601 times in the user's zone."""
    return {"id": event.id, "title": event.title, "start": event.starts_at.astimezone(tz).isoformat(),
            "end": event.ends_at.astimezone(tz).isoformat(), "location": event.location}


__all__ = ["CalendarSkill", "next_free_slot", "window"]
