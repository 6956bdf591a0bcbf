"""The outbox as the management API (and ``hearth channels outbox``) show it: what an operator may see of a
queued message, and the query that lists them.

An item is described by its metadata only — id, channel, address, conversation, status, attempts, the last
error, when it is due or was sent — never by its payload: that is the text of someone's conversation, which
hearth stores through the ``MessageCodec`` and keeps out of logs and the audit log, and the metadata is
enough to recognise a message (the conversation id leads to it) and to see why it failed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from hearth.errors import InvalidRequest
from hearth.ops.logging import scrub

OUTBOX_STATUSES = ("pending", "sent", "dead")
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
_QUERY_KEYS = ("status", "channel", "limit")


class OutboxItemView(Protocol):
    """One message of the outbox, as the store holds it."""

    @property
    def id(self) -> int: ...
    @property
    def channel(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def conversation_id(self) -> str | None: ...
    @property
    def status(self) -> str: ...  # pending | sent | dead
    @property
    def attempts(self) -> int: ...
    @property
    def next_attempt_at(self) -> datetime: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def platform_id(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def sent_at(self) -> datetime | None: ...


class OutboxListing(Protocol):
    async def list(self, *, status: str | None = None, channel: str | None = None,
                   limit: int = 100) -> Sequence[OutboxItemView]:
        """Messages newest first, optionally of one status or channel."""
        ...


@dataclass(frozen=True, slots=True)
class OutboxAdmin:
    """What the management API needs of the outbox: the stored messages, and the operator's retry, which
    must be the outbox worker's own (it queues a dead message again and wakes the worker, so it is sent
    now rather than at the worker's next look); ``NotFound`` for an unknown id, ``InvalidRequest`` with code
    ``not_dead`` for a message that is not dead."""

    items: OutboxListing
    retry: Callable[[int], Awaitable[OutboxItemView]]


@dataclass(frozen=True, slots=True)
class OutboxQuery:
    status: str | None = None  # None: every status
    channel: str | None = None
    limit: int = DEFAULT_LIMIT


def outbox_query(params: Mapping[str, str]) -> OutboxQuery:
    """``?status=pending|sent|dead|all&channel=NAME&limit=N`` checked; ``InvalidRequest`` naming what is wrong.

    An unknown parameter is refused rather than ignored: a misspelt filter would list everything."""
    unknown = sorted(set(params) - set(_QUERY_KEYS))
    if unknown:
        raise InvalidRequest(f"unknown query parameter(s) {', '.join(unknown)}; known: {', '.join(_QUERY_KEYS)}",
                             code="invalid")
    status = params.get("status", "all")
    if status not in (*OUTBOX_STATUSES, "all"):
        raise InvalidRequest(f"status must be one of {', '.join(OUTBOX_STATUSES)}, all", code="invalid")
    raw_limit = params.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}", code="invalid")
    return OutboxQuery(None if status == "all" else status, params.get("channel") or None, int(raw_limit))


def describe_outbox_item(item: OutboxItemView) -> dict[str, Any]:
    """A message as the operator sees it (never its payload; see the module's docstring). Times are aware
    ``datetime``s, which orjson writes as RFC 3339; ``next_attempt_at`` only for a pending message (for the
    others it is history, not a plan); the last error with anything shaped like a secret masked."""
    return {
        "id": item.id,
        "channel": item.channel,
        "address": item.address,
        "conversation_id": item.conversation_id,
        "status": item.status,
        "attempts": item.attempts,
        "last_error": scrub(item.last_error) if item.last_error else None,
        "next_attempt_at": item.next_attempt_at if item.status == "pending" else None,
        "platform_id": item.platform_id,
        "created_at": item.created_at,
        "sent_at": item.sent_at,
    }
