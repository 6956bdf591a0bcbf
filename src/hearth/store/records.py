"""Rows as the rest of hearth sees them: frozen dataclasses, content already decoded by the codec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Role = Literal["user", "assistant", "tool"]
TurnStatus = Literal["pending", "done", "failed"]


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    name: str
    role: str
    timezone: str | None
    disabled: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: int
    user_id: int
    prefix: str
    secret_hash: str = field(repr=False)
    label: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    id: int
    user_id: int
    channel: str
    external_id: str
    display_name: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    id: str
    user_id: int
    channel: str
    external_ref: str | None
    title: str | None
    summary: str | None
    summary_upto: int | None  # the last summarised turn (its user message id)
    created_at: datetime
    updated_at: datetime
    last_turn: int | None = None  # the last completed turn (its user message id)


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A stored message. User messages carry the turn's state (``status``, ``attempts``, error)."""

    id: int
    conversation_id: str
    role: Role
    content: str
    meta: Mapping[str, Any]
    dedup_key: str | None
    status: TurnStatus | None
    reply_to: int | None
    error_code: str | None
    error_message: str | None
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to append when a turn completes (assistant text, tool calls, tool results)."""

    role: Role
    content: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Accepted:
    """What ``accept_message`` did: the stored user message and whether it was new."""

    message: MessageRecord
    conversation: ConversationRecord
    created: bool
