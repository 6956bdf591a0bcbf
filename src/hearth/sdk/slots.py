"""Slot types: what an intent needs from the user's words, with a type hearth understands.

A slot type does three things: it describes itself to the model as a JSON schema (so a tool call can
fill it), it parses what a person or a model wrote into a Python value (``"tomorrow at 3pm"`` becomes
an aware ``datetime`` in the user's time zone, ``"half an hour"`` a ``timedelta``), and it says what was
wrong when it cannot (``SlotError``, shown to the user or the model).

    from skill_sdk import Skill, intent, DateTime, Duration, Text

    class CalendarSkill(Skill):
        @intent("schedule_meeting", slots={"start": DateTime(), "duration": Duration(required=False)},
                examples=["schedule a meeting {start} for {duration}"])
        def handle_schedule(self, params): ...
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from typing import Any

from .parsing import names_a_time, parse_datetime, parse_duration, parse_number


class SlotError(ValueError):
    """A slot's value could not be understood; the message says what was expected."""


@dataclass(frozen=True)
class Slot:
    """Base of every slot type. ``required`` slots must be filled before the handler runs."""

    description: str = ""
    required: bool = True

    kind = "text"

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string"}
        if self.description:
            schema["description"] = self.description
        return schema

    def parse(self, value: Any, *, tz: tzinfo, now: datetime) -> Any:
        """The Python value for ``value`` (a string from a template or command, or JSON from a model)."""
        raise NotImplementedError

    @property
    def pattern(self) -> str:
        """The regular expression a template uses to find this slot's words in a sentence."""
        return r".+?"


@dataclass(frozen=True)
class Text(Slot):
    """Free text (a title, a name, a question). ``max_length`` bounds it."""

    max_length: int = 2000

    def parse(self, value: Any, *, tz: tzinfo, now: datetime) -> str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise SlotError("expected text")
        text = str(value).strip()
        if not text:
            raise SlotError("expected some text")
        if len(text) > self.max_length:
            raise SlotError(f"text longer than {self.max_length} characters")
        return text


@dataclass(frozen=True)
class Number(Slot):
    """A number, written as digits or words ("three", "2.5"); ``integer`` rejects fractions."""

    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False

    kind = "number"

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer" if self.integer else "number"}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.description:
            schema["description"] = self.description
        return schema

    def parse(self, value: Any, *, tz: tzinfo, now: datetime) -> int | float:
        number = parse_number(value)
        if number is None:
            raise SlotError("expected a number")
        if self.integer:
            if number != int(number):
                raise SlotError("expected a whole number")
            number = int(number)
        if self.minimum is not None and number < self.minimum:
            raise SlotError(f"expected a number of at least {self.minimum:g}")
        if self.maximum is not None and number > self.maximum:
            raise SlotError(f"expected a number of at most {self.maximum:g}")
        return number

    @property
    def pattern(self) -> str:
        return r"[\w.,-]+"


@dataclass(frozen=True)
class DateTime(Slot):
    """A moment: ISO 8601, or words such as "tomorrow at 3pm", "next friday 9:30", "in 2 hours".

    Parsed in the user's time zone and returned as an aware ``datetime``. ``future`` rejects the past
    (and reads "at 9" said in the afternoon as tomorrow morning). ``after`` names another ``DateTime``
    slot of the same intent that this one follows: it is read relative to that slot's value and must come
    after it, so "from monday to wednesday" ends on the Wednesday after that Monday. ``day_time`` is the
    time of day taken when only a day is said: a reminder "on friday" is due on Friday at 09:00 with
    ``day_time=time(9)``, not at midnight (None keeps the start of the day, as a calendar range wants).
    """

    future: bool = True
    after: str | None = None
    day_time: time | None = None

    kind = "datetime"

    def json_schema(self) -> dict[str, Any]:
        description = self.description or "a date and time"
        return {"type": "string", "description": f"{description} (ISO 8601 with time zone, or words such as "
                                                 "'tomorrow at 3pm')"}

    def parse(self, value: Any, *, tz: tzinfo, now: datetime, follows: datetime | None = None) -> datetime:
        """``follows`` is the value of the slot named by ``after``, when it has one."""
        if not isinstance(value, str):
            raise SlotError("expected a date and time")
        moment = parse_datetime(value, tz=tz, now=now, prefer_future=self.future)
        if follows is not None and (moment is None or moment <= follows):
            # "from monday to wednesday": the wednesday after that monday ("tomorrow at 17" stays as it is)
            moment = parse_datetime(value, tz=tz, now=follows, prefer_future=True)
        if moment is None:
            raise SlotError(f"could not read {value!r} as a date and time (try 'tomorrow at 3pm' or "
                            "'2026-05-01 14:00')")
        if self.day_time is not None and not names_a_time(value):
            moment = datetime.combine(moment.astimezone(tz).date(), self.day_time, tzinfo=tz)
        if follows is not None and moment <= follows:
            raise SlotError(f"{moment:%Y-%m-%d %H:%M} is not after {follows:%Y-%m-%d %H:%M}")
        if self.future and moment < now - timedelta(minutes=1):
            raise SlotError(f"{moment:%Y-%m-%d %H:%M} is in the past")
        return moment


