"""WhatsApp through Meta's Cloud API (Graph API): the webhook in, ``POST /{phone-number-id}/messages`` out.

There is no official Python SDK for the Cloud API; this module speaks its HTTP wire format with aiohttp
and checks Meta's signatures with the standard library's ``hmac``. References (Meta's developer docs):

* webhooks: ``/documentation/business-messaging/whatsapp/webhooks/reference/messages/`` — ``text``,
  ``interactive`` (``button_reply``/``list_reply``), ``button`` (a template's quick reply), ``image``,
  ``document``, ``audio``, ``status`` (sent/delivered/read/failed) and ``errors``;
* sending: ``/docs/whatsapp/cloud-api/messages/interactive-reply-buttons-messages`` (at most 3 buttons,
  titles of at most 20 characters, a body of at most 1024) and ``.../interactive-list-messages`` (one
  button of at most 20 characters, at most 10 rows, row titles of at most 24, descriptions of at most 72);
* media: ``GET /{media-id}`` gives a short-lived ``url`` that is downloaded with the same bearer token;
* typing indicators: ``/documentation/business-messaging/whatsapp/typing-indicators/`` — the same
  ``POST /{phone-number-id}/messages`` with ``status: "read"``, the received ``message_id`` and
  ``typing_indicator: {"type": "text"}`` marks the message read and shows "typing…" until the reply is sent
  or 25 seconds pass;
* errors: ``/documentation/business-messaging/whatsapp/support/error-codes``.

**In.** ``GET /channels/whatsapp/webhook`` answers Meta's subscription handshake (``hub.mode=subscribe``,
``hub.verify_token``, ``hub.challenge``). ``POST`` carries the events: its ``X-Hub-Signature-256``
(``sha256=`` and the hex HMAC-SHA256 of the raw body, keyed with the app secret) is checked before anything
else is done with the body. Each message becomes an ``Inbound`` for ``PlatformChannel`` (dedup by the
message id ``wamid``, sender policy, stored before the webhook answers, answered through the outbox);
a file (image, document, voice message) is downloaded in the background. Kinds hearth cannot use
(location, contacts, stickers, video) are answered with a short note; reactions and system notices are
ignored, and so are group messages and events for another phone number of the same business account.
Without ``app_secret`` or ``verify_token`` the channel is off and both routes answer 404.

**Statuses.** ``sent``/``delivered``/``read``/``failed`` are recorded, never answered: ``record_status``
emits ``Event("whatsapp.status", None, {"platform_id": wamid, "status", "recipient", "errors"})`` on the
event bus, and a ``failed`` status also logs a warning on ``hearth.channels.whatsapp`` with Meta's error code
and title. ``platform_id`` is the id the send returned, which the outbox keeps in its ``platform_id``
column: ``hearth channels outbox`` / ``GET /admin/outbox`` find the message a status is about. The
recipient's number is shown only by its last four digits.

**Typing.** While the model works on a message, ``GraphApi.show_typing`` marks it read (two blue ticks) and
shows "typing…", again every ``TYPING_REFRESH`` seconds (Meta drops the indicator after 25) until the turn
ends. It is sent directly, not through the outbox: it is worth nothing once late, and a failure is only
logged (``PlatformChannel`` runs it beside the turn and cancels it when the turn ends).

**Out.** ``GraphApi.send`` is the outbox's ``Sender``. Meta's throttling errors postpone the message
without using up an attempt: the ``Retry-After`` header when there is one, otherwise ``RATE_LIMIT_WAITS``
(chosen from what each limit counts: see there). Errors that retrying cannot fix (outside the 24-hour
customer-service window, an undeliverable number, an invalid parameter or token) make the message dead at
once; 5xx and network failures are retried with the outbox's backoff.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import logging
import mimetypes
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from hearth.errors import DeliveryError, HearthError, InvalidRequest
from hearth.gateway.base import Outbound
from hearth.gateway.channels.common import (
    ChannelServices,
    Inbound,
    InboundFile,
    PlatformChannel,
    SenderRules,
)
from hearth.gateway.formatting import render
from hearth.types import Actor, Button, Event

__all__ = ["CHANNEL", "DEFAULT_API_BASE", "TYPING_REFRESH", "WEBHOOK_PATH", "Batch", "GraphApi", "WhatsAppChannel",
           "WhatsAppConfig", "WhatsAppRenderer", "delivery_error", "parse_webhook", "signature_ok"]

_log = logging.getLogger("hearth.channels.whatsapp")

CHANNEL = "whatsapp"
WEBHOOK_PATH = "/channels/whatsapp/webhook"
# The docs' examples use v25.0 (interactive list messages, media download); a version is usable for at least
# two years after the next one comes out. WHATSAPP_API_BASE moves it without a release.
DEFAULT_API_BASE = "https://graph.facebook.com/v25.0"
MAX_WEBHOOK_BYTES = 1024 * 1024  # Meta batches at most a few hundred events; a real payload is a few KB
MAX_CHALLENGE = 256
MB = 1024 * 1024

MAX_BUTTONS = 3
BUTTON_TITLE = 20
BUTTON_BODY = 1024
LIST_ROWS = 10
ROW_TITLE = 24
ROW_DESCRIPTION = 72
TYPING_REFRESH = 20.0  # Meta shows the typing indicator for 25 s at most; sent again, it is shown again
LIST_BUTTON = "Choose"
CHOOSE_PROMPT = "Please choose:"
UNSUPPORTED_NOTE = ("I can read text, photos, documents and voice messages here, but not this kind of message. "
                    "Please send it as text or as a file.")

# Throttling errors: (wait in seconds when Meta gives no Retry-After, whether it holds the whole channel).
RATE_LIMIT_WAITS: Mapping[int, tuple[float, bool]] = {
    # Pair rate limit: Meta allows about one message every 6 s from the business number to one user.
    131056: (6.0, False),
    # Throughput of the business number (messages per second): a few seconds lets the second-window pass.
    130429: (5.0, True),
    # Application (4, 613) and business-account (80007) call budgets are counted over a rolling hour:
    # a minute keeps a waiting channel at one probe per minute instead of spending the budget on retries.
    4: (60.0, True),
    613: (60.0, True),
    80007: (60.0, True),
}
HTTP_429_WAIT = (5.0, True)  # a 429 without a known code: as the throughput limit
# Retrying cannot fix these: the message is dead at once (an operator may still retry it).
PERMANENT_CODES = frozenset({
    100,  # invalid parameter
    190,  # invalid or expired access token
    10, 200, 368,  # permission missing, policy block
    131008, 131009, 131021, 131051, 131052, 131053,  # missing/invalid parameter, to self, unsupported type, media
    131026,  # undeliverable (no WhatsApp, blocked, old app)
    131030,  # recipient not in the test number's allowed list
    131031,  # business account locked
    131047,  # re-engagement: more than 24 h since the user last wrote (only a template may be sent)
    133010,  # business number not registered
})
_MEDIA_KINDS = frozenset({"image", "document", "audio"})
_IGNORED_KINDS = frozenset({"reaction", "system", "ephemeral", "request_welcome"})
_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "audio/ogg": ".ogg",
               "audio/mpeg": ".mp3", "audio/mp4": ".m4a", "audio/aac": ".aac", "application/pdf": ".pdf",
               "text/plain": ".txt"}
_MEDIA_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True, slots=True)
class WhatsAppConfig:
    """What the channel needs from the operator (``WHATSAPP_*``); secrets are kept out of ``repr``."""

    token: str = field(default="", repr=False)
    app_secret: str = field(default="", repr=False)
    verify_token: str = field(default="", repr=False)
    phone_number_id: str = ""
    api_base: str = DEFAULT_API_BASE
    max_media_bytes: int = 20 * MB
    timeout: float = 30.0

    @property
    def enabled(self) -> bool:
        """The webhook is open only when both of Meta's secrets are set."""
        return bool(self.app_secret and self.verify_token)


