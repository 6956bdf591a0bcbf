"""What a channel adapter gets from the rest of hearth: an inbox and an authenticator, as protocols.

Channels never import the control plane (DESIGN.md): the composition root hands them objects of these
shapes. A channel turns its platform's payload into an ``Envelope``, submits it, acknowledges the
platform once ``submit`` has returned (the message is then stored), and renders the ``Reply`` stream
in its own format.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from hearth.types import Actor, Button, Envelope, Event, Reply


class Submission(Protocol):
    @property
    def conversation(self) -> str: ...
    @property
    def message_id(self) -> int: ...
    @property
    def created(self) -> bool: ...
    def replies(self) -> AsyncIterator[Reply]: ...


class Inbox(Protocol):
    async def submit(self, envelope: Envelope, *, external_ref: str | None = None) -> Submission:
        """Store the envelope (idempotent on its id) and return the way to follow its answer."""
        ...


class Authenticator(Protocol):
    async def authenticate(self, token: str | None, *, channel: str = "") -> Actor:
        """The actor owning ``token``; raises ``Unauthenticated`` otherwise."""
        ...


@dataclass(frozen=True, slots=True)
class Outbound:
    """A message hearth sends on its own initiative (a reminder, a notification), not as a streamed reply.

    It is already stored in the conversation (``message_id``); the channel delivers it to where the
    conversation lives (``external_ref``: a chat id, a thread).
    """

    conversation: str
    user_id: int
    channel: str
    external_ref: str | None
    text: str
    message_id: int | None = None
    buttons: tuple[Button, ...] = ()


class Deliverer(Protocol):
    async def deliver(self, message: Outbound) -> bool:
        """Hand ``message`` to the platform (or its outbox); False when nobody can receive it now (it
        stays in the conversation's history)."""
        ...


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
