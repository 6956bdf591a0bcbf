"""Messages hearth sends on its own: now, or at a set time, to a conversation on its own channel.

``send`` stores the message in the conversation (so it is in the history whatever happens next) and
hands it to the conversation's channel. ``send_later`` stores it in ``scheduled_messages``; the
``run`` loop sends each when it is due, including those that fell due while hearth was down. Delivery is
at least once: a message is marked sent after it was stored and handed to the channel, so a crash in
between repeats it rather than losing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from hearth.errors import HearthError, InvalidRequest, NotFound
from hearth.gateway.base import Deliverer, Outbound
from hearth.store.records import ConversationRecord, MessageRecord
from hearth.store.skills import ScheduledMessage
from hearth.types import Button, Event, utcnow

from .ports import EventSink

_log = logging.getLogger("hearth.messenger")
MAX_SLEEP = 60.0
MAX_AHEAD = timedelta(days=366 * 5)


class Conversations(Protocol):
    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None: ...
    async def append_notice(self, conversation_id: str, text: str, meta: Mapping[str, Any] | None = None
                            ) -> MessageRecord: ...


class Schedule(Protocol):
    async def schedule(self, *, conversation_id: str, user_id: int, text: str, due_at: datetime,
                       skill: str | None = None) -> int: ...
    async def cancel_scheduled(self, message_id: int, user_id: int) -> bool: ...
    async def scheduled_for(self, user_id: int, *, skill: str | None = None) -> list[ScheduledMessage]: ...
    async def next_due(self) -> datetime | None: ...
    async def due(self, now: datetime, limit: int = 50) -> list[ScheduledMessage]: ...
    async def mark_sent(self, message_id: int) -> None: ...
    async def mark_failed(self, message_id: int) -> None: ...


class Messenger:
    def __init__(self, conversations: Conversations, schedule: Schedule, deliverers: Mapping[str, Deliverer],
                 events: EventSink) -> None:
        self._conversations = conversations
        self._schedule = schedule
        self._deliverers = dict(deliverers)
        self._events = events
        self._wake = asyncio.Event()

    def add_deliverer(self, channel: str, deliverer: Deliverer) -> None:
        self._deliverers[channel] = deliverer

    async def deliver_stored(self, conversation: ConversationRecord, text: str, *, message_id: int | None,
                             buttons: tuple[Button, ...] = ()) -> bool:
        """Hand an answer that is already stored (a turn re-run after a crash) to the conversation's channel."""
        deliverer = self._deliverers.get(conversation.channel)
        if deliverer is None or not text.strip():
            return False
        return await deliverer.deliver(Outbound(conversation.id, conversation.user_id, conversation.channel,
                                                conversation.external_ref, text, message_id, buttons))

    async def send(self, conversation_id: str, text: str, *, skill: str | None = None,
                   buttons: tuple[Button, ...] = ()) -> bool:
        """Store ``text`` in the conversation and deliver it; True if a recipient got it (or its outbox)."""
        if not text.strip():
            raise InvalidRequest("a message needs text")
        conversation = await self._conversations.get_conversation(conversation_id)
        if conversation is None:
            raise NotFound(f"conversation {conversation_id} not found")
        stored = await self._conversations.append_notice(conversation_id, text, {"notice": True, "skill": skill})
        deliverer = self._deliverers.get(conversation.channel)
        delivered = False
        if deliverer is not None:
            delivered = await deliverer.deliver(Outbound(conversation.id, conversation.user_id, conversation.channel,
                                                         conversation.external_ref, text, stored.id, buttons))
        self._events.emit(Event("notice.sent", None, {"channel": conversation.channel, "delivered": delivered,
                                                      "skill": skill}))
        return delivered

    async def send_later(self, conversation_id: str, user_id: int, text: str, at: datetime, *,
                         skill: str | None = None) -> str:
        if at.tzinfo is None:
            raise InvalidRequest("a scheduled message needs a time with a time zone")
        if at > utcnow() + MAX_AHEAD:
            raise InvalidRequest("that is too far ahead (at most five years)")
        scheduled_id = await self._schedule.schedule(conversation_id=conversation_id, user_id=user_id, text=text,
                                                     due_at=at, skill=skill)
        self._wake.set()
        return str(scheduled_id)

    async def cancel(self, scheduled_id: str, user_id: int) -> bool:
        if not scheduled_id.isdigit():
            return False
        return await self._schedule.cancel_scheduled(int(scheduled_id), user_id)

    async def scheduled(self, user_id: int, skill: str | None = None) -> list[Mapping[str, Any]]:
        return [{"id": str(m.id), "text": m.text, "at": m.due_at}
                for m in await self._schedule.scheduled_for(user_id, skill=skill)]

    async def deliver_due(self) -> int:
        """Send every message that is due; returns how many went out."""
        sent = 0
        for message in await self._schedule.due(utcnow()):
            try:
                await self.send(message.conversation_id, message.text, skill=message.skill)
            except NotFound:
                await self._schedule.mark_failed(message.id)  # the conversation was deleted
                continue
            except HearthError as exc:
                _log.warning("scheduled message %s not sent yet: %s", message.id, exc)
                continue
            await self._schedule.mark_sent(message.id)
            sent += 1
        return sent

    async def run(self) -> None:
        """Deliver scheduled messages as they fall due, until cancelled."""
        while True:
            try:
                await self.deliver_due()
                upcoming = await self._schedule.next_due()
            except HearthError as exc:
                _log.warning("scheduled messages: %s", exc)
                upcoming = None
            delay = MAX_SLEEP if upcoming is None else max(0.0, (upcoming - utcnow()).total_seconds())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(delay, MAX_SLEEP))
