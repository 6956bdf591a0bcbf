"""The built-in calendar's events: one row per event, times in UTC, cancelled rows kept.

Cancelling sets ``cancelled_at`` rather than deleting, so that an export or a sync can still tell a
client that the event went away (its UID stays known). Every query is scoped to one user: a user's id
is part of every statement, so an event id guessed or leaked from another user finds nothing.

Finding an event by what a person calls it ("the dentist", "meeting with Bob", an id's first
characters) is done here too, with ``rank_by_title`` shared by every calendar backend so that the
local calendar and a CalDAV server answer the same words the same way.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import ColumnElement

from hearth.errors import InvalidRequest, NotFound
from hearth.records import CalendarEvent, is_id_prefix, rank_by_title, search_words
from hearth.store.engine import Database
from hearth.store.schema import calendar_events, utcnow

__all__ = ["CalendarEvent", "CalendarRepository", "rank_by_title"]

_ce = calendar_events.c
_COLUMNS = tuple(calendar_events.c)  # column order == CalendarEvent's field order
FIND_LIMIT = 20
MAX_TITLE = 500


def _event(row: Any) -> CalendarEvent:
    return CalendarEvent(*row)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("calendar times must be aware datetimes")
    return moment.astimezone(UTC)


def _check_span(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise InvalidRequest("an event must end after it starts", code="invalid")


class CalendarRepository:
    """Users' calendar events in the ``calendar_events`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, user_id: int, title: str, starts_at: datetime, ends_at: datetime, *,
                  location: str | None = None, description: str | None = None,
                  uid: str | None = None) -> CalendarEvent:
        """Create an event; ``uid`` (the iCalendar UID) defaults to ``<id>@hearth``."""
        starts_at, ends_at = _utc(starts_at), _utc(ends_at)
        _check_span(starts_at, ends_at)
        event_id = uuid.uuid4().hex
        now = utcnow()
        values = {"id": event_id, "user_id": user_id, "title": title[:MAX_TITLE], "starts_at": starts_at,
                  "ends_at": ends_at, "location": location, "description": description,
                  "uid": uid or f"{event_id}@hearth", "created_at": now, "updated_at": now, "cancelled_at": None}
        statement = insert(calendar_events).values(**values).returning(*_COLUMNS)
        return _event(await self._db.write(lambda c: c.execute(statement).one()))

    async def get(self, user_id: int, event_id: str) -> CalendarEvent | None:
        """The user's event with this id (cancelled or not), or None."""
        query = select(*_COLUMNS).where(_ce.user_id == user_id, _ce.id == event_id)
        row = await self._db.read(lambda c: c.execute(query).first())
        return None if row is None else _event(row)

    async def update(self, user_id: int, event_id: str, *, title: str | None = None,
                     starts_at: datetime | None = None, ends_at: datetime | None = None,
                     location: str | None = None, description: str | None = None) -> CalendarEvent:
        """Change the given fields of a live (not cancelled) event; ``NotFound`` if there is none."""

        def tx(conn: Connection) -> CalendarEvent:
            row = conn.execute(select(*_COLUMNS).where(_ce.user_id == user_id, _ce.id == event_id,
                                                       _ce.cancelled_at.is_(None))).first()
            if row is None:
                raise NotFound(f"no event {event_id!r} in this calendar")
            current = _event(row)
            new_start = _utc(starts_at) if starts_at is not None else current.starts_at
            new_end = _utc(ends_at) if ends_at is not None else current.ends_at
            _check_span(new_start, new_end)
            values: dict[str, Any] = {"starts_at": new_start, "ends_at": new_end, "updated_at": utcnow()}
            if title is not None:
                values["title"] = title[:MAX_TITLE]
            if location is not None:
                values["location"] = location
            if description is not None:
                values["description"] = description
            statement = update(calendar_events).where(_ce.id == event_id).values(**values).returning(*_COLUMNS)
            return _event(conn.execute(statement).one())

        return await self._db.write(tx)

    async def cancel(self, user_id: int, event_id: str) -> CalendarEvent | None:
        """Cancel a live event; the cancelled event, or None if there was no live event with that id."""
        now = utcnow()
        statement = (update(calendar_events)
                     .where(_ce.user_id == user_id, _ce.id == event_id, _ce.cancelled_at.is_(None))
                     .values(cancelled_at=now, updated_at=now).returning(*_COLUMNS))
        row = await self._db.write(lambda c: c.execute(statement).first())
        return None if row is None else _event(row)

    async def between(self, user_id: int, start: datetime, end: datetime) -> list[CalendarEvent]:
        """Live events overlapping ``[start, end)``, by start time."""
        return await self.overlapping(user_id, start, end)

    async def overlapping(self, user_id: int, start: datetime, end: datetime, *,
                          exclude_id: str | None = None) -> list[CalendarEvent]:
        """Live events that share some time with ``[start, end)`` (touching ends do not count)."""
        query = (select(*_COLUMNS)
                 .where(_ce.user_id == user_id, _ce.cancelled_at.is_(None), _ce.starts_at < _utc(end),
                        _ce.ends_at > _utc(start))
                 .order_by(_ce.starts_at, _ce.id))
        if exclude_id is not None:
            query = query.where(_ce.id != exclude_id)
        rows = await self._db.read(lambda c: c.execute(query).all())
        return [_event(r) for r in rows]

    async def all(self, user_id: int) -> list[CalendarEvent]:
        """Every live event of the user, by start time (for an export)."""
        query = (select(*_COLUMNS).where(_ce.user_id == user_id, _ce.cancelled_at.is_(None))
                 .order_by(_ce.starts_at, _ce.id))
        rows = await self._db.read(lambda c: c.execute(query).all())
        return [_event(r) for r in rows]

    async def find(self, user_id: int, text: str, *, now: datetime | None = None) -> list[CalendarEvent]:
        """Live events that ``text`` names (an id prefix or title words), best matches only, upcoming
        first; at most ``FIND_LIMIT``. See ``rank_by_title``."""
        wanted = text.strip().casefold()
        words = search_words(wanted)
        if not wanted or not words:
            return []
        # narrow in SQL (any word in the title, or the id prefix), rank the few candidates in Python
        conditions: list[ColumnElement[bool]] = [_ce.title.ilike(f"%{_escape(word)}%", escape="\\") for word in words]
        if is_id_prefix(wanted):
            conditions.append(_ce.id.like(f"{wanted}%"))
        conditions.append(_ce.uid == text.strip())
        query = select(*_COLUMNS).where(_ce.user_id == user_id, _ce.cancelled_at.is_(None), or_(*conditions))
        rows = await self._db.read(lambda c: c.execute(query).all())
        return rank_by_title((_event(r) for r in rows), text, now or utcnow())[:FIND_LIMIT]


def _escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
