"""The ``/ws`` endpoint: authenticate, then stream answers to message frames (protocol in ``protocol``).

Each message frame is handled in its own task, so a client may have several messages in flight (up to
``MAX_IN_FLIGHT``); frames for one conversation are still answered in order because the inbox runs one
turn per conversation at a time. When the socket drops, the turns go on and their answers are stored:
the client reconnects and sends the same ids again to get them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any, Protocol

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from hearth.errors import HearthError, InvalidRequest, StorageError, Unauthenticated
from hearth.gateway.base import Authenticator, EventSink, Inbox, Outbound, bearer_token
from hearth.gateway.files_api import StoredFile
from hearth.types import Actor, Attachment, Envelope, Event

from .hub import Hub
from .protocol import (
    CLOSE_UNAUTHENTICATED,
    AuthFrame,
    MessageFrame,
    PingFrame,
    encode,
    frame_id,
    parse_frame,
)

_log = logging.getLogger("hearth.gateway.websocket")

CHANNEL = "websocket"
AUTH_TIMEOUT = 10.0
MAX_IN_FLIGHT = 16


class FileLookup(Protocol):
    async def get(self, user_id: int, file_id: str) -> StoredFile:
        """The user's file (uploaded with ``POST /v1/files``); ``NotFound`` for another user's."""
        ...


class WebSocketChannel:
    """An ASGI app for ``/ws``."""

    def __init__(self, inbox: Inbox, auth: Authenticator, *, max_message_bytes: int = 65536,
                 events: EventSink | None = None, hub: Hub | None = None, files: FileLookup | None = None) -> None:
        self._inbox = inbox
        self._auth = auth
        self._files = files
        self._max_bytes = max_message_bytes
        self._events = events
        self.hub = hub or Hub()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ws = WebSocket(scope, receive, send)
        await ws.accept()
        actor = await self._authenticate(ws)
        if actor is None:
            return
        self._emit("ws.connected", actor)
        session = _Session(ws, actor, self._inbox, self._max_bytes, send, self._files)
        self.hub.add(actor.user_id, session.send)
        try:
            await session.run()
        finally:
            self.hub.remove(actor.user_id, session.send)
            self._emit("ws.closed", actor)

    async def deliver(self, message: Outbound) -> bool:
        """Push a message hearth sends on its own to the user's open sessions (``notice`` frames)."""
        return await self.hub.deliver(message)

    async def _authenticate(self, ws: WebSocket) -> Actor | None:
        token = bearer_token(ws.headers.get("authorization"))
        try:
            if token is None:
                try:
                    async with asyncio.timeout(AUTH_TIMEOUT):
                        message = await ws.receive()
                except TimeoutError:
                    raise Unauthenticated("no auth frame within 10 s") from None
                if message["type"] == "websocket.disconnect":
                    return None
                raw = message.get("text") if message.get("text") is not None else message.get("bytes")
                try:
                    frame = parse_frame(raw or "", self._max_bytes)
                except InvalidRequest as exc:
                    raise Unauthenticated(f"first frame must be an auth frame ({exc})") from None
                if not isinstance(frame, AuthFrame):
                    raise Unauthenticated("first frame must be {\"type\": \"auth\", \"token\": ...}")
                token = frame.token
            actor = await self._auth.authenticate(token, channel=CHANNEL)
        except Unauthenticated as exc:
            with contextlib.suppress(Exception):
                await ws.send_text(encode({"type": "error", "id": None, "code": exc.code, "message": str(exc)}))
                await ws.close(CLOSE_UNAUTHENTICATED, reason="unauthenticated")
            return None
        await ws.send_text(encode({"type": "ready", "user": actor.name}))
        return actor

    def _emit(self, name: str, actor: Actor) -> None:
        if self._events is not None:
            self._events.emit(Event(name, actor, {"channel": CHANNEL}))


