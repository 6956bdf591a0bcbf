"""Where a user's events live: hearth's own database, or a CalDAV server (Nextcloud, Radicale, iCloud...).

``CalendarBackend`` is the seam: the skill asks it for events and changes them through it, and never
knows which one it has. Both answer with the store's ``CalendarEvent`` records (aware UTC datetimes);
on CalDAV an event's id is its iCalendar UID.

The ``caldav`` library is synchronous (niquests underneath), so each CalDAV operation runs in a worker
thread, and its errors are turned into ``SkillFailed`` messages that say what to fix, at this edge.
Which backend a call gets is the skill's config, read on every call so that
``hearth skills config calendar ...`` takes effect at once. Config strings may be ``$env:NAME``
references, resolved from the environment hearth was given, so a CalDAV password need not be stored in
the database; neither it nor its value ever appears in a message.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from caldav.davclient import DAVClient
from caldav.lib import error as caldav_error

from hearth.errors import NotFound
from hearth.records import CalendarEvent, rank_by_title
from hearth.sdk import SkillFailed

from .ics import calendar_of, event_component, read_event

T = TypeVar("T")
BACKENDS = ("local", "caldav")
CALDAV_TIMEOUT = 15
# how far a CalDAV "find" looks for the event a person names (a local find looks everywhere)
FIND_PAST = timedelta(days=30)
FIND_AHEAD = timedelta(days=366)
CONFIGURE = "hearth skills config calendar"


class EventRows(Protocol):
    """The events table the local backend keeps its events in (``hearth.store.EventRows``)."""

    async def add(self, user_id: int, title: str, starts_at: datetime, ends_at: datetime, *,
                  location: str | None = None, description: str | None = None,
                  uid: str | None = None) -> CalendarEvent: ...

    async def update(self, user_id: int, event_id: str, *, title: str | None = None,
                     starts_at: datetime | None = None, ends_at: datetime | None = None,
                     location: str | None = None, description: str | None = None) -> CalendarEvent: ...

    async def cancel(self, user_id: int, event_id: str) -> CalendarEvent | None: ...

    async def between(self, user_id: int, start: datetime, end: datetime) -> list[CalendarEvent]: ...

    async def overlapping(self, user_id: int, start: datetime, end: datetime, *,
                          exclude_id: str | None = None) -> list[CalendarEvent]: ...

    async def all(self, user_id: int) -> list[CalendarEvent]: ...

    async def find(self, user_id: int, text: str, *, now: datetime | None = None) -> list[CalendarEvent]: ...


class CalendarBackend(Protocol):
    """A user's calendar. Times are aware datetimes; records come back in UTC."""

    @property
    def where(self) -> str:
        """Where the events are, in words ("your hearth calendar", "the CalDAV calendar 'Work' at ...")."""
        ...

    async def add(self, user_id: int, title: str, starts_at: datetime, ends_at: datetime, *,
                  location: str | None = None, description: str | None = None) -> CalendarEvent: ...

    async def between(self, user_id: int, start: datetime, end: datetime) -> list[CalendarEvent]:
        """Events overlapping ``[start, end)``, by start time."""
        ...

    async def overlapping(self, user_id: int, start: datetime, end: datetime, *,
                          exclude_id: str | None = None) -> list[CalendarEvent]: ...

    async def find(self, user_id: int, text: str, *, now: datetime) -> list[CalendarEvent]:
        """The events ``text`` names (id prefix or title words), best matches only, upcoming first."""
        ...

    async def move(self, user_id: int, event_id: str, starts_at: datetime, ends_at: datetime) -> CalendarEvent: ...

    async def cancel(self, user_id: int, event_id: str) -> CalendarEvent: ...

    async def all(self, user_id: int) -> list[CalendarEvent]:
        """Every event, for an export."""
        ...

    async def aclose(self) -> None: ...