@dataclass(frozen=True)
class Duration(Slot):
    """A length of time: "30 minutes", "half an hour", "1h30", "an hour and a half", ISO ``PT45M``."""

    minimum: timedelta = timedelta(seconds=1)
    maximum: timedelta = timedelta(days=366)

    kind = "duration"

    def json_schema(self) -> dict[str, Any]:
        description = self.description or "a duration"
        return {"type": "string", "description": f"{description} (e.g. '30 minutes', '1h30', 'PT45M')"}

    def parse(self, value: Any, *, tz: tzinfo, now: datetime) -> timedelta:
        if isinstance(value, int | float) and not isinstance(value, bool):
            span: timedelta | None = timedelta(minutes=float(value))
        elif isinstance(value, str):
            span = parse_duration(value)
        else:
            span = None
        if span is None:
            raise SlotError(f"could not read {value!r} as a duration (try '30 minutes' or '1h30')")
        if not self.minimum <= span <= self.maximum:
            raise SlotError(f"a duration between {self.minimum} and {self.maximum} was expected")
        return span


@dataclass(frozen=True)
class Choice(Slot):
    """One of fixed options; matched case-insensitively, also by a unique prefix."""

    options: Sequence[str] = field(default_factory=tuple)

    kind = "choice"

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError("Choice needs at least one option")

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "enum": list(self.options)}
        if self.description:
            schema["description"] = self.description
        return schema

    def parse(self, value: Any, *, tz: tzinfo, now: datetime) -> str:
        if not isinstance(value, str):
            raise SlotError(f"expected one of {', '.join(self.options)}")
        wanted = value.strip().lower()
        exact = [o for o in self.options if o.lower() == wanted]
        if exact:
            return exact[0]
        prefixed = [o for o in self.options if o.lower().startswith(wanted)] if wanted else []
        if len(prefixed) == 1:
            return prefixed[0]
        raise SlotError(f"expected one of {', '.join(self.options)}")

    @property
    def pattern(self) -> str:
        return "|".join(re.escape(o) for o in sorted(self.options, key=len, reverse=True))


def slots_schema(slots: Mapping[str, Slot]) -> dict[str, Any]:
    """The JSON schema of an object with these slots, as offered to a model."""
    return {
        "type": "object",
        "properties": {name: slot.json_schema() for name, slot in slots.items()},
        "required": [name for name, slot in slots.items() if slot.required],
        "additionalProperties": False,
    }


def parse_slots(slots: Mapping[str, Slot], values: Mapping[str, Any], *, tz: tzinfo, now: datetime,
                known: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Each of ``values`` parsed by its slot: (parsed values, problems by slot name).

    A ``DateTime`` with ``after`` is parsed once the slot it follows has been, relative to that value
    (taken from ``known``, already parsed values, when it is not among ``values``). Names with no slot
    are left to the caller: they are neither parsed nor reported here.
    """
    parsed: dict[str, Any] = dict(known or {})
    problems: dict[str, str] = {}
    names = [name for name in values if name in slots]
    for name in sorted(names, key=lambda n: _follows(slots[n]) is not None):  # anchors first
        slot = slots[name]
        try:
            anchor = parsed.get(_follows(slot) or "")
            if isinstance(slot, DateTime) and isinstance(anchor, datetime):
                parsed[name] = slot.parse(values[name], tz=tz, now=now, follows=anchor)
            else:
                parsed[name] = slot.parse(values[name], tz=tz, now=now)
        except SlotError as exc:
            problems[name] = str(exc)
    return {name: parsed[name] for name in values if name in parsed}, problems


def _follows(slot: Slot) -> str | None:
    return slot.after if isinstance(slot, DateTime) else None
