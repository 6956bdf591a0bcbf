"""``/v1/conversations``: a user's conversations and their messages over HTTP (the web chat page's sidebar and
history, or any client's).

* ``GET /v1/conversations?limit=&before=`` lists the caller's conversations, most recently active first:
  ``{"object": "list", "data": [conversation], "has_more"}``. ``before`` is the id of the last
  conversation of the previous page.
* ``GET /v1/conversations/{id}/messages?limit=&before=`` pages through what a person sees of a conversation,
  newest page first, messages oldest first within a page: ``{"object": "list", "conversation", "data":
  [message], "has_more"}``; ``before`` is the id of the first message of the page already shown.
* ``PATCH /v1/conversations/{id}`` with ``{"title": "..."}`` renames it (``null`` or ``""``: named after its
  first message again); ``DELETE /v1/conversations/{id}`` deletes it with its messages.

A conversation is ``{"id", "object": "conversation", "title", "channel", "created_at", "updated_at",
"messages"}``; a message is ``{"id", "role": "user"|"assistant"|"notice", "text", "created_at"}`` plus, for
a user message, ``status`` (``pending``, ``done``, ``failed``), ``error`` when it failed, ``client_id`` (the
id its sender gave it) and ``attachments`` (``[{"id", "filename", "media_type", "bytes"}]``, ``filename``
null for a file deleted since). Times are Unix seconds. Another user's conversation is 404, as an unknown
one is. Errors are ``{"error": {"code", "message"}}`` with 400/401/404.

This module does not import the store: the composition root hands it a ``ConversationLog``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hearth.errors import HearthError, InvalidRequest, NotFound
from hearth.gateway.base import Authenticator, bearer_token
from hearth.gateway.files_api import StoredFile
from hearth.types import Actor

CHANNEL = "api"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_TITLE = 200
_CONVERSATION_ID = re.compile(r"^[0-9a-f]{32}$")
_STATUS = {"unauthenticated": 401, "not_found": 404, "storage_error": 500, "internal": 500, "not_ready": 503}


class ConversationInfo(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def title(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


class ConversationSummary(ConversationInfo, Protocol):
    @property
    def messages(self) -> int: ...


class ShownMessage(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def meta(self) -> Mapping[str, Any]: ...
    @property
    def status(self) -> str | None: ...
    @property
    def reply_to(self) -> int | None: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def error_message(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...


class ConversationListing(Protocol):
    @property
    def conversations(self) -> Sequence[ConversationSummary]: ...
    @property
    def has_more(self) -> bool: ...


class MessageListing(Protocol):
    @property
    def conversation(self) -> ConversationInfo: ...
    @property
    def messages(self) -> Sequence[ShownMessage]: ...
    @property
    def has_more(self) -> bool: ...


class ConversationLog(Protocol):
    """Users' conversations as people see them (``ConversationRepository`` in the store is one). Every
    method is scoped to ``user_id``: another user's conversation is ``NotFound``."""

    async def conversation_page(self, user_id: int, *, limit: int = 50, before: str | None = None
                                ) -> ConversationListing: ...

    async def shown_messages(self, user_id: int, conversation_id: str, *, limit: int = 50,
                             before: int | None = None) -> MessageListing: ...

    async def rename_conversation(self, user_id: int, conversation_id: str, title: str | None
                                  ) -> ConversationInfo: ...

    async def delete_conversation(self, user_id: int, conversation_id: str) -> int: ...


class FileLookup(Protocol):
    async def get(self, user_id: int, file_id: str) -> StoredFile:
        """The user's file; ``NotFound`` for an unknown id or another user's."""
        ...


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def _error_for(exc: HearthError) -> Response:
    status = _STATUS.get(exc.code) or (400 if isinstance(exc, InvalidRequest) else 500)
    message = f"Invalid API key: {exc}" if status == 401 else exc.user_message
    return _json({"error": {"code": exc.code, "message": message}}, status)


def conversation_object(record: ConversationInfo) -> dict[str, Any]:
    return {"id": record.id, "object": "conversation", "title": record.title, "channel": record.channel,
            "created_at": int(record.created_at.timestamp()), "updated_at": int(record.updated_at.timestamp())}


