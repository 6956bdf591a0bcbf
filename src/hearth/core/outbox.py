"""The outbox worker: sends what the chat channels queued, at the platforms' pace, across restarts.

A channel never calls its platform's send API on the path of a turn. It queues the rendered messages
(``Outbox.put``: stored before anything is sent, so a crash after that loses nothing) and the worker
sends them: per address in order, retrying failures with backoff. A platform's own wait wins over the
backoff: Telegram's ``retry_after`` and a 429's ``Retry-After`` postpone the message — or, when the limit
is the whole bot's, every pending message of that channel — for exactly that long, without using up an
attempt. A message that fails ``policy.attempts`` times, or fails in a way retrying cannot help, becomes
``dead``: it stays listed (``hearth channels outbox --dead``, ``GET /admin/outbox?status=dead``) until an
operator sends it again with ``retry``.

Delivery is at least once: a message is marked sent after the platform accepted it, so a crash between
the two sends it again on restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from hearth.errors import DeliveryError, HearthError
from hearth.store.channels import OutboxItem
from hearth.types import Event, RetryPolicy, utcnow

from .ports import EventSink

_log = logging.getLogger("hearth.outbox")

OUTBOX_RETRY = RetryPolicy(attempts=8, base=2.0, cap=600.0)
MAX_SLEEP = 30.0
MAX_PLATFORM_WAIT = 3600.0  # a longer retry_after is treated as this: it is a platform bug or a ban


class Sender(Protocol):
    """A platform's send API for one channel (the channel adapter implements it)."""

    async def send(self, address: str, payload: Mapping[str, Any]) -> str | None:
        """Send one message; the platform's id for it. Raises ``DeliveryError`` when the platform refused."""
        ...


class OutboxStore(Protocol):
    async def enqueue(self, channel: str, address: str, payloads: list[Mapping[str, Any]], *,
                      conversation_id: str | None = None) -> list[int]: ...
    async def due(self, now: datetime, limit: int = 50) -> list[OutboxItem]: ...
    async def next_attempt(self) -> datetime | None: ...
    async def mark_sent(self, item_id: int, platform_id: str | None) -> None: ...
    async def mark_failed(self, item_id: int, error: str, *, retry_at: datetime | None) -> None: ...
    async def postpone(self, item_id: int, until: datetime) -> None: ...
    async def postpone_channel(self, channel: str, until: datetime) -> None: ...
    async def list(self, *, status: str | None = None, channel: str | None = None,
                   limit: int = 100) -> list[OutboxItem]: ...
    async def retry(self, item_id: int) -> OutboxItem: ...


class Outbox:
    """Queue messages for the platforms and run the loop that sends them."""

    def __init__(self, store: OutboxStore, events: EventSink, *, policy: RetryPolicy = OUTBOX_RETRY) -> None:
        self._store = store
        self._events = events
        self._policy = policy
        self._senders: dict[str, Sender] = {}
        self._wake = asyncio.Event()

    def add_sender(self, channel: str, sender: Sender) -> None:
        self._senders[channel] = sender

    async def put(self, channel: str, address: str, payloads: Sequence[Mapping[str, Any]], *,
                  conversation_id: str | None = None) -> list[int]:
        """Store ``payloads`` for ``address`` (sent in this order) and wake the loop; their ids."""
        ids = await self._store.enqueue(channel, address, list(payloads), conversation_id=conversation_id)
        self._wake.set()
        return ids

    async def retry(self, item_id: int) -> OutboxItem:
        """Send a dead message again (the operator's retry)."""
        item = await self._store.retry(item_id)
        self._events.emit(Event("outbox.retried", None, {"id": item_id, "channel": item.channel}))
        self._wake.set()
        return item

    async def dead(self, limit: int = 100) -> list[OutboxItem]:
        return await self._store.list(status="dead", limit=limit)

    async def run(self) -> None:
        """Send due messages until cancelled; sleeps until the next is due or ``put`` wakes it."""
        while True:
            try:
                sent = await self.run_once()
            except HearthError as exc:  # the database is away: try again shortly
                _log.warning("outbox: %s", exc)
                sent = 0
            if sent:
                continue
            self._wake.clear()
            nxt = None
            with contextlib.suppress(HearthError):
                nxt = await self._store.next_attempt()
            wait = MAX_SLEEP if nxt is None else max(0.0, min(MAX_SLEEP, (nxt - utcnow()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def run_once(self) -> int:
        """Try every message that is due now, once; how many were tried."""
        items = await self._store.due(utcnow())
        held: set[str] = set()  # channels a platform-wide limit postponed in this pass
        blocked: set[tuple[str, str]] = set()  # addresses whose earlier message just failed: keep the order
        tried = 0
        for item in items:
            if item.channel in held or (item.channel, item.address) in blocked:
                continue
            tried += 1
            outcome = await self._send(item)
            if outcome == "held":
                held.add(item.channel)
            elif outcome == "failed":
                blocked.add((item.channel, item.address))
        return tried

    async def _send(self, item: OutboxItem) -> str:
        sender = self._senders.get(item.channel)
        if sender is None:
            return await self._failed(item, DeliveryError(f"the {item.channel} channel is not configured"))
        try:
            platform_id = await sender.send(item.address, item.payload)
        except DeliveryError as exc:
            return await self._failed(item, exc)
        except Exception as exc:  # a bug in an adapter must not stop the loop
            _log.exception("outbox: the %s channel failed to send message %d", item.channel, item.id)
            return await self._failed(item, DeliveryError(f"{type(exc).__name__}: {exc}"))
        await self._store.mark_sent(item.id, platform_id)
        self._events.emit(Event("outbox.sent", None, {"channel": item.channel, "id": item.id,
                                                      "attempts": item.attempts + 1}))
        return "sent"

    async def _failed(self, item: OutboxItem, exc: DeliveryError) -> str:
        """Record the failure; "held" when the whole channel must wait, else "failed"."""
        now = utcnow()
        error = str(exc)
        if exc.retry_after is not None and not exc.permanent:
            until = now + timedelta(seconds=min(max(exc.retry_after, 0.0), MAX_PLATFORM_WAIT))
            if exc.channel_wide:
                await self._store.postpone_channel(item.channel, until)
            else:
                await self._store.postpone(item.id, until)
            _log.info("outbox: %s asks to wait %.1fs before message %d", item.channel, exc.retry_after, item.id)
            self._events.emit(Event("outbox.rate_limited", None, {"channel": item.channel, "id": item.id,
                                                                  "retry_after": exc.retry_after}))
            return "held" if exc.channel_wide else "failed"
        attempts = item.attempts + 1
        if exc.permanent or attempts >= self._policy.attempts:
            await self._store.mark_failed(item.id, error, retry_at=None)
            _log.warning("outbox: message %d to %s:%s is dead after %d attempt(s): %s", item.id, item.channel,
                         item.address, attempts, error)
            self._events.emit(Event("outbox.dead", None, {"channel": item.channel, "id": item.id,
                                                          "attempts": attempts, "error": error[:200]}))
            return "failed"
        retry_at = now + timedelta(seconds=self._policy.delay(attempts))
        await self._store.mark_failed(item.id, error, retry_at=retry_at)
        self._events.emit(Event("outbox.retry", None, {"channel": item.channel, "id": item.id,
                                                       "attempts": attempts}))
        return "failed"
