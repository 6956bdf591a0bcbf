"""A fake Telegram Bot API server on a real socket, for testing bots without Telegram.

It speaks the wire format of https://core.telegram.org/bots/api#making-requests: ``POST`` (or ``GET``) to
``/bot<token>/<method>`` with a query string, a JSON body, a form (``application/x-www-form-urlencoded``, what
python-telegram-bot sends: objects such as ``reply_markup`` are JSON-serialized in their field) or a multipart
body; every answer is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description"}`` with
``parameters.retry_after`` on a 429 — the same status code in the HTTP response, as Telegram does. Files are
downloaded from ``/file/bot<token>/<file_path>``.

Methods: ``getMe``, ``sendMessage`` (MarkdownV2 is parsed: an unescaped reserved character or an unclosed
entity is refused with Telegram's ``can't parse entities`` error; text over 4096 characters and callback data
over 64 bytes are refused too), ``sendChatAction``, ``answerCallbackQuery``, ``getFile``, ``setWebhook``,
``deleteWebhook``, ``getWebhookInfo`` and ``getUpdates`` (long polling over the queued updates, with
``offset`` confirming them; refused with 409 while a webhook is set, as Telegram does). Anything else is 404.

Every call is recorded (``calls``, ``called(method)``, ``await wait_for(method)``) with its parameters decoded
as Telegram reads them. ``fail(method, Failure.too_many_requests(1), ...)`` makes the next calls of a method
fail in order. A long poll waits at most ``poll_cap`` seconds whatever ``timeout`` asks, and the server stops
by itself after ``lifetime`` seconds if nobody stopped it: a forgotten fake never outlives its test for long.

    async with FakeTelegram() as fake:
        bot = telegram.Bot(fake.token, base_url=f"{fake.api_base}/bot",
                           base_file_url=f"{fake.api_base}/file/bot")  # python-telegram-bot
        fake.push_update({"message": {...}})   # served to getUpdates
        [call] = await fake.wait_for("sendMessage")
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from hearth.testing.fakeserver import FakeServer

__all__ = ["DEFAULT_TOKEN", "ApiCall", "Failure", "FakeTelegram", "markdown_v2_text"]

DEFAULT_TOKEN = "123456789:AAH-fake-token-for-tests_0123456789ab"  # noqa: S105 (for the fake only)
TEXT_LIMIT = 4096  # sendMessage: 1-4096 characters after entities parsing
CALLBACK_DATA_LIMIT = 64  # InlineKeyboardButton.callback_data: 1-64 bytes
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile: bots can download files of up to 20 MB
# parameters that are strings on the wire and stay strings; any other form value is read as JSON when it is
_STRING_FIELDS = frozenset({"text", "caption", "parse_mode", "callback_query_id", "url", "secret_token", "file_id",
                            "action", "ip_address", "business_connection_id", "message_effect_id"})
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_RESERVED = frozenset("_*[]()~`>#+-=|{}.!\\")
_ENTITY_NAMES = {"*": "Bold", "_": "Italic", "__": "Underline", "~": "Strikethrough", "||": "Spoiler",
                 "[": "TextUrl"}


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One Bot API request as the fake received it; ``at`` is ``time.monotonic()``."""

    method: str
    params: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class Failure:
    """A scripted error answer, with Telegram's own wording available from the constructors."""

    status: int
    description: str
    retry_after: int | None = None

    @classmethod
    def too_many_requests(cls, retry_after: int) -> Failure:
        return cls(429, f"Too Many Requests: retry after {retry_after}", retry_after)

    @classmethod
    def blocked(cls) -> Failure:
        return cls(403, "Forbidden: bot was blocked by the user")

    @classmethod
    def chat_not_found(cls) -> Failure:
        return cls(400, "Bad Request: chat not found")

    @classmethod
    def cant_parse_entities(cls) -> Failure:
        return cls(400, "Bad Request: can't parse entities: Can't find end of Bold entity at byte offset 0")

    @classmethod
    def server_error(cls) -> Failure:
        return cls(502, "Bad Gateway")


class _ApiError(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.description)
        self.failure = failure


def _bad(description: str) -> _ApiError:
    return _ApiError(Failure(400, f"Bad Request: {description}"))