class ConversationsApi:
    """The ``/v1/conversations`` routes over a ``ConversationLog``, for callers with an API key. ``files``
    describes the files attached to user messages (without it, only their ids are shown)."""

    def __init__(self, conversations: ConversationLog, auth: Authenticator, files: FileLookup | None = None) -> None:
        self._conversations = conversations
        self._auth = auth
        self._files = files

    def routes(self) -> list[Route]:
        return [
            Route("/v1/conversations", self.list, methods=["GET"]),
            Route("/v1/conversations/{conversation_id}", self.rename, methods=["PATCH"]),
            Route("/v1/conversations/{conversation_id}", self.delete, methods=["DELETE"]),
            Route("/v1/conversations/{conversation_id}/messages", self.messages, methods=["GET"]),
        ]

    async def _actor(self, request: Request) -> Actor:
        return await self._auth.authenticate(bearer_token(request.headers.get("authorization")), channel=CHANNEL)

    async def list(self, request: Request) -> Response:
        try:
            actor = await self._actor(request)
            limit = _limit(request)
            before = request.query_params.get("before") or None
            if before is not None and not _CONVERSATION_ID.match(before):
                raise InvalidRequest("'before' must be a conversation id (32 hex digits)", code="bad_cursor")
            page = await self._conversations.conversation_page(actor.user_id, limit=limit, before=before)
        except HearthError as exc:
            return _error_for(exc)
        data = [{**conversation_object(c), "messages": c.messages} for c in page.conversations]
        return _json({"object": "list", "data": data, "has_more": page.has_more})

    async def messages(self, request: Request) -> Response:
        try:
            actor = await self._actor(request)
            conversation_id = _conversation_id(request)
            limit = _limit(request)
            raw = request.query_params.get("before") or None
            if raw is not None and not (raw.isdigit() and len(raw) <= 18):
                raise InvalidRequest("'before' must be a message id (a number)", code="bad_cursor")
            page = await self._conversations.shown_messages(actor.user_id, conversation_id, limit=limit,
                                                            before=None if raw is None else int(raw))
            data = [await self._message(actor, m) for m in page.messages]
        except HearthError as exc:
            return _error_for(exc)
        return _json({"object": "list", "conversation": conversation_object(page.conversation), "data": data,
                      "has_more": page.has_more})

    async def rename(self, request: Request) -> Response:
        try:
            actor = await self._actor(request)
            conversation_id = _conversation_id(request)
            try:
                body = orjson.loads(await request.body())
            except orjson.JSONDecodeError:
                raise InvalidRequest("the body must be a JSON object", code="bad_request") from None
            title = body.get("title") if isinstance(body, dict) else None
            if not isinstance(body, dict) or "title" not in body or not (title is None or isinstance(title, str)):
                raise InvalidRequest("send {\"title\": \"...\"}", code="bad_title")
            if title is not None and len(title) > MAX_TITLE:
                raise InvalidRequest(f"a title has at most {MAX_TITLE} characters", code="bad_title")
            record = await self._conversations.rename_conversation(actor.user_id, conversation_id, title)
        except HearthError as exc:
            return _error_for(exc)
        return _json(conversation_object(record))

    async def delete(self, request: Request) -> Response:
        try:
            actor = await self._actor(request)
            conversation_id = _conversation_id(request)
            await self._conversations.delete_conversation(actor.user_id, conversation_id)
        except HearthError as exc:
            return _error_for(exc)
        return _json({"id": conversation_id, "object": "conversation", "deleted": True})

    async def _message(self, actor: Actor, message: ShownMessage) -> dict[str, Any]:
        created_at = int(message.created_at.timestamp())
        if message.role != "user":
            role = "notice" if message.reply_to is None else "assistant"
            text = str(message.meta.get("reply", message.content)) if role == "assistant" else message.content
            return {"id": message.id, "role": role, "text": text, "created_at": created_at}
        refs = [str(ref) for ref in message.meta.get("attachments", ()) if isinstance(ref, str)]
        shown: dict[str, Any] = {"id": message.id, "role": "user", "text": _without_file_lines(message.content, refs),
                                 "created_at": created_at, "status": message.status or "done",
                                 "client_id": message.meta.get("envelope_id")}
        if message.status == "failed":
            shown["error"] = {"code": message.error_code or "failed", "message": message.error_message or ""}
        if refs:
            shown["attachments"] = [await self._attachment(actor, ref) for ref in refs]
        return shown

    async def _attachment(self, actor: Actor, ref: str) -> dict[str, Any]:
        gone: dict[str, Any] = {"id": ref, "filename": None, "media_type": None, "bytes": None}
        if self._files is None:
            return gone
        try:
            record = await self._files.get(actor.user_id, ref)
        except NotFound:
            return gone
        return {"id": record.id, "filename": record.filename, "media_type": record.media_type, "bytes": record.size}


def _without_file_lines(text: str, refs: Sequence[str]) -> str:
    """A user message's own words: the stored text ends with one line per attached file (``stored_text``
    in the inbox), which the attachments list shows instead."""
    lines = text.split("\n")
    while lines and lines[-1].startswith("[attached file ") and any(lines[-1].endswith(f", file id {ref}]")
                                                                    for ref in refs):
        lines.pop()
    return "\n".join(lines)


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(f"'limit' must be a number from 1 to {MAX_LIMIT}", code="bad_limit")
    return int(raw)


def _conversation_id(request: Request) -> str:
    conversation_id = str(request.path_params["conversation_id"])
    if not _CONVERSATION_ID.match(conversation_id):
        raise NotFound(f"No conversation {conversation_id[:64]!r}.")
    return conversation_id
