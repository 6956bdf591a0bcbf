"""Records shared by the layers: what storage returns and what skills and the gateway show.

Plain frozen dataclasses with no behaviour beyond reading themselves, so that ``store`` can build them
and ``skills`` and ``gateway`` can use them without importing each other (DESIGN.md's layers).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar

__all__ = ["CalendarEvent", "FileRecord", "FileStatus", "is_id_prefix", "rank_by_title", "search_words"]

_WORD = re.compile(r"\w+")
# words that say nothing about which event is meant ("cancel my meeting with Bob": meeting, bob)
_STOP_WORDS = frozenset({"a", "an", "the", "my", "our", "with", "on", "at", "in", "of", "to", "for", "and", "event",
                         "appointment", "this", "that", "next", "from", "calendar"})
_ID_PREFIX = re.compile(r"^[0-9a-f]{4,32}$")


@dataclass(frozen=True, slots=True)
class CalendarEvent:
    """One event; all datetimes are aware and in UTC."""

    id: str
    user_id: int
    title: str
    starts_at: datetime
    ends_at: datetime
    location: str | None
    description: str | None
    uid: str
    created_at: datetime
    updated_at: datetime
    cancelled_at: datetime | None = None

    @property
    def duration(self) -> timedelta:
        """How long the event lasts."""
        return self.ends_at - self.starts_at


E = TypeVar("E", bound=CalendarEvent)


def search_words(text: str) -> list[str]:
    """The words of ``text`` that can name an event: casefolded, without words such as "my" or "the"
    (all of its words when nothing else is left)."""
    words = _WORD.findall(text.casefold())
    return [w for w in words if w not in _STOP_WORDS] or words


def is_id_prefix(text: str) -> bool:
    """Whether ``text`` can be the start of an event id (4 to 32 lower-case hexadecimal characters)."""
    return _ID_PREFIX.match(text) is not None


def rank_by_title(events: Iterable[E], text: str, now: datetime) -> list[E]:
    """The events ``text`` most likely names, upcoming ones first.

    ``text`` is an id prefix (at least 4 hexadecimal characters, or a whole id) or words of a title.
    Ids win when any id starts with ``text``. Otherwise an event scores one point per word of ``text``
    found among its title's words (words such as "my", "the", "with" do not count), and only the events
    with the best score are returned: "meeting with Bob" finds "Meeting with Bob" rather than every
    "Meeting". Events that have not ended come first, soonest first; past ones follow, latest first.
    """
    pool = list(events)
    wanted = text.strip().casefold()
    if not wanted:
        return []
    by_id = [e for e in pool if e.id.casefold() == wanted or e.uid.casefold() == wanted
             or (is_id_prefix(wanted) and e.id.casefold().startswith(wanted))]
    if by_id:
        return _upcoming_first(by_id, now)
    words = search_words(wanted)
    if not words:
        return []
    scored: list[tuple[int, E]] = []
    for event in pool:
        title = set(_WORD.findall(event.title.casefold()))
        score = sum(1 for word in words if word in title)
        if score:
            scored.append((score, event))
    if not scored:
        return []
    best = max(score for score, _ in scored)
    return _upcoming_first([event for score, event in scored if score == best], now)


def _upcoming_first(events: Sequence[E], now: datetime) -> list[E]:
    upcoming = sorted((e for e in events if e.ends_at > now), key=lambda e: (e.starts_at, e.id))
    past = sorted((e for e in events if e.ends_at <= now), key=lambda e: (e.starts_at, e.id), reverse=True)
    return upcoming + past


FileStatus = Literal["ready", "failed"]


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A stored file, without its text (``FileRepository.text`` reads that)."""

    id: str
    user_id: int
    conversation_id: str | None
    filename: str
    media_type: str
    size: int
    sha256: str
    path: str  # relative to the files root
    pages: int | None
    status: FileStatus
    error: str | None
    created_at: datetime
