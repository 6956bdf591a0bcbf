"""Telegram: Bot API updates in (a webhook, or long polling), replies out through the outbox.

python-telegram-bot parses the updates and calls the Bot API; ``api_base`` points it at Telegram or at a
self-hosted Bot API server. What Telegram sends becomes ``Inbound`` messages for ``PlatformChannel`` (dedup,
sender policy, storage, the answer), and what hearth says goes back through ``send`` (the outbox's sender).

**In.** The webhook, ``POST /channels/telegram/webhook``, is checked before anything else: the
``X-Telegram-Bot-Api-Secret-Token`` header must equal ``TELEGRAM_WEBHOOK_SECRET`` (401 otherwise, and nothing is
stored); with no secret configured the route is off (404), never open. Then a body over 1 MiB is refused (413),
malformed JSON is refused (400), and the update is taken: a text message is stored before the webhook answers
200; files are fetched in the background. Long polling (``run_polling``, for hosts with no public address)
feeds the same ``handle``; it keeps nothing itself, since the receipts dedup whatever is fetched twice.

* ``message`` and ``edited_message``: the delivery id is the ``update_id``. **An edit is a new input**: the
  edited text is answered like a message sent again (Telegram sends a new update for it), and the earlier
  question and answer stay in the conversation as they were.
* ``callback_query``: a pressed button; its ``callback_data`` is the envelope's ``action`` (hearth's button
  id) and its label the text. Every query is answered (``answerCallbackQuery``) so the client stops waiting.
* Private chats always; groups only when the bot is mentioned (``@botname``, which is cut from the text), is
  addressed by a command (``/cmd@botname``) or the message replies to one of its messages. Channel posts and
  other updates are ignored. An unknown member who addresses the bot in a group is told, in the group, to
  write to the bot privately: the pairing code is only ever sent in the private chat.
* Commands: ``/cmd@botname`` becomes ``/cmd``, so skill commands (``/calendar list``) work as typed;
  ``/start`` and ``/help``, which every bot is expected to answer, become a greeting and a question to the
  assistant through the normal path.
* ``sender_id`` is the user's id, ``address`` the chat id, ``chat:thread`` in a forum topic.
* A document or the largest size of a photo becomes a file, fetched with ``getFile`` and the file URL;
  Telegram lets bots download 20 MB at most, so larger files are refused with a clear reply.

**Out.** Replies are MarkdownV2 (``to_telegram``), cut at 4096 characters; buttons go on the last part as an
inline keyboard whose ``callback_data`` is the button id (64 bytes at most). Errors from ``sendMessage``: a
429's ``retry_after`` holds the whole channel (bot-wide flood control); "can't parse entities" is sent again
once as plain text; 403 (blocked, kicked), chat not found and any other 400 cannot succeed on a retry and are
permanent; 5xx and network errors are retried by the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import Bot, InlineKeyboardMarkup, Message, MessageEntity, Update, User
from telegram.constants import ChatAction, ChatType
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, TelegramError
from telegram.request import HTTPXRequest

from hearth.errors import ConfigError, DeliveryError, HearthError, InvalidRequest, NotReady
from hearth.gateway.base import Outbound
from hearth.gateway.channels.common import (
    ChannelServices,
    Inbound,
    InboundFile,
    PlatformChannel,
    SenderRules,
)
from hearth.gateway.formatting import TELEGRAM_LIMIT, split, to_telegram
from hearth.types import Button

__all__ = ["CHANNEL", "TelegramChannel", "TelegramConfig", "TelegramRenderer"]

_log = logging.getLogger("hearth.channels.telegram")

CHANNEL = "telegram"
DEFAULT_API_BASE = "https://api.telegram.org"
WEBHOOK_PATH = "/channels/telegram/webhook"
SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 (a header name)
MAX_BODY = 1024 * 1024  # an update is a few KB; Telegram never sends files inline
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile: "bots can download files of up to 20MB in size"
CALLBACK_DATA_LIMIT = 64  # InlineKeyboardButton.callback_data: 1-64 bytes
ALLOWED_UPDATES = ("message", "edited_message", "callback_query")
MAX_POLL_BACKOFF = 60.0
DEFAULT_FLOOD_WAIT = 5.0  # a 429 that does not say how long to wait
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # setWebhook's secret_token alphabet
_MARKDOWN_ESCAPE = re.compile(r"\\([_*\[\]()~`>#+\-=|{}.!\\])")
_STANDARD_COMMANDS = {"start": "Hello!", "help": "What can you do for me, and how do I ask?"}


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    """The channel's settings: ``webhook_secret`` None keeps the webhook route closed (polling still works)."""

    token: str = field(repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    api_base: str = DEFAULT_API_BASE
    rules: SenderRules = field(default_factory=SenderRules)
    poll_timeout: int = 50  # seconds a getUpdates long poll waits for an update

    def __post_init__(self) -> None:
        if not re.match(r"^\d+:[A-Za-z0-9_-]+$", self.token):
            raise ConfigError("TELEGRAM_BOT_TOKEN", "not a bot token (it looks like 123456:ABC-DEF..., from "
                                                    "@BotFather)")
        if self.webhook_secret is not None and not _SECRET.match(self.webhook_secret):
            raise ConfigError("TELEGRAM_WEBHOOK_SECRET", "use 1-256 characters from A-Z, a-z, 0-9, _ and -")


class TelegramRenderer:
    """Replies as ``sendMessage`` payloads: MarkdownV2, cut at 4096, buttons on the last part."""

    def render(self, text: str, buttons: Sequence[Button]) -> list[dict[str, Any]]:
        parts = split(to_telegram(text), TELEGRAM_LIMIT, dialect="telegram") or ["…"]
        payloads: list[dict[str, Any]] = [{"text": part, "parse_mode": "MarkdownV2"} for part in parts]
        keyboard = [{"text": b.label, "callback_data": b.id} for b in buttons if _fits(b)]
        if keyboard:
            rows = [keyboard] if len(keyboard) <= 3 else [[button] for button in keyboard]
            payloads[-1]["reply_markup"] = {"inline_keyboard": rows}
        return payloads


def _fits(button: Button) -> bool:
    if 0 < len(button.id.encode()) <= CALLBACK_DATA_LIMIT:
        return True
    # the user can still answer in words; a button Telegram would refuse must not cost the whole reply
    _log.error("telegram: button %r left out: its id is over %d bytes", button.label, CALLBACK_DATA_LIMIT)
    return False


class _FloodWait(TelegramError):
    """A 429, with ``retry_after`` in seconds (read here: PTB's ``RetryAfter`` warns on every use until v23)."""

    def __init__(self, retry_after: float, description: str) -> None:
        super().__init__(description)
        self.retry_after = retry_after


class _BotApiRequest(HTTPXRequest):
    """PTB's HTTPX transport, with a 429 read into ``_FloodWait``."""

    async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        code, payload = await super().do_request(*args, **kwargs)
        if code == 429:
            body: dict[str, Any] = {}
            with contextlib.suppress(orjson.JSONDecodeError):
                parsed = orjson.loads(payload)
                body = parsed if isinstance(parsed, dict) else {}
            parameters = body.get("parameters")
            wait = parameters.get("retry_after") if isinstance(parameters, dict) else None
            raise _FloodWait(float(wait) if isinstance(wait, int | float) else DEFAULT_FLOOD_WAIT,
                             str(body.get("description") or "Too Many Requests"))
        return code, payload


class _RedactToken(logging.Filter):
    """httpx logs every request's URL at INFO, and a Bot API URL holds the bot token: never let it through."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self._token in message:
            record.msg, record.args = message.replace(self._token, "<token>"), None
        return True


@dataclass(frozen=True, slots=True)
class _Me:
    id: int
    username: str


class TelegramChannel:
    """The Telegram channel: webhook routes, long polling, the outbox's sender and the reminders' deliverer."""

    name = CHANNEL

    def __init__(self, config: TelegramConfig, services: ChannelServices) -> None:
        self._config = config
        base = config.api_base.rstrip("/")
        # two connection pools, as PTB wants: a long poll must not hold up sending
        self._requests = (_BotApiRequest(), _BotApiRequest())
        self._bot = Bot(config.token, base_url=f"{base}/bot", base_file_url=f"{base}/file/bot",
                        request=self._requests[0], get_updates_request=self._requests[1])
        self._platform = PlatformChannel(CHANNEL, services, renderer=TelegramRenderer(), rules=config.rules,
                                         typing=self.typing)
        self._me: _Me | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._redact_logs = _RedactToken(config.token)
        logging.getLogger("httpx").addFilter(self._redact_logs)

    @property
    def bot_username(self) -> str | None:
        return self._me.username if self._me else None

    # --- life -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Learn the bot's own name (``getMe``). A wrong token stops start-up; Telegram being away does not
        (the name is asked again when a group message needs it)."""
        try:
            await self._whoami()
        except NotReady as exc:
            _log.warning("telegram: %s; carrying on", exc)

    async def close(self) -> None:
        await self._platform.close()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)
        for request in self._requests:  # not Bot.shutdown: it does nothing for a bot never initialize()d
            await request.shutdown()
        logging.getLogger("httpx").removeFilter(self._redact_logs)

    async def _whoami(self) -> _Me:
        if self._me is None:
            try:
                user: User = await self._bot.get_me()
            except InvalidToken as exc:
                raise ConfigError("TELEGRAM_BOT_TOKEN", "Telegram refused the bot token") from exc
            except TelegramError as exc:
                raise NotReady(f"Telegram's getMe failed: {self._redact(exc)}") from exc
            self._me = _Me(user.id, user.username or "")
        return self._me

    async def set_webhook(self, url: str) -> None:
        """Ask Telegram to send updates to ``url`` (the public address of the webhook route), with the secret."""
        if not self._config.webhook_secret:
            raise ConfigError("TELEGRAM_WEBHOOK_SECRET", "set it first: without a secret the webhook stays closed")
        try:
            await self._bot.set_webhook(url, secret_token=self._config.webhook_secret,
                                        allowed_updates=list(ALLOWED_UPDATES), drop_pending_updates=False)
        except InvalidToken as exc:
            raise ConfigError("TELEGRAM_BOT_TOKEN", "Telegram refused the bot token") from exc
        except BadRequest as exc:
            raise InvalidRequest(f"Telegram refused the webhook: {self._redact(exc)}", code="bad_webhook") from exc
        except TelegramError as exc:
            raise DeliveryError(f"setWebhook failed: {self._redact(exc)}") from exc

    # --- in: the webhook ----------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [Route(WEBHOOK_PATH, self.webhook, methods=["POST"])]

    async def webhook(self, request: Request) -> Response:
        secret = self._config.webhook_secret
        if not secret:
            return _error(404, "not_found", "Not Found")
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            self._platform.refused("signature")
            return _error(401, "unauthenticated", "the secret token is missing or wrong")
        body = await _read_limited(request, MAX_BODY)
        if body is None:
            return _error(413, "too_large", f"an update is at most {MAX_BODY} bytes")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(400, "bad_json", "the body is not JSON")
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return _error(400, "bad_update", "the body is not a Telegram Update")
        try:
            update = Update.de_json(data, self._bot)
        except (KeyError, TypeError, ValueError, AttributeError):
            return _error(400, "bad_update", "the body is not a Telegram Update")
        try:
            await self.handle(update)
        except HearthError as exc:  # not stored: Telegram delivers it again later
            _log.warning("telegram: update %d not taken: %s", update.update_id, exc)
            return _error(503, exc.code, "not taken; deliver it again later")
        return Response(status_code=200)

    # --- in: long polling ---------------------------------------------------------------------------------

    async def run_polling(self, stop: asyncio.Event) -> None:
        """Fetch updates with ``getUpdates`` until ``stop`` is set (the webhook is removed first, as Telegram
        requires); errors are retried with a growing pause, or Telegram's own ``retry_after``."""
        offset: int | None = None
        pause = 1.0
        webhook_removed = False
        while not stop.is_set():
            try:
                if not webhook_removed:
                    await self._bot.delete_webhook(drop_pending_updates=False)
                    webhook_removed = True
                updates = await _unless_stopped(self._bot.get_updates(
                    offset=offset, timeout=timedelta(seconds=self._config.poll_timeout),
                    allowed_updates=list(ALLOWED_UPDATES)), stop)
                for update in updates or ():
                    await self.handle(update)
                    offset = update.update_id + 1  # confirmed only once taken: a failure fetches it again
                pause = 1.0
            except (TelegramError, HearthError) as exc:
                wait = exc.retry_after if isinstance(exc, _FloodWait) else pause
                _log.warning("telegram: polling failed (%s); again in %.0fs", self._redact(exc), wait)
                pause = min(pause * 2, MAX_POLL_BACKOFF)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)

    # --- in: an update --------------------------------------------------------------------------------------

    async def handle(self, update: Update) -> bool:
        """Take one update; False when it is not for hearth (a channel post, a group message that does not
        address the bot, a redelivery). Raises ``HearthError`` when it could not be stored."""
        if update.callback_query is not None:
            return await self._button(update)
        message = update.message or update.edited_message
        if message is None or message.from_user is None or message.from_user.is_bot:
            return False
        if message.chat.type not in (ChatType.PRIVATE, ChatType.GROUP, ChatType.SUPERGROUP):
            return False
        private = message.chat.type == ChatType.PRIVATE
        me = self._me if private else await self._whoami()
        text = _addressed_text(message, me, private=private)
        if text is None:
            return False
        files = self._files(message)
        if not text and not files:
            return False  # a sticker, a location, ...: nothing hearth can read
        user = message.from_user
        inbound = Inbound(delivery_id=str(update.update_id), sender_id=str(user.id), sender_name=user.full_name,
                          address=_address(message), text=text, files=files, native=update,
                          message_id=str(message.message_id), private=private)
        return await self._platform.receive(inbound)

    async def _button(self, update: Update) -> bool:
        query = update.callback_query
        assert query is not None
        self._spawn(self._answer_query(query.id))
        message = query.message
        if not query.data or message is None:
            return False
        label = _button_label(message, query.data)
        inbound = Inbound(delivery_id=str(update.update_id), sender_id=str(query.from_user.id),
                          sender_name=query.from_user.full_name, address=_address(message),
                          text=label or query.data, action=query.data, native=update,
                          private=message.chat.type == ChatType.PRIVATE)
        return await self._platform.receive(inbound)

    async def _answer_query(self, query_id: str) -> None:
        try:
            await self._bot.answer_callback_query(query_id)
        except TelegramError as exc:  # the spinner times out by itself on the client
            _log.debug("telegram: answerCallbackQuery failed: %s", self._redact(exc))

    def _files(self, message: Message) -> tuple[InboundFile, ...]:
        if message.document is not None:
            doc = message.document
            return (InboundFile(doc.file_name or f"document-{doc.file_unique_id}", doc.mime_type, doc.file_size,
                                functools.partial(self._download, doc.file_id, doc.file_size)),)
        if message.photo:
            photo = max(message.photo, key=lambda size: (size.width * size.height, size.file_size or 0))
            return (InboundFile(f"photo-{photo.file_unique_id}.jpg", "image/jpeg", photo.file_size,
                                functools.partial(self._download, photo.file_id, photo.file_size)),)
        return ()

    async def _download(self, file_id: str, size: int | None) -> bytes:
        too_large = InvalidRequest("Telegram lets bots download files of up to 20 MB", code="too_large")
        if size is not None and size > DOWNLOAD_LIMIT:
            raise too_large
        try:
            file = await self._bot.get_file(file_id)
            if file.file_size is not None and file.file_size > DOWNLOAD_LIMIT:
                raise too_large
            data = await file.download_as_bytearray()
        except BadRequest as exc:
            if "too big" in str(exc).lower():
                raise too_large from exc
            raise InvalidRequest("Telegram did not hand the file over", code="download_failed") from exc
        except TelegramError as exc:
            _log.warning("telegram: downloading a file failed: %s", self._redact(exc))
            raise InvalidRequest("Telegram did not hand the file over; send it again",
                                 code="download_failed") from exc
        return bytes(data)

    # --- out ------------------------------------------------------------------------------------------------

    async def send(self, address: str, payload: Mapping[str, Any]) -> str | None:
        """The outbox's sender: one ``sendMessage``; the message id. Raises ``DeliveryError``."""
        chat_id, thread = _parse_address(address)
        try:
            sent = await self._send_message(chat_id, thread, payload)
        except BadRequest as exc:
            if "can't parse entities" not in str(exc).lower() or not payload.get("parse_mode"):
                raise self._delivery_error(exc) from exc
            _log.warning("telegram: Telegram could not parse a reply's MarkdownV2 (%s); sending it as plain text",
                         exc)
            plain = {key: value for key, value in payload.items() if key != "parse_mode"}
            plain["text"] = _MARKDOWN_ESCAPE.sub(r"\1", str(payload.get("text", "")))
            try:
                sent = await self._send_message(chat_id, thread, plain)
            except TelegramError as again:
                raise self._delivery_error(again) from again
        except TelegramError as exc:
            raise self._delivery_error(exc) from exc
        return str(sent.message_id)

    async def _send_message(self, chat_id: int | str, thread: int | None, payload: Mapping[str, Any]) -> Message:
        rest = dict(payload)
        text = str(rest.pop("text", ""))
        parse_mode = rest.pop("parse_mode", None)
        markup = rest.pop("reply_markup", None)
        return await self._bot.send_message(
            chat_id=chat_id, text=text, parse_mode=parse_mode, message_thread_id=thread,
            reply_markup=InlineKeyboardMarkup.de_json(markup, self._bot) if markup else None,
            api_kwargs=rest or None)

    def _delivery_error(self, exc: TelegramError) -> DeliveryError:
        reason = self._redact(exc)
        if isinstance(exc, _FloodWait):
            return DeliveryError(f"Telegram: {reason}", retry_after=exc.retry_after, channel_wide=True)
        if isinstance(exc, Forbidden | BadRequest):  # blocked, kicked, chat not found, a malformed message
            return DeliveryError(f"Telegram: {reason}", permanent=True)
        if isinstance(exc, ChatMigrated):
            return DeliveryError(f"Telegram: the group is now the supergroup {exc.new_chat_id}", permanent=True)
        if isinstance(exc, InvalidToken):
            return DeliveryError("Telegram refused the bot token: check TELEGRAM_BOT_TOKEN")
        return DeliveryError(f"Telegram: {reason}")  # 5xx, timeouts, the network: the outbox tries again

    async def typing(self, address: str, message_id: str | None = None) -> None:
        """``sendChatAction`` "typing" for the chat (Telegram shows it per chat, not per message)."""
        chat_id, thread = _parse_address(address)
        await self._bot.send_chat_action(chat_id, ChatAction.TYPING, message_thread_id=thread)

    async def deliver(self, message: Outbound) -> bool:
        """A message hearth sends on its own (a reminder), to the chat its conversation lives in."""
        return await self._platform.deliver(message)

    def _redact(self, exc: BaseException) -> str:
        return str(exc).replace(self._config.token, "<token>")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# --- reading updates ---------------------------------------------------------------------------------------


