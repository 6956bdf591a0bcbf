"""``Skill`` and ``@intent``: how a skill says what it can do.

A skill is a class. Its intents are methods marked with ``@intent``; each declares the slots it needs,
example sentences (templates with ``{slot}`` holes), the permission it requires and whether it changes
anything in the world (``side_effects``: hearth then asks the user to confirm before running it). The
class attributes are the skill's manifest.

    from skill_sdk import Skill, intent

    class CalendarSkill(Skill):
        @intent("schedule_meeting")
        def handle_schedule(self, params):
            start_time = params.get("start")
            duration = params.get("duration")
            return {"status": "confirmed", "meeting_id": "12345"}

A handler takes ``params`` (a dict of parsed slot values) and, if it names a second parameter, the
``SkillContext``; it may be sync or async, and returns a ``dict``, a ``str`` or a ``Result``. Raising
``SkillFailed("...")`` reports a failure in words the user sees; any other exception is reported as a
crash of the skill, never as a crash of the conversation.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from .slots import DateTime, Slot, slots_schema

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
Handler = Callable[..., Any]
F = TypeVar("F", bound=Handler)

CAPABILITIES = ("network", "storage", "messages", "files")
"""What a skill may ask for in ``permissions``: outbound HTTP, its own key-value storage, sending
messages (now or later) to the conversation, and reading files users sent. A skill from a package or the
skills folder gets a capability only when its manifest asks for it **and** an admin granted it."""


class SkillFailed(Exception):
    """Raise from a handler to report a failure the user should read (e.g. "that slot is taken")."""

    def __init__(self, message: str, *, code: str = "skill_failed") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Result:
    """A richer handler result: ``text`` for people, ``data`` for the model, files to attach."""

    text: str = ""
    data: Mapping[str, Any] | None = None
    attachments: Sequence[str] = ()


@dataclass(frozen=True)
class IntentSpec:
    """Everything ``@intent`` declares about one handler."""

    name: str
    description: str
    slots: Mapping[str, Slot]
    examples: tuple[str, ...]
    permission: str | None
    side_effects: bool
    timeout: float
    handler_name: str = ""
    wants_context: bool = False

    def json_schema(self) -> dict[str, Any]:
        """The parameters' JSON schema as a model sees it (free-form when no slots are declared)."""
        if not self.slots:
            return {"type": "object", "additionalProperties": True}
        return slots_schema(self.slots)


def intent(
    name: str,
    *,
    description: str | None = None,
    slots: Mapping[str, Slot] | None = None,
    examples: Sequence[str] = (),
    permission: str | None = None,
    side_effects: bool = False,
    timeout: float = 30.0,
) -> Callable[[F], F]:
    """Mark a method as the handler of intent ``name``.

    ``slots`` name the typed values the intent needs; ``examples`` are sentences with ``{slot}`` holes
    that hearth matches without a model ("schedule a meeting {start} for {duration}"); ``permission`` is
    the action a user's role must grant (default ``tool.<skill>.<intent>``); ``side_effects`` makes
    hearth ask the user before running it; ``timeout`` bounds one run, in seconds.
    """
    if not _NAME.match(name):
        raise ValueError(f"intent name {name!r}: use lower-case letters, digits and _ (start with a letter)")
    if timeout <= 0:
        raise ValueError("timeout must be positive")

    def mark(handler: F) -> F:
        doc = inspect.getdoc(handler) or ""
        parameters = [p for p in inspect.signature(handler).parameters.values() if p.name != "self"]
        if not parameters:
            raise TypeError(f"{handler.__qualname__}: an intent handler takes params (and optionally context)")
        spec = IntentSpec(
            name=name,
            description=description or doc.split("\n\n")[0].strip() or name.replace("_", " "),
            slots=dict(slots or {}),
            examples=tuple(examples),
            permission=permission,
            side_effects=side_effects,
            timeout=timeout,
            handler_name=handler.__name__,
            wants_context=len(parameters) >= 2,
        )
        for example in spec.examples:
            for hole in re.findall(r"{(\w+)}", example):
                if hole not in spec.slots:
                    raise ValueError(f"intent {name!r}: example {example!r} names slot {hole!r}, which is not "
                                     "declared in slots=")
        for slot_name, slot in spec.slots.items():
            follows = getattr(slot, "after", None)
            if follows is not None and not isinstance(spec.slots.get(follows), DateTime):
                raise ValueError(f"intent {name!r}: slot {slot_name!r} has after={follows!r}, which is not a "
                                 "DateTime slot of this intent")
        handler.__hearth_intent__ = spec  # type: ignore[attr-defined]
        return handler

    return mark


class Skill:
    """Base class of every skill. Class attributes are its manifest:

    * ``name``: lower-case id (default: the class name without "Skill", in snake case);
    * ``version``, ``description`` (default: the class docstring's first paragraph);
    * ``permissions``: capabilities it needs, from ``CAPABILITIES``;
    * ``config_schema``: a JSON schema of its settings (what ``context.config`` holds).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0.1.0"
    description: ClassVar[str] = ""
    permissions: ClassVar[tuple[str, ...]] = ()
    config_schema: ClassVar[Mapping[str, Any]] = {}
    _intents: ClassVar[dict[str, IntentSpec]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            base = cls.__name__.removesuffix("Skill") or cls.__name__
            cls.name = re.sub(r"(?<!^)(?=[A-Z])", "_", base).lower()
        if not cls.__dict__.get("description"):
            # the class's own docstring only: an undocumented skill must not read as the base class's
            own = cls.__dict__.get("__doc__")
            cls.description = (inspect.cleandoc(own) if isinstance(own, str) else "").split("\n\n")[0].strip()
        found: dict[str, IntentSpec] = {}
        for klass in reversed(cls.__mro__):
            for attribute in vars(klass).values():
                spec = getattr(attribute, "__hearth_intent__", None)
                if isinstance(spec, IntentSpec):
                    found[spec.name] = spec
        cls._intents = found

    @classmethod
    def intents(cls) -> dict[str, IntentSpec]:
        """This skill's intents by name."""
        return dict(cls._intents)

    def handler(self, intent_name: str) -> Callable[..., Any | Awaitable[Any]]:
        """The bound handler method of an intent."""
        spec = self._intents[intent_name]
        method: Callable[..., Any] = getattr(self, spec.handler_name)
        return method


@dataclass(frozen=True)
class SkillUser:
    """Who the skill acts for."""

    id: int
    name: str
    timezone: str = "UTC"
    roles: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class SkillConversation:
    """Where the request came from: the conversation and its channel."""

    id: str
    channel: str
