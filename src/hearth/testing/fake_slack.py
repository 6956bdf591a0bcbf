"""A fake Slack Web API on a real socket, speaking the wire format of ``https://slack.com/api/``.

hearth's Slack channel is tested against this, through the official ``slack_sdk`` clients, so what it checks is
what Slack would see: the methods called, their JSON or form bodies, the ``Authorization: Bearer`` token.

* ``POST /api/auth.test``, ``/api/chat.postMessage``, ``/api/chat.update``: JSON or form-encoded bodies, the token
  as ``Authorization: Bearer`` (or a ``token`` field, which Slack also accepts); answered
  ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}`` with status 200, as Slack does. A wrong token is
  ``invalid_auth``, none is ``not_authed``; an unknown method is a 404 ``unknown_method``.
* ``POST /actions/...``: a ``response_url`` (``slack.response_url()`` makes one), taking the JSON message.
* ``GET /files-pri/<team>-<file>/download/<name>``: a file added with ``slack.add_file`` (which returns the file
  object for an event's ``files``). Without the bot token Slack answers 200 with its HTML sign-in page, and so
  does this.
* ``slack.fail(method, error, status=, retry_after=, times=)`` makes the next calls of a method fail: an error
  code (``channel_not_found``), a 429 ``ratelimited`` with ``Retry-After``, or a 5xx with an HTML body.
* ``slack.calls`` records every request and ``slack.messages`` every message posted (with the ``ts`` it was
  given); ``await slack.wait_for("chat.postMessage", 2)`` waits for calls.

Bounded: request bodies up to 1 MiB, at most ``max_calls`` recorded calls, and the server stops by itself after
``lifetime`` seconds if the test that started it did not.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from multidict import CIMultiDict

from hearth.testing.fakeserver import FakeServer

__all__ = ["FakeSlack", "SlackCall"]

SIGN_IN_PAGE = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>"


@dataclass(frozen=True, slots=True)
class SlackCall:
    """One request as the fake received it: ``method`` is the Web API method, ``"response_url"`` or ``"file"``;
    ``at`` is when it arrived (``time.monotonic()``)."""

    method: str
    path: str
    body: dict[str, Any]
    headers: Mapping[str, str] = field(repr=False)
    content_type: str = ""
    at: float = field(default_factory=time.monotonic)

    @property
    def token(self) -> str | None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            return token
        value = self.body.get("token")
        return str(value) if value else None


@dataclass
class _Failure:
    error: str | None
    status: int
    retry_after: float | None
    times: int


@dataclass(frozen=True, slots=True)
class _File:
    data: bytes
    mimetype: str


class FakeSlack(FakeServer):
    """``async with FakeSlack() as slack:`` serves on ``slack.url`` (the Web API at ``slack.api_url``)."""

    def __init__(self, *, token: str | None = None, bot_user: str = "U0HEARTH",
                 bot_id: str = "B0HEARTH", team: str = "T0HEARTH", host: str = "127.0.0.1",
                 lifetime: float = 300.0, max_calls: int = 1000) -> None:
        self.token = token or f"xoxb-{secrets.token_hex(12)}"  # the bot token it accepts
        self.bot_user = bot_user
        self.bot_id = bot_id
        self.team = team
        super().__init__(host=host, lifetime=lifetime)
        self.calls: deque[SlackCall] = deque(maxlen=max_calls)
        self.messages: deque[dict[str, Any]] = deque(maxlen=max_calls)  # what chat.postMessage posted, with its ts
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._files: dict[str, _File] = {}
        self._counter = itertools.count(1)
        self._changed = asyncio.Condition()

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    # --- scripting ------------------------------------------------------------------------------------------

    def fail(self, method: str, error: str | None = "internal_error", *, status: int = 200,
             retry_after: float | None = None, times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` fail with ``error`` (and ``status``, ``Retry-After``)."""
        self._failures[method].append(_Failure(error, status, retry_after, times))

    def add_file(self, name: str, data: bytes, mimetype: str = "text/plain") -> dict[str, Any]:
        """Serve ``data`` as a private file; the file object as Slack puts it in an event's ``files``."""
        file_id = f"F{next(self._counter):08d}"
        path = f"/files-pri/{self.team}-{file_id}/download/{name}"
        self._files[path] = _File(data, mimetype)
        return {
            "id": file_id, "created": int(time.time()), "timestamp": int(time.time()), "name": name, "title": name,
            "mimetype": mimetype, "filetype": name.rsplit(".", 1)[-1], "user": "", "size": len(data),
            "mode": "hosted", "is_external": False, "is_public": False,
            "url_private": f"{self.url}/files-pri/{self.team}-{file_id}/{name}",
            "url_private_download": f"{self.url}{path}",
        }

    def response_url(self) -> str:
        return f"{self.url}/actions/{self.team}/{next(self._counter)}/{secrets.token_urlsafe(12)}"

    def of(self, method: str) -> list[SlackCall]:
        return [call for call in self.calls if call.method == method]

    async def wait_for(self, method: str, count: int = 1, within: float = 10.0) -> list[SlackCall]:
        """The calls of ``method`` once there are at least ``count``; ``TimeoutError`` if they do not come."""
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(lambda: len(self.of(method)) >= count)
        return self.of(method)

    # --- lifecycle ------------------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/actions/{path:.+}", self._response_url)
        app.router.add_get("/files-pri/{path:.+}", self._file)

    # --- the wire -------------------------------------------------------------------------------------------

    async def _record(self, request: web.Request, method: str, body: dict[str, Any]) -> SlackCall:
        call = SlackCall(method, request.path, body, CIMultiDict(request.headers), request.content_type)
        self.calls.append(call)
        async with self._changed:
            self._changed.notify_all()
        return call

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        raw = await request.read()
        try:
            if request.content_type == "application/json":
                body = orjson.loads(raw) if raw else {}
            else:
                body = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except (orjson.JSONDecodeError, UnicodeDecodeError):
            return _answer({"ok": False, "error": "invalid_json"})
        if not isinstance(body, dict):
            return _answer({"ok": False, "error": "invalid_json"})
        call = await self._record(request, method, body)
        failure = self._next_failure(method)
        if failure is not None:
            return _failure(failure)
        if call.token is None:
            return _answer({"ok": False, "error": "not_authed"})
        if call.token != self.token:
            return _answer({"ok": False, "error": "invalid_auth"})
        if method == "auth.test":
            return _answer({"ok": True, "url": f"https://{self.team.lower()}.slack.com/", "team": "hearth tests",
                            "user": "hearth", "team_id": self.team, "user_id": self.bot_user, "bot_id": self.bot_id,
                            "is_enterprise_install": False})
        if method == "chat.postMessage":
            return self._post_message(body)
        if method == "chat.update":
            if not body.get("channel") or not body.get("ts"):
                return _answer({"ok": False, "error": "channel_not_found" if not body.get("channel")
                                else "message_not_found"})
            return _answer({"ok": True, "channel": body["channel"], "ts": body["ts"], "text": body.get("text", "")})
        return _answer({"ok": False, "error": "unknown_method"}, status=404)

    def _post_message(self, body: dict[str, Any]) -> web.Response:
        channel = body.get("channel")
        if not channel:
            return _answer({"ok": False, "error": "channel_not_found"})
        if not body.get("text") and not body.get("blocks") and not body.get("attachments"):
            return _answer({"ok": False, "error": "no_text"})
        ts = f"{int(time.time())}.{next(self._counter):06d}"
        message: dict[str, Any] = {"type": "message", "user": self.bot_user, "bot_id": self.bot_id,
                                   "text": body.get("text", ""), "ts": ts, "team": self.team}
        for key in ("thread_ts", "blocks"):
            if body.get(key):
                message[key] = body[key]
        self.messages.append({"channel": channel, **message})
        return _answer({"ok": True, "channel": channel, "ts": ts, "message": message})

    async def _response_url(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.Response(status=400, text="invalid_payload")
        await self._record(request, "response_url", body if isinstance(body, dict) else {})
        failure = self._next_failure("response_url")
        if failure is not None:
            return _failure(failure)
        return _answer({"ok": True})

    async def _file(self, request: web.Request) -> web.Response:
        call = await self._record(request, "file", {})
        stored = self._files.get(request.path)
        if call.token != self.token:
            return web.Response(body=SIGN_IN_PAGE, content_type="text/html")
        if stored is None:
            return web.Response(status=404, text="file_not_found")
        return web.Response(body=stored.data, content_type=stored.mimetype)

    def _next_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.popleft()
        return failure


def _answer(data: Mapping[str, Any], *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers,
                        content_type="application/json", charset="utf-8")


def _failure(failure: _Failure) -> web.Response:
    headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after is not None else None
    if failure.status >= 500:
        return web.Response(status=failure.status, text="<html><body>Slack is having trouble</body></html>",
                            content_type="text/html", headers=headers)
    return _answer({"ok": False, "error": failure.error}, status=failure.status, headers=headers)
