"""What every chat-platform channel does the same way, whatever the platform.

A platform adapter (Telegram, Slack, WhatsApp) verifies the request, turns the platform's payload into
``Inbound`` messages and hands each to ``PlatformChannel.receive``. From there on it is common work:

1. **Once only** — the platform's id of the delivery is recorded; a redelivery (a webhook retried after
   a timeout, Slack's ``X-Slack-Retry-Num``) is recognised and dropped.
2. **Who is it** — the sender's platform account is mapped to a hearth user by the channel's policy
   (``pairing``, ``allowlist`` or ``open``); an unknown sender gets a pairing code or nothing. A pairing
   code is given only in a private chat: in a group or a channel, where everyone would read it, the
   sender is asked to write to the bot privately instead.
3. **Stored before answered** — a text message is submitted to the inbox (stored) before the webhook
   answers; files are fetched from the platform and handed to the files skill first, in the background,
   so that the webhook still answers at once.
4. **The answer** — the turn's final reply is rendered in the platform's dialect and put in the outbox,
   which sends it at the platform's pace across restarts. A typing indicator runs while the model works:
   the channel's ``typing(address, message_id)`` hook is called as the turn starts and every
   ``typing_every`` seconds until it ends, with the platform's id of the message being answered (WhatsApp
   shows "typing…" for a message, Telegram for a chat). A failing or slow hook never holds up the answer.

Messages hearth sends on its own (reminders) arrive through ``deliver`` and take the same road out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hearth.errors import HearthError, InvalidRequest
from hearth.gateway.base import EventSink, Inbox, Outbound
from hearth.gateway.files_api import StoredFile
from hearth.types import Actor, Attachment, Button, Envelope, Event, Reply

_log = logging.getLogger("hearth.channels")
TYPING_EVERY = 4.0  # Telegram's chat action lasts 5 s


@dataclass(frozen=True, slots=True)
class InboundFile:
    """A file that came with a message; ``fetch`` downloads it from the platform."""

    filename: str
    media_type: str | None
    size: int | None
    fetch: Callable[[], Awaitable[bytes]] = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message from a platform, already verified and parsed.

    ``delivery_id`` is the platform's id of this delivery (the dedup key); ``address`` is where replies go
    and names the conversation (a chat id, ``channel:thread``, a phone number); ``action`` is the id of a
    button the sender pressed. ``message_id`` is the platform's id of the message itself, for calls about it
    (WhatsApp's typing indicator), when the platform has one; ``private`` says whether only the sender and
    the bot read the conversation (a private chat, a DM), not a group or a channel.
    """

    delivery_id: str
    sender_id: str
    sender_name: str | None
    address: str
    text: str
    action: str | None = None
    files: tuple[InboundFile, ...] = ()
    native: object = field(default=None, repr=False, compare=False)
    message_id: str | None = None
    private: bool = True


class Receipts(Protocol):
    async def first_receipt(self, channel: str, external_id: str) -> bool: ...
    async def forget_receipt(self, channel: str, external_id: str) -> None: ...


class Refused(Protocol):
    """An unknown sender who may not talk yet; ``text`` is what they are told (None: nothing)."""

    @property
    def text(self) -> str | None: ...


class Identities(Protocol):
    async def resolve(self, channel: str, external_id: str, display_name: str | None, *, policy: str,
                      allowlist: frozenset[str] = frozenset(), private: bool = True) -> Actor | Refused: ...


Typing = Callable[[str, str | None], Awaitable[None]]
"""Shows that an answer is on its way: ``typing(address, message_id)``, ``message_id`` being the platform's id
of the message answered (``Inbound.message_id``, None when there is none)."""


class OutboxPort(Protocol):
    async def put(self, channel: str, address: str, payloads: Sequence[Mapping[str, Any]], *,
                  conversation_id: str | None = None) -> list[int]: ...


class FileSink(Protocol):
    """What a channel needs of ``files_api.FileService``: the size limit, and taking a file in."""

    @property
    def max_bytes(self) -> int: ...
    async def ingest(self, user_id: int, filename: str, data: bytes, *, conversation_id: str | None = None,
                     claimed_type: str | None = None) -> StoredFile: ...


class Renderer(Protocol):
    """The platform's dialect: a reply's text and buttons as the payloads of its send API."""

    def render(self, text: str, buttons: Sequence[Button]) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class SenderRules:
    policy: str = "pairing"
    allowlist: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ChannelServices:
    """What every chat-platform channel uses of hearth, wired once by the composition root: the inbox that
    takes messages, the identities that map senders to users, the delivery receipts, the outbox, the
    files intake (None: attachments are listed but not kept) and the event bus."""

    inbox: Inbox
    identities: Identities
    receipts: Receipts
    outbox: OutboxPort
    files: FileSink | None
    events: EventSink