@dataclass
class _File:
    file_id: str
    unique_id: str
    path: str
    data: bytes

    def result(self) -> dict[str, Any]:
        return {"file_id": self.file_id, "file_unique_id": self.unique_id, "file_size": len(self.data),
                "file_path": self.path}


@dataclass
class _State:
    updates: list[dict[str, Any]] = field(default_factory=list)
    webhook: dict[str, Any] = field(default_factory=dict)
    files: dict[str, _File] = field(default_factory=dict)
    failures: dict[str, list[Failure]] = field(default_factory=dict)


class FakeTelegram(FakeServer):
    """``async with FakeTelegram() as telegram:`` serves the Bot API on ``telegram.api_base``."""

    def __init__(self, token: str = DEFAULT_TOKEN, *, username: str = "hearth_test_bot", host: str = "127.0.0.1",
                 port: int = 0, poll_cap: float = 2.0, lifetime: float = 300.0) -> None:
        self.token = token
        self.username = username
        self.poll_cap = poll_cap
        super().__init__(host=host, port=port, lifetime=lifetime)
        self.calls: list[ApiCall] = []
        self._state = _State()
        self._ids = itertools.count(1)
        self._update_ids = itertools.count(10_000)
        self._tick = asyncio.Event()  # set, and replaced, whenever a call or an update arrives

    @property
    def api_base(self) -> str:
        """What a client is configured with: the methods are under ``{api_base}/bot<token>/``."""
        return self.url

    @property
    def bot_id(self) -> int:
        return int(self.token.split(":", 1)[0])

    @property
    def webhook(self) -> Mapping[str, Any]:
        """The webhook as the last ``setWebhook`` set it (empty when none is set)."""
        return dict(self._state.webhook)

    def bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "hearth", "username": self.username,
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}

    # --- scripting ------------------------------------------------------------------------------------------

    def fail(self, method: str, *failures: Failure) -> None:
        """The next calls of ``method`` answer these errors, one per call, in order."""
        self._state.failures.setdefault(method.lower(), []).extend(failures)

    def clear_failures(self, method: str | None = None) -> int:
        """Drop the failures still queued for ``method`` (every method when None), so the next calls succeed;
        how many were dropped. With ``fail`` this scripts an outage of unknown length: queue more failures
        than can be used up, then end the outage when the test is ready."""
        if method is None:
            dropped = sum(len(queued) for queued in self._state.failures.values())
            self._state.failures.clear()
            return dropped
        return len(self._state.failures.pop(method.lower(), []))

    def add_file(self, data: bytes, *, file_id: str | None = None, path: str | None = None) -> dict[str, Any]:
        """A file bots can fetch with ``getFile`` and download; its ``File`` object."""
        file_id = file_id or "BQAC" + secrets.token_urlsafe(24)
        stored = _File(file_id, secrets.token_urlsafe(8), path or f"documents/file_{len(self._state.files)}",
                       data)
        self._state.files[file_id] = stored
        return stored.result()

    def push_update(self, update: Mapping[str, Any]) -> dict[str, Any]:
        """Queue an update for ``getUpdates`` (an ``update_id`` is given when it has none)."""
        queued = dict(update)
        queued.setdefault("update_id", next(self._update_ids))
        self._state.updates.append(queued)
        self._notify()
        return queued

    def called(self, method: str) -> list[ApiCall]:
        return [call for call in self.calls if call.method.lower() == method.lower()]

    async def wait_for(self, method: str, count: int = 1, within: float = 5.0) -> list[ApiCall]:
        """The calls of ``method`` once there are at least ``count``; ``TimeoutError`` after ``within`` s."""
        async with asyncio.timeout(within):
            while len(self.called(method)) < count:
                await self._tick.wait()
        return self.called(method)

    # --- serving --------------------------------------------------------------------------------------------

    max_body = 64 * 1024 * 1024

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)

    def _notify(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _answer_error(Failure(401, "Unauthorized"))
        method = request.match_info["method"]
        try:
            params = await _params(request)
        except ValueError as exc:
            return _answer_error(Failure(400, f"Bad Request: {exc}"))
        self.calls.append(ApiCall(method, params, time.monotonic()))
        self._notify()
        scripted = self._state.failures.get(method.lower())
        if scripted:
            return _answer_error(scripted.pop(0))
        handler = getattr(self, f"_m_{method.lower()}", None)
        if handler is None:
            return _answer_error(Failure(404, "Not Found"))
        try:
            result = await handler(params)
        except _ApiError as exc:
            return _answer_error(exc.failure)
        return web.Response(body=orjson.dumps({"ok": True, "result": result}), content_type="application/json")

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _answer_error(Failure(401, "Unauthorized"))
        path = request.match_info["path"]
        for stored in self._state.files.values():
            if stored.path == path:
                return web.Response(body=stored.data, content_type="application/octet-stream")
        return _answer_error(Failure(404, "Not Found"))

    # --- methods --------------------------------------------------------------------------------------------

    async def _m_getme(self, params: dict[str, Any]) -> Any:
        return self.bot_user()

    async def _m_sendmessage(self, params: dict[str, Any]) -> Any:
        chat_id = _required(params, "chat_id")
        text = str(params.get("text") or "")
        if not text.strip():
            raise _bad("message text is empty")
        parse_mode = params.get("parse_mode")
        if parse_mode == "MarkdownV2":
            try:
                text = markdown_v2_text(text)
            except ValueError as exc:
                raise _bad(f"can't parse entities: {exc}") from None
        elif parse_mode not in (None, ""):
            raise _bad(f"unsupported parse_mode {parse_mode!r}")
        if len(text.encode("utf-16-le")) // 2 > TEXT_LIMIT:
            raise _bad("message is too long")
        markup = params.get("reply_markup")
        if markup is not None:
            _check_markup(markup)
        chat: dict[str, Any] = {"id": chat_id, "type": "private" if _is_user(chat_id) else "supergroup"}
        message: dict[str, Any] = {"message_id": next(self._ids), "from": self.bot_user(), "chat": chat,
                                   "date": int(time.time()), "text": text}
        if params.get("message_thread_id") is not None:
            message["message_thread_id"] = params["message_thread_id"]
            message["is_topic_message"] = True
        if markup is not None:
            message["reply_markup"] = markup
        return message

    async def _m_sendchataction(self, params: dict[str, Any]) -> Any:
        _required(params, "chat_id")
        _required(params, "action")
        return True

    async def _m_answercallbackquery(self, params: dict[str, Any]) -> Any:
        _required(params, "callback_query_id")
        return True

    async def _m_getfile(self, params: dict[str, Any]) -> Any:
        stored = self._state.files.get(str(_required(params, "file_id")))
        if stored is None:
            raise _bad("invalid file_id")
        if len(stored.data) > DOWNLOAD_LIMIT:
            raise _bad("file is too big")
        return stored.result()

    async def _m_setwebhook(self, params: dict[str, Any]) -> Any:
        url = str(params.get("url") or "")
        secret = params.get("secret_token")
        if secret is not None and not _SECRET.match(str(secret)):
            raise _bad("secret token contains unallowed characters")
        if params.get("drop_pending_updates") is True:
            self._state.updates.clear()
        self._state.webhook = {"url": url, **{k: v for k, v in params.items() if k != "url"}} if url else {}
        return True

    async def _m_deletewebhook(self, params: dict[str, Any]) -> Any:
        if params.get("drop_pending_updates") is True:
            self._state.updates.clear()
        self._state.webhook = {}
        return True

    async def _m_getwebhookinfo(self, params: dict[str, Any]) -> Any:
        return {"url": self._state.webhook.get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self._state.updates)}

    async def _m_getupdates(self, params: dict[str, Any]) -> Any:
        if self._state.webhook:
            raise _ApiError(Failure(409, "Conflict: can't use getUpdates method while webhook is active; "
                                         "use deleteWebhook to delete the webhook first"))
        offset = int(params.get("offset") or 0)
        limit = max(1, min(100, int(params.get("limit") or 100)))
        if offset:  # "An update is considered confirmed as soon as getUpdates is called with an offset higher"
            self._state.updates = [u for u in self._state.updates if u["update_id"] >= offset]
        wait = min(float(params.get("timeout") or 0), self.poll_cap)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                while not self._state.updates:
                    await self._tick.wait()
        return self._state.updates[:limit]