class LocalBackend:
    """Events in hearth's own database (``calendar_events``)."""

    where = "your hearth calendar"

    def __init__(self, repository: EventRows) -> None:
        self._events = repository

    async def add(self, user_id: int, title: str, starts_at: datetime, ends_at: datetime, *,
                  location: str | None = None, description: str | None = None) -> CalendarEvent:
        return await self._events.add(user_id, title, starts_at, ends_at, location=location, description=description)

    async def between(self, user_id: int, start: datetime, end: datetime) -> list[CalendarEvent]:
        return await self._events.between(user_id, start, end)

    async def overlapping(self, user_id: int, start: datetime, end: datetime, *,
                          exclude_id: str | None = None) -> list[CalendarEvent]:
        return await self._events.overlapping(user_id, start, end, exclude_id=exclude_id)

    async def find(self, user_id: int, text: str, *, now: datetime) -> list[CalendarEvent]:
        return await self._events.find(user_id, text, now=now)

    async def move(self, user_id: int, event_id: str, starts_at: datetime, ends_at: datetime) -> CalendarEvent:
        try:
            return await self._events.update(user_id, event_id, starts_at=starts_at, ends_at=ends_at)
        except NotFound as exc:
            raise SkillFailed("That event is no longer on your calendar.", code="not_found") from exc

    async def cancel(self, user_id: int, event_id: str) -> CalendarEvent:
        cancelled = await self._events.cancel(user_id, event_id)
        if cancelled is None:
            raise SkillFailed("That event is no longer on your calendar.", code="not_found")
        return cancelled

    async def all(self, user_id: int) -> list[CalendarEvent]:
        return await self._events.all(user_id)

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class CalDAVSettings:
    """Where the CalDAV calendar is and how to log in (secrets already resolved)."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    calendar: str | None = None

    @property
    def server(self) -> str:
        """The URL without any credentials in it, for messages."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def settings_from(config: Mapping[str, Any], environ: Mapping[str, str]) -> CalDAVSettings | None:
    """The CalDAV settings in a calendar config, or None for the local calendar.

    Raises ``SkillFailed`` naming the setting to fix and the command that fixes it.
    """
    values = {key: _resolve(key, value, environ) for key, value in config.items()}
    backend = (values.get("backend") or "local").strip().lower()
    if backend not in BACKENDS:
        raise SkillFailed(f"The calendar's backend is set to {backend!r}, which hearth does not know. Use "
                          f"'{CONFIGURE} backend=local' or '{CONFIGURE} backend=caldav url=...'.", code="config")
    if backend == "local":
        return None
    url = (values.get("url") or "").strip()
    if not url:
        raise SkillFailed("The calendar is set to use a CalDAV server, but no server is configured. Set it with: "
                          f"{CONFIGURE} url=https://caldav.example.com/dav/ username=YOU "
                          "password='$env:CALDAV_PASSWORD' (or switch back with backend=local).", code="config")
    if not url.startswith(("http://", "https://")):
        raise SkillFailed("The calendar's CalDAV url must start with https:// (or http://). Set it with: "
                          f"{CONFIGURE} url=https://caldav.example.com/dav/", code="config")
    username = (values.get("username") or "").strip() or None
    password = values.get("password") or None
    if username and password is None:
        raise SkillFailed(f"The calendar's CalDAV username is set but its password is not. Set it with: {CONFIGURE} "
                          "password='$env:CALDAV_PASSWORD' (and put the password in that environment variable).",
                          code="config")
    return CalDAVSettings(url=url, username=username, password=password,
                          calendar=(values.get("calendar") or "").strip() or None)