class PlatformChannel:
    """The common half of a chat-platform channel (see the module docstring)."""

    def __init__(self, name: str, services: ChannelServices, *, renderer: Renderer, rules: SenderRules,
                 typing: Typing | None = None, typing_every: float = TYPING_EVERY) -> None:
        self.name = name
        self._inbox = services.inbox
        self._identities = services.identities
        self._receipts = services.receipts
        self._outbox = services.outbox
        self._files = services.files
        self._events = services.events
        self._renderer = renderer
        self._rules = rules
        self._typing = typing
        self._typing_every = typing_every
        self._tasks: set[asyncio.Task[None]] = set()

    def refused(self, reason: str) -> None:
        """Record a webhook refused before it was read (``signature``: a bad signature or secret). Audited."""
        self._events.emit(Event("channel.refused", None, {"channel": self.name, "reason": reason}))
    async def receive(self, message: Inbound) -> bool:
        """Take one verified message; False when it was a redelivery (already taken). Raises ``HearthError``
        when it could not be stored: the platform should then get an error and deliver it again."""
        if not await self._receipts.first_receipt(self.name, message.delivery_id):
            self._events.emit(Event("channel.redelivery", None, {"channel": self.name}))
            return False
        try:
            await self._take(message)
        except BaseException:
            # not taken after all: the platform's redelivery must be processed, not dropped as a duplicate
            with contextlib.suppress(HearthError):
                await self._receipts.forget_receipt(self.name, message.delivery_id)
            raise
        return True

    async def _take(self, message: Inbound) -> None:
        resolved = await self._identities.resolve(self.name, message.sender_id, message.sender_name,
                                                  policy=self._rules.policy, allowlist=self._rules.allowlist,
                                                  private=message.private)
        if not isinstance(resolved, Actor):
            if resolved.text:
                await self._outbox.put(self.name, message.address, self._renderer.render(resolved.text, ()))
            return
        if message.files:
            self._spawn(self._with_files(resolved, message))
        else:
            await self._submit(resolved, message, ())

    async def _with_files(self, actor: Actor, message: Inbound) -> None:
        attachments: list[Attachment] = []
        problems: list[str] = []
        for file in message.files:
            try:
                attachments.append(await self._ingest(actor, file))
            except HearthError as exc:
                problems.append(f"{file.filename}: {exc}")
        if problems:
            text = "I could not take " + "; ".join(problems)
            await self._outbox.put(self.name, message.address, self._renderer.render(text, ()))
        if attachments or message.text.strip():
            try:
                await self._submit(actor, message, tuple(attachments))
            except HearthError as exc:
                _log.warning("%s: a message with files could not be stored: %s", self.name, exc)

    async def _ingest(self, actor: Actor, file: InboundFile) -> Attachment:
        if self._files is None:
            raise InvalidRequest("files are not accepted here", code="unsupported_type")
        if file.size is not None and file.size > self._files.max_bytes:
            raise InvalidRequest(f"it is larger than the {self._files.max_bytes // (1024 * 1024)} MB limit",
                                 code="too_large")
        data = await file.fetch()
        stored = await self._files.ingest(actor.user_id, file.filename, data, claimed_type=file.media_type)
        return Attachment(stored.filename, stored.media_type, stored.size, stored.id)

    async def _submit(self, actor: Actor, message: Inbound, attachments: tuple[Attachment, ...]) -> None:
        envelope = Envelope(id=message.delivery_id, channel=self.name, sender=actor, text=message.text,
                            attachments=attachments, action=message.action, native=message.native)
        submission = await self._inbox.submit(envelope, external_ref=message.address)
        self._spawn(self._answer(message, submission.conversation, submission.replies()))

    async def _answer(self, message: Inbound, conversation: str, replies: Any) -> None:
        address = message.address
        typing = (asyncio.create_task(self._keep_typing(address, message.message_id))
                  if self._typing is not None else None)
        final: Reply | None = None
        try:
            async for reply in replies:
                if reply.final:
                    final = reply
        except HearthError as exc:
            _log.warning("%s: the turn for %s failed: %s", self.name, address, exc)
        finally:
            if typing is not None:
                typing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await typing
        if final is None:
            return
        text = final.text if final.error is None else (final.error.message or final.text)
        payloads = self._renderer.render(text or "…", final.buttons)
        await self._outbox.put(self.name, address, payloads, conversation_id=conversation)

    async def _keep_typing(self, address: str, message_id: str | None) -> None:
        """Runs beside the turn and is cancelled when it ends, a call in flight included: a slow platform
        cannot hold up the answer."""
        assert self._typing is not None
        while True:
            try:
                await self._typing(address, message_id)
            except Exception as exc:  # a typing indicator is a courtesy: never worth a failed turn
                _log.debug("%s: typing indicator failed: %s", self.name, exc)
            await asyncio.sleep(self._typing_every)

    async def deliver(self, message: Outbound) -> bool:
        """A message hearth sends on its own, to the conversation's place on this platform."""
        if not message.external_ref:
            return False
        await self._outbox.put(self.name, message.external_ref, self._renderer.render(message.text, message.buttons),
                               conversation_id=message.conversation)
        return True

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, grace: float = 5.0) -> None:
        """Let answers being prepared reach the outbox, for up to ``grace`` seconds."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