# --- rendering -----------------------------------------------------------------------------------------


def _length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2  # never fewer than the characters Meta counts


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(body: str) -> dict[str, Any]:
    return {"type": "text", "text": {"preview_url": False, "body": body}}


def _reply_buttons(body: str, buttons: Sequence[Button]) -> dict[str, Any]:
    return {"type": "interactive", "interactive": {
        "type": "button", "body": {"text": body},
        "action": {"buttons": [{"type": "reply", "reply": {"id": b.id, "title": _clip(b.label, BUTTON_TITLE) or "?"}}
                               for b in buttons]}}}


def _list(body: str, buttons: Sequence[Button]) -> dict[str, Any]:
    rows = []
    for button in buttons[:LIST_ROWS]:
        row: dict[str, Any] = {"id": button.id, "title": _clip(button.label, ROW_TITLE) or "?"}
        if len(button.label) > ROW_TITLE:
            row["description"] = _clip(button.label, ROW_DESCRIPTION)
        rows.append(row)
    if len(buttons) > LIST_ROWS:
        _log.info("whatsapp: a list message holds %d rows; %d buttons were left out", LIST_ROWS,
                  len(buttons) - LIST_ROWS)
    return {"type": "interactive", "interactive": {
        "type": "list", "body": {"text": body},
        "action": {"button": LIST_BUTTON, "sections": [{"title": "Options", "rows": rows}]}}}