class _Session:
    def __init__(self, ws: WebSocket, actor: Actor, inbox: Inbox, max_bytes: int, raw_send: Send,
                 files: FileLookup | None = None) -> None:
        self.ws = ws
        self.files = files
        self.raw_send = raw_send
        self.actor = actor
        self.inbox = inbox
        self.max_bytes = max_bytes
        self.tasks: set[asyncio.Task[None]] = set()
        self.send_lock = asyncio.Lock()
        self.open = True

    async def run(self) -> None:
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text")
                if raw is None:
                    raw = message.get("bytes") or b""
                await self._on_frame(raw)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.open = False
            for task in self.tasks:
                task.cancel()  # the turns themselves go on inside the inbox
            if self.tasks:
                await asyncio.wait(self.tasks, timeout=2.0)

    async def _on_frame(self, raw: str | bytes) -> None:
        try:
            frame = parse_frame(raw, self.max_bytes)
        except InvalidRequest as exc:
            client_id = frame_id(raw) if exc.code != "too_large" else None
            await self.send({"type": "error", "id": client_id, "code": exc.code, "message": str(exc)})
            return
        if isinstance(frame, PingFrame):
            pong: dict[str, Any] = {"type": "pong"}
            if frame.id is not None:
                pong["id"] = frame.id
            await self.send(pong)
        elif isinstance(frame, AuthFrame):
            await self.send({"type": "error", "id": None, "code": "already_authenticated",
                             "message": "this socket is already authenticated"})
        elif len(self.tasks) >= MAX_IN_FLIGHT:
            await self.send({"type": "error", "id": frame.id, "code": "too_many_in_flight",
                             "message": f"at most {MAX_IN_FLIGHT} messages may be in flight per socket"})
        else:
            task = asyncio.create_task(self._answer(frame))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _attachments(self, file_ids: tuple[str, ...]) -> tuple[Attachment, ...]:
        if not file_ids:
            return ()
        if self.files is None:
            raise InvalidRequest("this server takes no attachments over the WebSocket", code="bad_frame")
        records = [await self.files.get(self.actor.user_id, file_id) for file_id in file_ids]
        return tuple(Attachment(r.filename, r.media_type, r.size, r.id) for r in records)

    async def _answer(self, frame: MessageFrame) -> None:
        try:
            envelope = Envelope(id=str(frame.id), channel=CHANNEL, sender=self.actor, text=frame.text,
                                conversation=frame.conversation, action=frame.action,
                                attachments=await self._attachments(frame.attachments))
            submission = await self.inbox.submit(envelope)
        except HearthError as exc:
            await self.send({"type": "error", "id": frame.id, "code": exc.code, "message": exc.user_message})
            return
        except Exception:
            ref = uuid.uuid4().hex[:12]
            _log.exception("could not accept message %s (ref %s)", frame.id, ref)
            error = StorageError()
            await self.send({"type": "error", "id": frame.id, "code": error.code,
                             "message": f"{error.user_message} (ref {ref})"})
            return
        await self.send({"type": "ack", "id": frame.id, "conversation": submission.conversation})
        async for reply in submission.replies():
            if not reply.final:
                await self.send({"type": "delta", "id": frame.id, "text": reply.text})
            elif reply.error is not None:
                await self.send({"type": "error", "id": frame.id, "code": reply.error.code,
                                 "message": reply.error.message})
            else:
                done: dict[str, Any] = {"type": "done", "id": frame.id, "text": reply.text,
                                        "message_id": reply.message_id}
                if reply.buttons:
                    done["buttons"] = [{"id": b.id, "label": b.label} for b in reply.buttons]
                await self.send(done)

    async def send(self, frame: dict[str, Any]) -> None:
        if not self.open:
            return
        async with self.send_lock:
            if self.ws.application_state is not WebSocketState.CONNECTED:
                return
            try:
                # the raw ASGI send: Starlette's wrapper re-checks state we have just checked
                await self.raw_send({"type": "websocket.send", "text": encode(frame)})
            except Exception:  # the peer is gone (each server says so with its own exception)
                self.open = False