def _answer_error(failure: Failure) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": failure.status, "description": failure.description}
    if failure.retry_after is not None:
        body["parameters"] = {"retry_after": failure.retry_after}
    return web.Response(status=failure.status, body=orjson.dumps(body), content_type="application/json")


async def _params(request: web.Request) -> dict[str, Any]:
    """A request's parameters, as Telegram reads them from a query string, JSON, a form or multipart."""
    params: dict[str, Any] = {k: _decode(k, v) for k, v in request.query.items()}
    if not request.can_read_body:
        return params
    kind = request.content_type
    if kind == "application/json":
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"can't parse JSON body: {exc}") from None
        if not isinstance(body, dict):
            raise ValueError("the JSON body must be an object")
        params.update(body)
    elif kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                params[key] = {"filename": value.filename, "size": len(value.file.read())}
            else:
                params[key] = _decode(key, str(value))
    return params


def _decode(key: str, value: str) -> Any:
    """A form value as Telegram reads it: JSON-serialized fields (objects, arrays, numbers, booleans) decoded."""
    if key in _STRING_FIELDS:
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value


def _required(params: Mapping[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise _bad(f"{name} is empty")
    return value


def _is_user(chat_id: Any) -> bool:
    return isinstance(chat_id, int) and chat_id > 0


def _check_markup(markup: Any) -> None:
    if not isinstance(markup, dict):
        raise _bad("can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        return
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad("field \"inline_keyboard\" of the InlineKeyboardMarkup must be an Array of Arrays")
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not button.get("text"):
                raise _bad("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= CALLBACK_DATA_LIMIT:
                raise _bad("BUTTON_DATA_INVALID")


def markdown_v2_text(text: str) -> str:
    """The visible text of a MarkdownV2 message; ``ValueError`` with Telegram's wording when it does not parse.

    Follows https://core.telegram.org/bots/api#markdownv2-style: any character 1-126 may be escaped with ``\\``;
    the reserved ``_*[]()~`>#+-=|{}.!`` must be, unless they are markup; inside ``pre`` and ``code`` only
    ```` ` ```` and ``\\`` are escaped; inside a link's ``(...)`` only ``)`` and ``\\``.
    """
    out: list[str] = []
    opened: list[tuple[str, int]] = []
    i, n = 0, len(text)

    def offset(at: int) -> int:
        return len(text[:at].encode())

    while i < n:
        char = text[i]
        if char == "\\":
            if i + 1 >= n or not 1 <= ord(text[i + 1]) <= 126:
                raise ValueError("Character '\\' is reserved and must be escaped with the preceding '\\'")
            out.append(text[i + 1])
            i += 2
        elif text.startswith("```", i) or char == "`":
            fence = "```" if text.startswith("```", i) else "`"
            end = _closing(text, fence, i + len(fence))
            if end < 0:
                raise ValueError(f"Can't find end of {'Pre' if fence == '```' else 'Code'} entity at byte offset "
                                 f"{offset(i)}")
            body = text[i + len(fence):end]
            if fence == "```" and "\n" in body:
                body = body.split("\n", 1)[1]  # the first line names the language
            out.append(re.sub(r"\\([`\\])", r"\1", body))
            i = end + len(fence)
        elif char == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1  # a block quote line
        elif char == "]" and opened and opened[-1][0] == "[":
            opened.pop()
            if not text.startswith("(", i + 1):
                raise ValueError(f"Can't find end of TextUrl entity at byte offset {offset(i)}")
            end = _closing(text, ")", i + 2)
            if end < 0:
                raise ValueError(f"Can't find end of a URL at byte offset {offset(i + 1)}")
            i = end + 1
        elif (marker := _marker(text, i)) is not None:
            names = [name for name, _ in opened]
            if marker != "[" and marker in names:
                del opened[len(names) - 1 - names[::-1].index(marker)]
            else:
                opened.append((marker, i))
            i += len(marker)
        elif char in _RESERVED:
            raise ValueError(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")
        else:
            out.append(char)
            i += 1
    if opened:
        marker, at = opened[0]
        raise ValueError(f"Can't find end of {_ENTITY_NAMES[marker]} entity at byte offset {offset(at)}")
    return "".join(out)


def _marker(text: str, i: int) -> str | None:
    for marker in ("||", "__", "*", "_", "~", "["):
        if text.startswith(marker, i):
            return marker
    return None


def _closing(text: str, token: str, start: int) -> int:
    """Where the unescaped ``token`` closing a span that begins at ``start`` is; -1 when there is none."""
    i = start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(token, i):
            return i
        i += 1
    return -1