def _addressed_text(message: Message, me: _Me | None, *, private: bool) -> str | None:
    """The message's text as hearth should read it, or None when the message is not for the bot (in a private
    chat every message is)."""
    text = message.text if message.text is not None else (message.caption or "")
    entities = message.entities if message.text is not None else message.caption_entities
    addressed = private
    cuts: list[tuple[int, int, str]] = []  # (UTF-16 offset, length, replacement): entity offsets count UTF-16
    mine = f"@{me.username}".lower() if me else None
    for entity in entities:
        shown = _utf16_slice(text, entity.offset, entity.length)
        if entity.type == MessageEntity.MENTION and mine and shown.lower() == mine:
            addressed = True
            cuts.append((entity.offset, entity.length, ""))
        elif entity.type == MessageEntity.BOT_COMMAND and entity.offset == 0:
            command, _, target = shown.partition("@")
            if target:
                if not private and (me is None or target.lower() != me.username.lower()):
                    return None  # a command for another bot in the group
                addressed = True
            cuts.append((0, entity.length, command))
    reply = message.reply_to_message
    if me is not None and reply is not None and reply.from_user is not None and reply.from_user.id == me.id:
        addressed = True
    if not addressed:
        return None
    text = re.sub(r"[ \t]{2,}", " ", _utf16_replace(text, cuts)).strip()
    head, _, _rest = text.partition(" ")
    if head.startswith("/") and head[1:].lower() in _STANDARD_COMMANDS:
        return _STANDARD_COMMANDS[head[1:].lower()]
    return text


