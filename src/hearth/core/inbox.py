"""The inbox: nothing accepted is lost, nothing is answered twice.

``Inbox.submit`` stores the message (with the platform's id as the dedup key) before it returns, so a
channel acknowledges only what is on disk. The turn then runs in a background task owned by the inbox,
serialised per conversation, and its replies are published to whoever listens (a WebSocket that
dropped can come back and pick up the stream, or the stored answer once it is done). The answer and the
turn's outcome are stored in one transaction.

A sender that retries with an id seen before gets the stored answer (or the stored failure, or the
running stream) instead of a second turn. At start-up ``recover`` re-runs the turns a crash
interrupted; a turn interrupted ``turn_attempts`` times is marked failed with a message the user sees.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

from hearth.errors import HearthError, ModelUnavailable, StorageError
from hearth.settings import AgentSettings
from hearth.store.records import ConversationRecord, MessageRecord
from hearth.types import Actor, Envelope, ErrorInfo, Event, Reply

from .agent import Agent, Turn
from .ports import ConversationStore, EventSink, LockProvider, UserStore

_log = logging.getLogger("hearth.inbox")

INTERRUPTED = ErrorInfo(
    "interrupted",
    "The assistant restarted several times while answering this message, so it gave up. "
    "Please send it again.",
)
INTERNAL = ErrorInfo("internal", "Something went wrong on the assistant's side; the operator has been told.")


class TurnStream:
    """Fan-out of one turn's replies to any number of listeners, late ones included."""

    def __init__(self, conversation: str, in_reply_to: str) -> None:
        self.conversation = conversation
        self.in_reply_to = in_reply_to
        self.text = ""
        self.final: Reply | None = None
        self._listeners: list[asyncio.Queue[Reply]] = []

    @classmethod
    def finished(cls, reply: Reply) -> TurnStream:
        stream = cls(reply.conversation, reply.in_reply_to)
        stream.final = reply
        return stream

    def publish(self, reply: Reply) -> None:
        if reply.final:
            self.final = reply
        else:
            self.text += reply.text
        for queue in self._listeners:
            queue.put_nowait(reply)

    async def replies(self) -> AsyncGenerator[Reply, None]:
        """Text so far as one delta, then new deltas, then the final reply."""
        if self.final is not None:
            yield self.final
            return
        queue: asyncio.Queue[Reply] = asyncio.Queue()
        snapshot = self.text
        self._listeners.append(queue)
        try:
            if snapshot:
                yield Reply(self.conversation, self.in_reply_to, snapshot)
            while True:
                reply = await queue.get()
                yield reply
                if reply.final:
                    return
        finally:
            self._listeners.remove(queue)


@dataclass(frozen=True, slots=True)
class Submission:
    """An accepted message: where it went and how to follow its answer."""

    conversation: str
    message_id: int
    created: bool
    stream: TurnStream

    def replies(self) -> AsyncGenerator[Reply, None]:
        return self.stream.replies()


def dedup_key(envelope: Envelope) -> str:
    return f"{envelope.channel}:{envelope.sender.user_id}:{envelope.id}"


