"""A fake of Meta's Graph API for the WhatsApp Cloud API, on a real socket, for tests.

It speaks the wire format hearth's WhatsApp channel uses, and checks requests the way the Cloud API does:

* ``POST /{version}/{phone-number-id}/messages`` — a bearer token, ``messaging_product: "whatsapp"``, a
  ``to``, and a ``text`` (body of 1-4096 characters) or ``interactive`` message (``button``: 1-3 reply
  buttons with unique titles of at most 20 characters and a body of at most 1024; ``list``: a button label of
  at most 20, 1-10 rows with titles of at most 24 and descriptions of at most 72). It answers
  ``{"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid...."}]}``.
* The same route with ``{"messaging_product": "whatsapp", "status": "read", "message_id": "wamid...."}`` and
  optionally ``"typing_indicator": {"type": "text"}`` marks a received message read (and shows "typing…"),
  answering ``{"success": true}``; nothing else may be in it. These go to ``reads``, not ``messages``, and
  ``calls_to`` leaves them out unless asked.
* ``GET /{version}/{media-id}`` — ``{"messaging_product", "url", "mime_type", "sha256", "file_size", "id"}``;
  the ``url`` (``/whatsapp_business/attachments/?mid=...``) gives the bytes, with the same bearer token.

Errors are Graph's: ``{"error": {"message", "type", "code", "error_data": {"messaging_product", "details"},
"error_subcode" (when set), "fbtrace_id"}}``. ``fail(...)`` queues failures that the next send requests get
instead of success (``Failure(code=130429)``, ``Failure(status=503)``, ``retry_after=`` for a header);
``fail_reads(...)`` does the same for read receipts and typing indicators, and ``delay=`` makes the fake take
that long to answer, like a Graph API that hangs.

Every request is kept in ``calls``, every accepted message in ``messages`` and every accepted read receipt or
typing indicator in ``reads`` (all bounded). The server
stops by itself after ``lifetime`` seconds, so a test that forgets it does not leave it running.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from hearth.testing.fakeserver import FakeServer

__all__ = ["Call", "Failure", "FakeWhatsApp"]

TITLES = {
    4: "Application request limit reached", 100: "Invalid parameter", 190: "Invalid OAuth access token",
    80007: "Rate limit issues", 130429: "Rate limit hit",
    131000: "Something went wrong", 131026: "Message undeliverable", 131047: "Re-engagement message",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
}
DETAILS = {
    130429: "Message failed to send because there were too many messages sent from this phone number in a "
            "short period of time",
    131047: "Message failed to send because more than 24 hours have passed since the customer last replied "
            "to this number.",
    131056: "Message failed to send because there were too many messages sent from this phone number to the "
            "same phone number in a short period of time.",
}


@dataclass(frozen=True, slots=True)
class Failure:
    """One scripted refusal: Graph error ``code`` (None: a bare HTTP error) with HTTP ``status``."""

    code: int | None = None
    status: int = 400
    message: str | None = None
    details: str | None = None
    error_type: str = "OAuthException"
    error_subcode: int | None = None
    retry_after: float | str | None = None
    delay: float = 0.0  # seconds before the answer


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any = None


@dataclass
class _Media:
    data: bytes
    mime_type: str
    key: str = field(default_factory=lambda: secrets.token_hex(8))


class FakeWhatsApp(FakeServer):
    """``async with FakeWhatsApp() as meta:`` serves on ``meta.api_base`` until the block ends (or ``lifetime``)."""

    def __init__(self, *, token: str | None = None, phone_number_id: str = "106540352242922",
                 version: str = "v25.0", host: str = "127.0.0.1", lifetime: float = 120.0,
                 max_calls: int = 1000) -> None:
        self.token = token or secrets.token_urlsafe(24)  # the access token the API expects
        self.phone_number_id = phone_number_id
        self.version = version
        super().__init__(host=host, lifetime=lifetime)
        self.calls: deque[Call] = deque(maxlen=max_calls)
        self.messages: deque[dict[str, Any]] = deque(maxlen=max_calls)
        self.reads: deque[dict[str, Any]] = deque(maxlen=max_calls)
        self._failures: deque[Failure] = deque()
        self._read_failures: deque[Failure] = deque()
        self._media: dict[str, _Media] = {}

    @property
    def api_base(self) -> str:
        return f"{self.url}/{self.version}"

    def fail(self, *failures: Failure) -> None:
        """The next send requests get these refusals, in order."""
        self._failures.extend(failures)

    def fail_reads(self, *failures: Failure) -> None:
        """The next read receipts / typing indicators get these refusals, in order."""
        self._read_failures.extend(failures)

    def add_media(self, data: bytes, mime_type: str, media_id: str | None = None) -> str:
        """Make a file downloadable as a user's upload; its media id."""
        media_id = media_id or str(secrets.randbelow(10**15) + 10**15)
        self._media[media_id] = _Media(data, mime_type)
        return media_id

    def calls_to(self, suffix: str, *, reads: bool = False) -> list[Call]:
        """The requests to paths ending in ``suffix``. Read receipts and typing indicators share ``/messages``
        with the messages but are another operation: they are in the list only with ``reads=True``."""
        return [c for c in self.calls if c.path.endswith(suffix) and (reads or not _is_read(c.body))]

    # --- lifecycle -------------------------------------------------------------------------------------

    max_body = 4 * 1024 * 1024

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/whatsapp_business/attachments/", self._download)
        app.router.add_post("/{version}/{node}/messages", self._send)
        app.router.add_get("/{version}/{media_id}", self._media_url)

    # --- the API ---------------------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Call:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = raw
        call = Call(request.method, request.path, dict(request.query), dict(request.headers), body)
        self.calls.append(call)
        return call

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def _send(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if not self._authorised(request):
            return graph_error(Failure(190, 401, "Invalid OAuth access token - Cannot parse access token"))
        if request.match_info["node"] != self.phone_number_id:
            return graph_error(Failure(100, 400, f"Unsupported post request. Object with ID "
                                                 f"'{request.match_info['node']}' does not exist", error_subcode=33))
        if _is_read(call.body):
            return await self._read(call.body)
        problem = message_problem(call.body)
        if problem is not None:
            return graph_error(Failure(100, 400, "(#100) Invalid parameter", details=problem))
        if self._failures:
            return await _refusal(self._failures.popleft())
        self.messages.append(call.body)
        wamid = "wamid." + base64.b64encode(secrets.token_bytes(24)).decode()
        to = call.body["to"]
        return _json({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                      "messages": [{"id": wamid}]})

    async def _read(self, body: dict[str, Any]) -> web.Response:
        problem = read_problem(body)
        if problem is not None:
            return graph_error(Failure(100, 400, "(#100) Invalid parameter", details=problem))
        if self._read_failures:
            return await _refusal(self._read_failures.popleft())
        self.reads.append(body)
        return _json({"success": True})

    async def _media_url(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorised(request):
            return graph_error(Failure(190, 401, "Invalid OAuth access token - Cannot parse access token"))
        media_id = request.match_info["media_id"]
        media = self._media.get(media_id)
        if media is None:
            return graph_error(Failure(100, 400, f"Unsupported get request. Object with ID '{media_id}' does not "
                                                 "exist, cannot be loaded due to missing permissions, or does not "
                                                 "support this operation", error_subcode=33))
        return _json({"messaging_product": "whatsapp",
                      "url": f"{self.url}/whatsapp_business/attachments/?mid={media_id}&ext=1&hash={media.key}",
                      "mime_type": media.mime_type, "sha256": hashlib.sha256(media.data).hexdigest(),
                      "file_size": len(media.data), "id": media_id})

    async def _download(self, request: web.Request) -> web.Response:
        await self._record(request)
        media = self._media.get(request.query.get("mid", ""))
        if not self._authorised(request) or media is None or request.query.get("hash") != media.key:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=media.data, content_type=media.mime_type)


def _json(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json",
                        headers=headers)


def _is_read(body: Any) -> bool:
    return isinstance(body, dict) and "status" in body


async def _refusal(failure: Failure) -> web.Response:
    if failure.delay:
        await asyncio.sleep(failure.delay)
    return graph_error(failure)


def graph_error(failure: Failure) -> web.Response:
    """A Graph API error response."""
    headers = {} if failure.retry_after is None else {"Retry-After": str(failure.retry_after)}
    if failure.code is None:
        return web.Response(status=failure.status, text=failure.message or "Service Unavailable", headers=headers)
    title = TITLES.get(failure.code, "Error")
    error: dict[str, Any] = {
        "message": failure.message or f"(#{failure.code}) {title}", "type": failure.error_type, "code": failure.code,
        "error_data": {"messaging_product": "whatsapp", "details": failure.details or DETAILS.get(failure.code, title)},
        "fbtrace_id": "A" + secrets.token_urlsafe(15)}
    if failure.error_subcode is not None:
        error["error_subcode"] = failure.error_subcode
    return _json({"error": error}, failure.status, headers)


def read_problem(body: dict[str, Any]) -> str | None:
    """Why the Cloud API would refuse this read receipt / typing indicator, or None."""
    if body.get("messaging_product") != "whatsapp":
        return "messaging_product must be whatsapp"
    if body.get("status") != "read":
        return "status must be read"
    if not isinstance(body.get("message_id"), str) or not body["message_id"].startswith("wamid."):
        return "message_id must be the id of a received message"
    if "typing_indicator" in body and body["typing_indicator"] != {"type": "text"}:
        return "typing_indicator.type must be text"
    extra = set(body) - {"messaging_product", "status", "message_id", "typing_indicator"}
    if extra:
        return f"unexpected parameters {sorted(extra)}"
    return None


def message_problem(body: Any) -> str | None:
    """Why the Cloud API would refuse this message object, or None."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if body.get("messaging_product") != "whatsapp":
        return "messaging_product must be whatsapp"
    if not isinstance(body.get("to"), str) or not body["to"]:
        return "to is required"
    kind = body.get("type", "text")
    if kind == "text":
        text = body.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not 1 <= len(text["body"]) <= 4096:
            return "text.body must be 1-4096 characters"
        return None
    if kind != "interactive":
        return f"this fake does not take {kind!r} messages"
    interactive = body.get("interactive")
    if not isinstance(interactive, dict):
        return "interactive is required"
    body_text = (interactive.get("body") or {}).get("text")
    action = interactive.get("action") or {}
    if interactive.get("type") == "button":
        buttons = action.get("buttons") or []
        titles = [(b.get("reply") or {}).get("title") for b in buttons]
        if not isinstance(body_text, str) or not 1 <= len(body_text) <= 1024:
            return "interactive.body.text must be 1-1024 characters"
        if not 1 <= len(buttons) <= 3 or any(b.get("type") != "reply" for b in buttons):
            return "1-3 reply buttons are required"
        if any(not isinstance(t, str) or not 1 <= len(t) <= 20 for t in titles) or len(set(titles)) != len(titles):
            return "button titles must be unique and 1-20 characters"
        if any(not (b.get("reply") or {}).get("id") or len(b["reply"]["id"]) > 256 for b in buttons):
            return "button ids must be 1-256 characters"
        return None
    if interactive.get("type") == "list":
        rows = [r for s in action.get("sections") or [] for r in s.get("rows") or []]
        if not isinstance(body_text, str) or not 1 <= len(body_text) <= 4096:
            return "interactive.body.text must be 1-4096 characters"
        if not isinstance(action.get("button"), str) or not 1 <= len(action["button"]) <= 20:
            return "action.button must be 1-20 characters"
        if not 1 <= len(rows) <= 10:
            return "1-10 rows are required"
        if any(not 1 <= len(r.get("title") or "") <= 24 or len(r.get("description") or "") > 72
               or not r.get("id") for r in rows):
            return "rows need an id, a title of 1-24 characters and a description of at most 72"
        return None
    return "interactive.type must be button or list"