def _utf16_slice(text: str, offset: int, length: int) -> str:
    data = text.encode("utf-16-le")
    return data[offset * 2:(offset + length) * 2].decode("utf-16-le", errors="replace")


def _utf16_replace(text: str, cuts: Sequence[tuple[int, int, str]]) -> str:
    data = text.encode("utf-16-le")
    for offset, length, replacement in sorted(cuts, reverse=True):
        data = data[:offset * 2] + replacement.encode("utf-16-le") + data[(offset + length) * 2:]
    return data.decode("utf-16-le", errors="replace")


def _address(message: Any) -> str:
    """Where replies go: the chat, and the forum topic when the message is in one."""
    chat_id = message.chat.id
    thread = getattr(message, "message_thread_id", None)
    if thread and getattr(message, "is_topic_message", False):
        return f"{chat_id}:{thread}"
    return str(chat_id)


def _parse_address(address: str) -> tuple[int | str, int | None]:
    chat, _, thread = address.partition(":")
    chat_id: int | str = int(chat) if chat.lstrip("-").isdigit() else chat
    return chat_id, int(thread) if thread.isdigit() else None


def _button_label(message: Any, data: str) -> str | None:
    markup = getattr(message, "reply_markup", None)
    for row in getattr(markup, "inline_keyboard", ()) or ():
        for button in row:
            if button.callback_data == data:
                return str(button.text)
    return None


# --- HTTP ----------------------------------------------------------------------------------------------------


def _error(status: int, code: str, message: str) -> Response:
    return Response(orjson.dumps({"error": {"code": code, "message": message}}), status_code=status,
                    media_type="application/json")


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes ``limit`` bytes (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    total = 0
    stream: AsyncIterator[bytes] = request.stream()
    async for chunk in stream:
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _unless_stopped(work: Awaitable[Sequence[Update]], stop: asyncio.Event) -> Sequence[Update] | None:
    """``work``'s result, or None when ``stop`` is set first (``work`` is then cancelled)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        return None
    finally:
        for pending in (task, stopped):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