class Inbox:
    def __init__(
        self,
        conversations: ConversationStore,
        users: UserStore,
        agent: Agent,
        locks: LockProvider,
        events: EventSink,
        settings: AgentSettings,
    ) -> None:
        self._store = conversations
        self._users = users
        self._agent = agent
        self._locks = locks
        self._events = events
        self._settings = settings
        self._running: dict[int, tuple[TurnStream, asyncio.Task[None]]] = {}
        # who hears the answer of a turn re-run after a crash, when nobody is listening for it (chat platforms)
        self.on_recovered: Callable[[ConversationRecord, Reply], Awaitable[None]] | None = None
        self._followers: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def running(self) -> int:
        return len(self._running)

    async def submit(self, envelope: Envelope, *, external_ref: str | None = None) -> Submission:
        """Store ``envelope`` (or find it stored) and start or follow its turn.

        Raises ``NotFound`` for a conversation that is not the sender's, ``StorageError`` when the
        message could not be stored (the channel must then not acknowledge it).
        """
        if self._closing:
            raise StorageError("hearth is shutting down", user_message="The assistant is restarting; "
                               "please send your message again in a moment.")
        accepted = await self._store.accept_message(
            conversation_id=envelope.conversation, user_id=envelope.sender.user_id, channel=envelope.channel,
            external_ref=external_ref, dedup_key=dedup_key(envelope), text=stored_text(envelope),
            meta={"channel": envelope.channel, "envelope_id": envelope.id, "identity": envelope.sender.identity,
                  **({"attachments": [a.ref for a in envelope.attachments]} if envelope.attachments else {})},
            attempts=1,  # the turn starts right away: its first attempt is counted with the message
        )
        message, conversation = accepted.message, accepted.conversation
        if accepted.created:
            self._events.emit(Event("turn.accepted", envelope.sender, {
                "channel": envelope.channel, "conversation": conversation.id}))
            stream = self._start(envelope, conversation, message, counted=True)
        else:
            stream = await self._existing(envelope, conversation, message)
        return Submission(conversation.id, message.id, accepted.created, stream)

    async def _existing(
        self, envelope: Envelope, conversation: ConversationRecord, message: MessageRecord,
    ) -> TurnStream:
        running = self._running.get(message.id)
        if running is not None:
            return running[0]
        if message.status == "done":
            stored = await self._store.reply_for(message.id)
            text = "" if stored is None else str(stored.meta.get("reply", stored.content))
            return TurnStream.finished(Reply(conversation.id, envelope.id, text, final=True,
                                             message_id=None if stored is None else stored.id))
        if message.status == "failed":
            error = ErrorInfo(message.error_code or "failed", message.error_message or INTERNAL.message)
            return TurnStream.finished(Reply(conversation.id, envelope.id, "", final=True, error=error))
        return self._start(envelope, conversation, message)

    def _start(self, envelope: Envelope, conversation: ConversationRecord, message: MessageRecord,
               *, counted: bool = False) -> TurnStream:
        stream = TurnStream(conversation.id, envelope.id)
        task = asyncio.create_task(self._run(Turn(envelope, conversation, message), stream, counted),
                                   name=f"turn-{message.id}")
        self._running[message.id] = (stream, task)
        task.add_done_callback(lambda _: self._running.pop(message.id, None))
        return stream

    async def _run(self, turn: Turn, stream: TurnStream, counted: bool) -> None:
        envelope, message = turn.envelope, turn.message
        started = time.monotonic()
        async with self._locks.lock(turn.conversation.id):
            try:
                if not counted:
                    await self._store.start_attempt(message.id)
                async with aclosing(self._agent.handle(turn)) as replies:
                    async for reply in replies:
                        stream.publish(reply)
                stored = await self._store.complete_turn(message.id, turn.produced)
                self._agent.completed(turn, stored)
            except HearthError as exc:
                await self._fail(turn, stream, ErrorInfo(exc.code, exc.user_message), exc)
                return
            except asyncio.CancelledError:
                # shutdown: the message stays pending and is recovered at the next start
                raise
            except Exception as exc:
                _log.exception("turn %s (message %s) crashed", envelope.id, message.id)
                await self._fail(turn, stream, INTERNAL, exc)
                return
        reply_id = next((m.id for m in reversed(stored) if m.role == "assistant"), None)
        stream.publish(Reply(turn.conversation.id, envelope.id, turn.text, final=True, message_id=reply_id,
                             buttons=turn.buttons))
        self._events.emit(Event("turn.completed", envelope.sender, {
            "channel": envelope.channel, "conversation": turn.conversation.id,
            "seconds": time.monotonic() - started}))

    async def _fail(self, turn: Turn, stream: TurnStream, error: ErrorInfo, exc: BaseException) -> None:
        envelope = turn.envelope
        try:
            await self._store.fail_turn(turn.message.id, error.code, error.message)
        except HearthError:
            _log.exception("could not record the failure of message %s", turn.message.id)
        if isinstance(exc, ModelUnavailable):
            self._events.emit(Event("model.unavailable", envelope.sender, {
                "conversation": turn.conversation.id, "error": error.code, "detail": str(exc)}))
        self._events.emit(Event("turn.failed", envelope.sender, {
            "channel": envelope.channel, "conversation": turn.conversation.id, "error": error.code}))
        _log.warning("turn %s failed: %s (%s)", envelope.id, error.code, exc)
        stream.publish(Reply(turn.conversation.id, envelope.id, "", final=True, error=error))

    async def recover(self) -> int:
        """Re-run turns a crash interrupted; returns how many were restarted."""
        restarted = 0
        for message in await self._store.pending_turns():
            if message.id in self._running:
                continue
            conversation = await self._store.get_conversation(message.conversation_id)
            if conversation is None:
                continue
            user = await self._users.get_user(conversation.user_id)
            envelope_id = str(message.meta.get("envelope_id", message.id))
            if user is None or user.disabled:
                await self._store.fail_turn(message.id, "forbidden", "This account can no longer send messages.")
                continue
            if message.attempts >= self._settings.turn_attempts:
                await self._store.fail_turn(message.id, INTERRUPTED.code, INTERRUPTED.message)
                self._events.emit(Event("turn.failed", None, {
                    "conversation": conversation.id, "error": INTERRUPTED.code}))
                continue
            actor = Actor(user.id, user.name, frozenset({user.role}), channel=str(message.meta.get("channel", "")),
                          identity=str(message.meta.get("identity", "")), timezone=user.timezone)
            envelope = Envelope(id=envelope_id, channel=actor.channel or conversation.channel, sender=actor,
                                text=message.content, conversation=conversation.id,
                                received_at=message.created_at)
            stream = self._start(envelope, conversation, message)
            if self.on_recovered is not None:
                follower = asyncio.create_task(self._follow(conversation, stream), name=f"recovered-{message.id}")
                self._followers.add(follower)
                follower.add_done_callback(self._followers.discard)
            restarted += 1
        if restarted:
            self._events.emit(Event("turn.recovered", None, {"count": restarted}))
        return restarted

    async def _follow(self, conversation: ConversationRecord, stream: TurnStream) -> None:
        final: Reply | None = None
        async for reply in stream.replies():
            if reply.final:
                final = reply
        if final is not None and self.on_recovered is not None:
            try:
                await self.on_recovered(conversation, final)
            except HearthError as exc:
                _log.warning("the answer of a recovered turn could not be handed on: %s", exc)

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting; give running turns ``grace`` seconds, then cancel (they stay pending)."""
        self._closing = True
        tasks = [task for _, task in self._running.values()]
        if tasks:
            _, still_running = await asyncio.wait(tasks, timeout=grace)
            for task in still_running:
                task.cancel()
            if still_running:
                await asyncio.wait(still_running, timeout=2.0)
        # followers of recovered turns hand finished answers on; one whose turn was cancelled has nothing to hand
        followers = set(self._followers)
        if followers:
            _, waiting = await asyncio.wait(followers, timeout=2.0)
            for follower in waiting:
                follower.cancel()


def stored_text(envelope: Envelope) -> str:
    """The message as it is kept and shown to the model: its text, then one line per attached file, so
    that the model (and later turns' history) knows which files came with it and can read them with the
    files skill."""
    if not envelope.attachments:
        return envelope.text
    lines = [f"[attached file {a.filename!r} ({a.media_type}, {a.size} bytes), file id {a.ref}]"
             for a in envelope.attachments]
    return "\n".join([envelope.text, *lines]) if envelope.text else "\n".join(lines)