class WhatsAppRenderer:
    """A reply as Cloud API message objects (without ``to``, which the sender adds).

    Text is the model's Markdown in WhatsApp's markup, cut at 4096 characters. Buttons ride on the last part:
    up to three as reply buttons (when that part is longer than a button body's 1024 characters, it stays a
    text message and a short "Please choose:" carries the buttons), more as a list message (whose body may
    hold 4096).
    """

    def render(self, text: str, buttons: Sequence[Button]) -> list[dict[str, Any]]:
        parts = [p for p in render(text, "whatsapp") if p.strip()] or ["…"]
        if not buttons:
            return [_text(p) for p in parts]
        head, last = parts[:-1], parts[-1]
        if len(buttons) > MAX_BUTTONS:
            return [*(_text(p) for p in head), _list(last, buttons)]
        if _length(last) > BUTTON_BODY:
            return [*(_text(p) for p in parts), _reply_buttons(CHOOSE_PROMPT, buttons)]
        return [*(_text(p) for p in head), _reply_buttons(last, buttons)]


# --- the Graph API -------------------------------------------------------------------------------------


def _retry_after(header: str | None) -> float | None:
    """``Retry-After`` as seconds (a number or an HTTP date), else None."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _graph_error(body: bytes) -> Mapping[str, Any]:
    with contextlib.suppress(orjson.JSONDecodeError):
        parsed = orjson.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            return parsed["error"]  # type: ignore[no-any-return]
    return {}


def delivery_error(status: int, body: bytes, retry_after: str | None = None) -> DeliveryError:
    """A refused send as the outbox's ``DeliveryError``: Graph's ``error.code`` decides, then the HTTP status."""
    error = _graph_error(body)
    code = error.get("code")
    code = code if isinstance(code, int) else (int(code) if isinstance(code, str) and code.isdigit() else None)
    message = str(error.get("message") or f"HTTP {status}")[:200]
    details = error.get("error_data", {}).get("details") if isinstance(error.get("error_data"), dict) else None
    text = f"WhatsApp error {code}: {message}" if code is not None else f"WhatsApp answered HTTP {status}: {message}"
    if details:
        text += f" ({str(details)[:200]})"
    if status == 429 or code in RATE_LIMIT_WAITS:
        wait, channel_wide = RATE_LIMIT_WAITS.get(code, HTTP_429_WAIT) if code is not None else HTTP_429_WAIT
        given = _retry_after(retry_after)
        return DeliveryError(text, retry_after=wait if given is None else given, channel_wide=channel_wide)
    if code in PERMANENT_CODES:
        return DeliveryError(text, permanent=True)
    return DeliveryError(text)  # 5xx, Graph's transient codes (1, 2, 131000, 131016) and the unknown: back off


class GraphApi:
    """The Cloud API calls hearth makes: send a message (the outbox's ``Sender``) and download a media file."""

    def __init__(self, config: WhatsAppConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self._config.timeout, connect=min(10.0, self._config.timeout))
            self._session = aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "hearth"})
        return self._session

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._config.token}"}

    async def send(self, address: str, payload: Mapping[str, Any]) -> str | None:
        """Send one message object to ``address`` (a phone number); the ``wamid`` Meta gave it."""
        raw = await self._post_message({"messaging_product": "whatsapp", "recipient_type": "individual",
                                        "to": address, **payload})
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, LookupError, TypeError):
            return str(orjson.loads(raw)["messages"][0]["id"])
        return None

    async def show_typing(self, message_id: str) -> None:
        """Mark a received message read and show "typing…" to its sender. Raises ``DeliveryError``."""
        await self._post_message({"messaging_product": "whatsapp", "status": "read", "message_id": message_id,
                                  "typing_indicator": {"type": "text"}})

    async def _post_message(self, body: Mapping[str, Any]) -> bytes:
        """``POST /{phone-number-id}/messages``; the response body, or ``DeliveryError``."""
        config = self._config
        if not config.token or not config.phone_number_id:
            raise DeliveryError("WhatsApp is not configured (WHATSAPP_TOKEN and WHATSAPP_PHONE_NUMBER_ID)",
                                permanent=True)
        url = f"{config.api_base.rstrip('/')}/{quote(config.phone_number_id, safe='')}/messages"
        try:
            async with self._client().post(url, data=orjson.dumps(body), headers={
                    **self._auth(), "Content-Type": "application/json"}) as response:
                raw = await response.read()
                if response.status != 200:
                    raise delivery_error(response.status, raw, response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"WhatsApp could not be reached: {type(exc).__name__}") from exc
        return raw

    async def download(self, media_id: str) -> bytes:
        """A media file a user sent: ``GET /{media-id}`` for its short-lived URL, then the file itself.

        Raises ``InvalidRequest`` (``too_large``) past ``max_media_bytes`` and ``DeliveryError`` when Meta
        does not give it; their text is shown to the user."""
        limit = self._config.max_media_bytes
        too_large = InvalidRequest(f"it is larger than the {limit // MB} MB limit", code="too_large")
        try:
            url = f"{self._config.api_base.rstrip('/')}/{quote(media_id, safe='')}"
            async with self._client().get(url, headers=self._auth()) as response:
                raw = await response.read()
                if response.status != 200:
                    raise delivery_error(response.status, raw)
            meta = orjson.loads(raw)
            location = meta.get("url") if isinstance(meta, dict) else None
            if not isinstance(location, str) or urlsplit(location).scheme not in ("http", "https"):
                raise DeliveryError("WhatsApp gave no download URL for the file")
            size = meta.get("file_size")
            if isinstance(size, int | str) and str(size).isdigit() and int(size) > limit:
                raise too_large
            data = bytearray()
            async with self._client().get(location, headers=self._auth()) as response:
                if response.status != 200:
                    raise DeliveryError(f"the download answered HTTP {response.status}")
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > limit:
                        raise too_large
            return bytes(data)
        except InvalidRequest:
            raise
        except (HearthError, aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            _log.warning("whatsapp: media %s could not be downloaded: %s", media_id, exc)
            raise DeliveryError("it could not be downloaded from WhatsApp; please send it again") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# --- the webhook ---------------------------------------------------------------------------------------


def signature_ok(body: bytes, header: str | None, app_secret: str) -> bool:
    """True when ``header`` is ``sha256=`` and the hex HMAC-SHA256 of ``body`` keyed with ``app_secret``."""
    if not header or not app_secret or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest().encode()
    return hmac.compare_digest(expected, header[len("sha256="):].strip().lower().encode())


@dataclass
class Batch:
    """What one webhook delivery holds, sorted by what hearth does with it."""

    messages: list[Inbound] = field(default_factory=list)
    unsupported: list[Inbound] = field(default_factory=list)  # answered with UNSUPPORTED_NOTE
    statuses: list[Mapping[str, Any]] = field(default_factory=list)
    errors: list[Mapping[str, Any]] = field(default_factory=list)


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list_of_dicts(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _filename(kind: str, media: Mapping[str, Any], media_id: str) -> str:
    named = media.get("filename")
    if kind == "document" and isinstance(named, str) and named.strip():
        return named.strip()
    mime = str(media.get("mime_type") or "").split(";")[0].strip().lower()
    extension = _EXTENSIONS.get(mime) or mimetypes.guess_extension(mime) or ""
    stem = {"image": "photo", "audio": "voice" if media.get("voice") else "audio"}.get(kind, kind)
    return f"{stem}-{media_id[-6:]}{extension}"


def _message(raw: Mapping[str, Any], names: Mapping[str, str],
             download: Callable[[str], Awaitable[bytes]]) -> tuple[str, Inbound] | None:
    """One message object as ("message" | "unsupported", Inbound), or None when hearth ignores it."""
    wamid, sender, kind = raw.get("id"), raw.get("from"), raw.get("type")
    if not (isinstance(wamid, str) and wamid and isinstance(sender, str) and sender and isinstance(kind, str)):
        return None
    if raw.get("group_id") or kind in _IGNORED_KINDS:
        return None
    name = names.get(sender) or (next(iter(names.values())) if len(names) == 1 else None)

    def inbound(text: Any, action: str | None = None, files: tuple[InboundFile, ...] = ()) -> Inbound:
        return Inbound(delivery_id=wamid, sender_id=sender, sender_name=name, address=sender,
                       text=str(text or ""), action=action, files=files, native=raw, message_id=wamid)

    body = _dict(raw.get(kind))
    if kind == "text" and isinstance(body.get("body"), str):
        return "message", inbound(body["body"])
    if kind == "interactive":
        reply = _dict(body.get(str(body.get("type"))))
        if body.get("type") in ("button_reply", "list_reply") and isinstance(reply.get("id"), str):
            return "message", inbound(reply.get("title"), action=reply["id"])
    if kind == "button" and isinstance(body.get("payload"), str):
        return "message", inbound(body.get("text"), action=body["payload"])
    if kind in _MEDIA_KINDS and isinstance(body.get("id"), str) and _MEDIA_ID.match(body["id"]):
        media_id = body["id"]
        mime = str(body.get("mime_type") or "").split(";")[0].strip() or None
        file = InboundFile(_filename(kind, body, media_id), mime, None, functools.partial(download, media_id))
        return "message", inbound(body.get("caption"), files=(file,))
    return "unsupported", inbound("")


def parse_webhook(payload: Any, *, phone_number_id: str,
                  download: Callable[[str], Awaitable[bytes]]) -> Batch:
    """The messages, statuses and errors of a ``whatsapp_business_account`` webhook for ``phone_number_id``
    (every phone number when it is empty); anything else in it is skipped."""
    batch = Batch()
    if _dict(payload).get("object") != "whatsapp_business_account":
        return batch
    for entry in _list_of_dicts(_dict(payload).get("entry")):
        for change in _list_of_dicts(entry.get("changes")):
            value = _dict(change.get("value"))
            if change.get("field") != "messages" or not value:
                continue
            number = _dict(value.get("metadata")).get("phone_number_id")
            if phone_number_id and number is not None and str(number) != phone_number_id:
                _log.debug("whatsapp: an event for another phone number (%s) was skipped", number)
                continue
            names = {str(c.get("wa_id")): str(_dict(c.get("profile")).get("name"))
                     for c in _list_of_dicts(value.get("contacts")) if _dict(c.get("profile")).get("name")}
            for raw in _list_of_dicts(value.get("messages")):
                parsed = _message(raw, names, download)
                if parsed is not None:
                    (batch.messages if parsed[0] == "message" else batch.unsupported).append(parsed[1])
            batch.statuses.extend(_list_of_dicts(value.get("statuses")))
            batch.errors.extend(_list_of_dicts(value.get("errors")))
    return batch


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` (read no further than that)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _masked(number: Any) -> str:
    digits = str(number or "")
    return "…" + digits[-4:] if len(digits) > 4 else "…"


def _plain(status: int, text: str) -> Response:
    return PlainTextResponse(text, status_code=status, headers={"X-Content-Type-Options": "nosniff"})


class WhatsAppChannel:
    """The WhatsApp channel: Meta's webhook in, the outbox out (see the module docstring).

    ``sender`` is what the outbox sends with (``outbox.add_sender(CHANNEL, channel.sender)``); ``deliver``
    takes messages hearth sends on its own (``messenger.add_deliverer(CHANNEL, channel)``); ``routes`` go on
    the public HTTP port. ``rules.allowlist`` may list numbers with ``+``, spaces or dashes.
    """

    name = CHANNEL

    def __init__(self, config: WhatsAppConfig, services: ChannelServices, *, rules: SenderRules) -> None:
        self.config = config
        self.sender = GraphApi(config)
        self.renderer = WhatsAppRenderer()
        self._rules = SenderRules(rules.policy, frozenset(re.sub(r"\D", "", n) for n in rules.allowlist))
        self._identities = services.identities
        self._receipts = services.receipts
        self._outbox = services.outbox
        self._events = services.events
        self._platform = PlatformChannel(CHANNEL, services, renderer=self.renderer, rules=self._rules,
                                         typing=self.typing, typing_every=TYPING_REFRESH)

    def routes(self) -> list[Route]:
        return [Route(WEBHOOK_PATH, self.verify, methods=["GET"]),
                Route(WEBHOOK_PATH, self.webhook, methods=["POST"])]

    async def verify(self, request: Request) -> Response:
        """Meta's subscription handshake: echo ``hub.challenge`` when ``hub.verify_token`` is ours."""
        if not self.config.enabled:
            return _plain(404, "Not Found")
        query = request.query_params
        mode, token, challenge = query.get("hub.mode"), query.get("hub.verify_token"), query.get("hub.challenge")
        if mode != "subscribe" or not challenge or len(challenge) > MAX_CHALLENGE:
            return _plain(400, "expected hub.mode=subscribe, hub.verify_token and hub.challenge")
        if token is None or not hmac.compare_digest(token.encode(), self.config.verify_token.encode()):
            _log.warning("whatsapp: a webhook handshake with a wrong verify token was refused")
            self._platform.refused("verify_token")
            return _plain(403, "wrong verify token")
        return _plain(200, challenge)

    async def webhook(self, request: Request) -> Response:
        """Events from Meta: signature first, then the body; 200 once every message in it is stored."""
        if not self.config.enabled:
            return _plain(404, "Not Found")
        signature = request.headers.get("x-hub-signature-256")
        if not signature or not signature.startswith("sha256="):
            self._platform.refused("signature")
            return _plain(401, "missing X-Hub-Signature-256")
        body = await _read_capped(request, MAX_WEBHOOK_BYTES)
        if body is None:
            return _plain(413, "payload too large")
        if not signature_ok(body, signature, self.config.app_secret):
            _log.warning("whatsapp: a webhook with a wrong signature was refused")
            self._platform.refused("signature")
            return _plain(401, "wrong signature")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _plain(400, "the body is not JSON")
        if not isinstance(payload, dict):
            return _plain(400, "the body is not a JSON object")
        batch = parse_webhook(payload, phone_number_id=self.config.phone_number_id, download=self.sender.download)
        for status in batch.statuses:
            self.record_status(status)
        for error in batch.errors:
            _log.warning("whatsapp: Meta reported error %s: %s", error.get("code"), error.get("title"))
        try:
            for message in batch.messages:
                await self._platform.receive(message)
            for message in batch.unsupported:
                await self._note(message)
        except HearthError as exc:  # not stored: Meta delivers the webhook again, and dedup keeps what was taken
            _log.warning("whatsapp: a webhook could not be stored, Meta will retry it: %s", exc)
            return _plain(503, "try again later")
        return _plain(200, "ok")

    async def _note(self, message: Inbound) -> None:
        """Answer a kind of message hearth cannot use, once, to a sender the policy lets talk."""
        if not await self._receipts.first_receipt(CHANNEL, message.delivery_id):
            return
        known = await self._identities.resolve(CHANNEL, message.sender_id, message.sender_name,
                                               policy=self._rules.policy, allowlist=self._rules.allowlist)
        text = UNSUPPORTED_NOTE if isinstance(known, Actor) else getattr(known, "text", None)
        if text:
            await self._outbox.put(CHANNEL, message.address, self.renderer.render(text, ()))

    def record_status(self, status: Mapping[str, Any]) -> None:
        """Record a delivery status of a message hearth sent (sent, delivered, read, failed): an event for
        the bus, and for ``failed`` a warning with Meta's error code and title. Never answered."""
        errors = [{"code": e.get("code"), "title": str(e.get("title") or e.get("message") or "")[:200]}
                  for e in _list_of_dicts(status.get("errors"))]
        wamid, state = str(status.get("id") or ""), str(status.get("status") or "")
        self._events.emit(Event("whatsapp.status", None, {
            "platform_id": wamid, "status": state, "recipient": _masked(status.get("recipient_id")),
            "timestamp": status.get("timestamp"), "errors": errors}))
        if state == "failed":
            first = errors[0] if errors else {"code": None, "title": "no reason given"}
            _log.warning("whatsapp: message %s to %s failed: error %s: %s", wamid,
                         _masked(status.get("recipient_id")), first["code"], first["title"])
        else:
            _log.debug("whatsapp: message %s is %s", wamid, state)

    async def typing(self, address: str, message_id: str | None) -> None:
        """The typing indicator for the message being answered (WhatsApp has none without one)."""
        if message_id:
            await self.sender.show_typing(message_id)

    async def deliver(self, message: Outbound) -> bool:
        """A message hearth sends on its own (a reminder), to the number its conversation lives at."""
        return await self._platform.deliver(message)

    async def aclose(self, grace: float = 5.0) -> None:
        """Let answers being prepared reach the outbox, then close the HTTP client."""
        await self._platform.close(grace)
        await self.sender.aclose()

