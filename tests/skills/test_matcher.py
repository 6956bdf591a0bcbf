"""The template matcher's search stays bounded: what it asks slot types to parse, not how long it takes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from hearth.sdk import DateTime, Skill, Text, intent
from hearth.skills.loader import manifest_of
from hearth.skills.matcher import MAX_TYPED_WORDS, Matcher

OSLO = ZoneInfo("Europe/Oslo")
NOW = datetime(2026, 5, 12, 9, 0, tzinfo=OSLO)


@dataclass(frozen=True)
class CountingDateTime(DateTime):
    seen: ClassVar[Counter[str]] = Counter()

    def parse(self, value: Any, *, tz: Any, now: datetime, follows: datetime | None = None) -> datetime:
        self.seen[value] += 1
        return super().parse(value, tz=tz, now=now, follows=follows)


class Agenda(Skill):
    name = "agenda"

    @intent("book", slots={"title": Text(), "start": CountingDateTime()},
            examples=["book {title} {start}", "book a meeting {start}", "put {title} in my agenda {start}"])
    def book(self, params: dict[str, Any]) -> str:
        return "ok"


def test_typed_slots_read_a_few_words_and_each_text_once() -> None:
    matcher = Matcher()
    matcher.load({"agenda": dict(manifest_of(Agenda, "test").intents)})
    CountingDateTime.seen.clear()
    found = matcher.match("book a meeting " + " ".join(["tomorrow"] * 50), tz=OSLO, now=NOW)
    assert found is not None and found.intent.name == "book"
    assert max(len(text.split()) for text in CountingDateTime.seen) <= MAX_TYPED_WORDS
    # the templates of one message share what the search parsed; each template's best reading is parsed once
    # more when it is filled in
    templates = len(Agenda.book.__hearth_intent__.examples)  # type: ignore[attr-defined]
    assert sum(CountingDateTime.seen.values()) <= len(CountingDateTime.seen) + templates
