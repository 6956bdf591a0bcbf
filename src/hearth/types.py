"""The data that flows between hearth's parts: frozen dataclasses, no behaviour beyond pure helpers.

This module imports nothing from the rest of hearth, so every layer can use it.

* ``Actor`` is who is talking; ``Envelope`` is what a channel received; ``Reply`` is what flows back.
* ``ModelMessage`` is typed model content (``SystemContent | UserContent | AssistantContent |
  ToolResultContent``), translated to each provider's wire format at the edge in ``hearth.models``.
* ``ChatRequest``/``ChatChunk`` are the model router's request and streamed answer.
* ``SkillCall``/``SkillResult`` are a tool call and its outcome; an error is a result, not an exception.
* ``Event`` is what audit, metrics and traces subscribe to.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- who and what ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Actor:
    """A hearth user as seen by one request: identity, roles, and the channel identity they used."""

    user_id: int
    name: str
    roles: frozenset[str] = frozenset({"user"})
    channel: str = ""
    identity: str = ""
    timezone: str | None = None

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file that came with a message or goes out with a reply. ``ref`` is a storage key."""

    filename: str
    media_type: str
    size: int
    ref: str


@dataclass(frozen=True, slots=True)
class Button:
    """A choice offered with a reply (rendered as the platform's buttons); ``id`` comes back as the
    envelope's ``action`` when pressed."""

    id: str
    label: str


@dataclass(frozen=True, slots=True)
class Envelope:
    """One inbound message, channel-neutral.

    ``id`` is the platform's own id for the message (a WebSocket client id, Telegram's
    ``update_id``, ...): together with ``channel`` and the sender it is the dedup key.
    ``action`` is the id of a ``Button`` the user pressed, when the message is a button press.
    ``native`` is the platform payload, private to the adapter that made the envelope.
    """

    id: str
    channel: str
    sender: Actor
    text: str
    conversation: str | None = None
    attachments: tuple[Attachment, ...] = ()
    received_at: datetime = field(default_factory=utcnow)
    action: str | None = None
    external_ref: str | None = None
    native: object = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A failure as a client sees it: a stable code and a sentence for the user."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Reply:
    """A piece of the answer to an envelope.

    Deltas have ``final=False`` and carry new text only. The last reply has ``final=True`` and
    carries the full text and the stored ``message_id``, or ``error`` when the turn failed.
    """

    conversation: str
    in_reply_to: str
    text: str
    final: bool = False
    message_id: int | None = None
    error: ErrorInfo | None = None
    attachments: tuple[Attachment, ...] = ()
    buttons: tuple[Button, ...] = ()


# --- model content -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asked for. ``arguments`` is the decoded JSON object."""

    id: str
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool offered to the model; ``parameters`` is a JSON schema of an object.

    ``permission`` is the action a user's role must grant to use it; ``confirm`` marks a tool with side
    effects, which runs only after the user said yes.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    permission: str = ""
    confirm: bool = False


@dataclass(frozen=True, slots=True)
class SystemContent:
    text: str
    role: Literal["system"] = "system"


@dataclass(frozen=True, slots=True)
class UserContent:
    text: str
    role: Literal["user"] = "user"


@dataclass(frozen=True, slots=True)
class AssistantContent:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    role: Literal["assistant"] = "assistant"


@dataclass(frozen=True, slots=True)
class ToolResultContent:
    call_id: str
    name: str
    text: str
    is_error: bool = False
    role: Literal["tool"] = "tool"


ModelMessage = SystemContent | UserContent | AssistantContent | ToolResultContent


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What the router sends to a model. ``model`` overrides the endpoint's configured model."""

    messages: tuple[ModelMessage, ...]
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """A piece of a streamed model answer.

    ``text`` is a delta. Tool calls arrive complete (providers assemble streamed fragments).
    The last chunk has ``done=True`` with ``finish_reason`` and, when the server reports it, ``usage``.
    """

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    done: bool = False
    finish_reason: str | None = None
    usage: Usage | None = None
    endpoint: str = ""


# --- skills and events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SkillCall:
    """A request to run a tool on behalf of ``actor``."""

    id: str
    name: str
    arguments: Mapping[str, Any]
    actor: Actor
    conversation: str


@dataclass(frozen=True, slots=True)
class SkillResult:
    """The outcome of a ``SkillCall``. A failure is a result with ``is_error`` that the model sees.

    ``content`` is for the model (JSON or text); ``display`` is for a person, when hearth answers with
    the result directly (no model involved); empty means ``content``.
    """

    call_id: str
    name: str
    content: str
    is_error: bool = False
    error_code: str | None = None
    display: str = ""

    @property
    def text(self) -> str:
        return self.display or self.content


@dataclass(frozen=True, slots=True)
class IntentMatch:
    """What deterministic routing (commands, templates) found in a message.

    ``params`` are JSON-safe (dates as ISO 8601, durations as ``PT...S``). ``missing`` slots each have a
    question in ``questions``. ``summary`` describes the call in words, for a confirmation. ``reply`` is
    set when the match is answered with text alone (``/calendar`` lists what the skill can do).
    """

    tool: str
    params: Mapping[str, Any]
    confidence: float
    missing: tuple[str, ...] = ()
    questions: Mapping[str, str] = field(default_factory=dict)
    problems: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""
    confirm: bool = False
    permission: str = ""
    reply: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened, for audit, metrics and traces."""

    name: str
    actor: Actor | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=utcnow)


# --- policies as data ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter: the one retry policy, used by the router and outboxes.

    ``attempts`` counts the first try. ``delay(n)`` is the pause before retry ``n`` (1-based).
    """

    attempts: int = 3
    base: float = 0.25
    cap: float = 10.0
    jitter: bool = True

    def delay(self, retry: int, *, hint: float | None = None) -> float:
        """Seconds to wait before retry number ``retry``; a server's ``hint`` (Retry-After) wins."""
        if hint is not None and hint >= 0:
            return min(hint, self.cap)
        ceiling = min(self.cap, self.base * (2 ** max(retry - 1, 0)))
        return random.uniform(ceiling / 2, ceiling) if self.jitter else ceiling