def _resolve(key: str, value: Any, environ: Mapping[str, str]) -> str | None:
    """A config value, with a ``$env:NAME`` reference replaced by that environment variable."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise SkillFailed(f"The calendar setting {key!r} must be text. Set it with: {CONFIGURE} {key}=...",
                          code="config")
    if not value.startswith("$env:"):
        return value
    name = value.removeprefix("$env:").strip()
    if not name:
        raise SkillFailed(f"The calendar setting {key!r} is '$env:' without a variable name. Use e.g. "
                          f"{key}='$env:CALDAV_PASSWORD'.", code="config")
    if name not in environ:
        raise SkillFailed(f"The calendar setting {key!r} refers to the environment variable {name}, which is not "
                          "set where hearth runs. Set it (in hearth's .env or service environment) and restart, or "
                          f"change the setting with: {CONFIGURE} {key}=...", code="config")
    return environ[name]


class CalDAVBackend:
    """Events on a CalDAV server, one calendar of one account.

    Connects on first use (principal, then the configured calendar, else the first one) and keeps the
    connection for the rest of the call; ``aclose`` releases it.
    """

    def __init__(self, settings: CalDAVSettings, tz: tzinfo) -> None:
        self.settings = settings
        self._tz = tz
        self._client: Any = None
        self._calendar: Any = None
        self._calendar_name = ""

    @property
    def where(self) -> str:
        name = f" {self._calendar_name!r}" if self._calendar_name else ""
        return f"the CalDAV calendar{name} at {self.settings.server}"

    # --- the protocol ------------------------------------------------------------------------------------

    async def add(self, user_id: int, title: str, starts_at: datetime, ends_at: datetime, *,
                  location: str | None = None, description: str | None = None) -> CalendarEvent:
        now = datetime.now(UTC)
        uid = f"{uuid.uuid4().hex}@hearth"
        event = CalendarEvent(id=uid, user_id=user_id, title=title, starts_at=starts_at.astimezone(UTC),
                              ends_at=ends_at.astimezone(UTC), location=location, description=description, uid=uid,
                              created_at=now, updated_at=now)
        ical = calendar_of([event_component(event, stamp=now, sequence=0)]).to_ical().decode()
        await self._run(lambda calendar: calendar.add_event(ical=ical, no_overwrite=True))
        return event

    async def between(self, user_id: int, start: datetime, end: datetime) -> list[CalendarEvent]:
        found = await self._run(lambda calendar: self._search(calendar, user_id, start, end))
        return sorted((e for e in found if e.starts_at < end and e.ends_at > start), key=lambda e: (e.starts_at, e.id))

    async def overlapping(self, user_id: int, start: datetime, end: datetime, *,
                          exclude_id: str | None = None) -> list[CalendarEvent]:
        return [e for e in await self.between(user_id, start, end) if e.id != exclude_id]

    async def find(self, user_id: int, text: str, *, now: datetime) -> list[CalendarEvent]:
        events = await self.between(user_id, now - FIND_PAST, now + FIND_AHEAD)
        unique = {e.id: e for e in reversed(events)}  # a repeating event once, at its first occurrence
        return rank_by_title(unique.values(), text, now)

    async def move(self, user_id: int, event_id: str, starts_at: datetime, ends_at: datetime) -> CalendarEvent:
        def move(calendar: Any) -> CalendarEvent:
            resource = self._by_uid(calendar, event_id)
            now = datetime.now(UTC)
            with resource.edit_icalendar_component() as component:
                for name in ("dtstart", "dtend", "duration", "dtstamp", "last-modified"):
                    component.pop(name, None)
                component.add("dtstart", starts_at.astimezone(UTC))
                component.add("dtend", ends_at.astimezone(UTC))
                component.add("dtstamp", now)
                component.add("last-modified", now)
            resource.save()
            moved = read_event(resource.get_icalendar_component(), user_id=user_id, tz=self._tz, now=now)
            if moved is None:
                raise SkillFailed("The CalDAV server did not keep the moved event.", code="caldav_error")
            return moved

        return await self._run(move)

    async def cancel(self, user_id: int, event_id: str) -> CalendarEvent:
        def cancel(calendar: Any) -> CalendarEvent:
            resource = self._by_uid(calendar, event_id)
            event = read_event(resource.get_icalendar_component(), user_id=user_id, tz=self._tz,
                               now=datetime.now(UTC))
            if event is None:
                raise SkillFailed("That event is already cancelled.", code="not_found")
            resource.delete()
            return event

        return await self._run(cancel)

    async def all(self, user_id: int) -> list[CalendarEvent]:
        def every(calendar: Any) -> list[CalendarEvent]:
            now = datetime.now(UTC)
            found = (read_event(r.get_icalendar_component(), user_id=user_id, tz=self._tz, now=now)
                     for r in calendar.events())
            return sorted((e for e in found if e is not None), key=lambda e: (e.starts_at, e.id))

        return await self._run(every)

    async def aclose(self) -> None:
        client, self._client, self._calendar = self._client, None, None
        if client is not None:
            await asyncio.to_thread(client.close)

    # --- in the worker thread ---------------------------------------------------------------------------

    async def _run(self, operation: Callable[[Any], T]) -> T:
        """``operation(calendar)`` in a thread, with the library's errors turned into ``SkillFailed``."""
        return await asyncio.to_thread(self._guarded, operation)

    def _guarded(self, operation: Callable[[Any], T]) -> T:
        try:
            return operation(self._connected())
        except SkillFailed:
            raise
        except caldav_error.AuthorizationError as exc:
            who = f"user {self.settings.username!r}" if self.settings.username else "no username"
            raise SkillFailed(f"The CalDAV server at {self.settings.server} refused the login ({who}, HTTP "
                              f"{exc.status or 401}): check the username and password. Set them with: {CONFIGURE} "
                              "username=YOU password='$env:CALDAV_PASSWORD'", code="caldav_auth") from exc
        except caldav_error.DAVError as exc:
            raise SkillFailed(f"The CalDAV server at {self.settings.server} answered with an error "
                              f"({type(exc).__name__}{f', HTTP {exc.status}' if exc.status else ''}). Check the "
                              f"url and calendar settings ({CONFIGURE} ...).", code="caldav_error") from exc
        except OSError as exc:  # niquests' connection errors, timeouts, TLS failures
            raise SkillFailed(f"hearth could not reach the CalDAV server at {self.settings.server} "
                              f"({type(exc).__name__}). Check that it is running and that the url setting is right "
                              f"({CONFIGURE} url=...).", code="caldav_unreachable") from exc

    def _connected(self) -> Any:
        if self._calendar is not None:
            return self._calendar
        if self._client is None:
            self._client = DAVClient(url=self.settings.url, username=self.settings.username,
                                            password=self.settings.password, timeout=CALDAV_TIMEOUT)
        calendars = self._client.principal().calendars()
        wanted = self.settings.calendar
        named = [(calendar, calendar.get_display_name() or "") for calendar in calendars]
        if wanted:
            chosen = [c for c, name in named if wanted.casefold() in (name.casefold(), _last_segment(c.url))
                      or wanted.rstrip("/") == str(c.url).rstrip("/")]
            if not chosen:
                known = ", ".join(repr(name or _last_segment(c.url)) for c, name in named) or "none"
                raise SkillFailed(f"There is no calendar {wanted!r} on the CalDAV server at {self.settings.server} "
                                  f"(its calendars: {known}). Set one with: {CONFIGURE} calendar=NAME", code="config")
            self._calendar = chosen[0]
        elif named:
            self._calendar = named[0][0]
        else:
            raise SkillFailed(f"The CalDAV account at {self.settings.server} has no calendar. Create one in your "
                              f"calendar app, then set it with: {CONFIGURE} calendar=NAME", code="config")
        self._calendar_name = dict((str(c.url), n) for c, n in named).get(str(self._calendar.url), "")
        return self._calendar

    def _search(self, calendar: Any, user_id: int, start: datetime, end: datetime) -> list[CalendarEvent]:
        now = datetime.now(UTC)
        found = calendar.search(start=start.astimezone(UTC), end=end.astimezone(UTC), event=True, expand=True)
        events = (read_event(r.get_icalendar_component(), user_id=user_id, tz=self._tz, now=now) for r in found)
        return [e for e in events if e is not None]

    def _by_uid(self, calendar: Any, uid: str) -> Any:
        try:
            resource = calendar.get_event_by_uid(uid)
        except caldav_error.NotFoundError as exc:
            raise SkillFailed("That event is no longer on your calendar.", code="not_found") from exc
        if resource.get_icalendar_component().get("rrule") is not None:
            raise SkillFailed("That event repeats; hearth does not change repeating events yet. Change it in your "
                              "calendar app.", code="recurring")
        return resource


def _last_segment(url: Any) -> str:
    return str(url).rstrip("/").rsplit("/", 1)[-1].casefold()


def open_backend(config: Mapping[str, Any], repository: EventRows, *, environ: Mapping[str, str],
                 tz: tzinfo) -> CalendarBackend:
    """The backend a call's config asks for (``SkillFailed`` when the config is incomplete)."""
    settings = settings_from(config, environ)
    if settings is None:
        return LocalBackend(repository)
    return CalDAVBackend(settings, tz)
