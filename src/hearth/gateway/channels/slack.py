"""Slack: the Events API and interactivity in, ``chat.postMessage`` out, through ``PlatformChannel``.

In (``routes``):

* ``POST /channels/slack/events`` (the app's Event Subscriptions Request URL) and ``POST /channels/slack/interactive``
  (its Interactivity Request URL). Every request is checked before anything is parsed: the body is capped at 1 MiB
  (413), then ``X-Slack-Signature`` is verified over the raw body with the signing secret and a 5-minute window on
  ``X-Slack-Request-Timestamp`` either way (https://api.slack.com/authentication/verifying-requests-from-slack) — a
  failure is a 401 and nothing is stored. Without a signing secret the channel is off: both routes answer 404.
* ``url_verification`` is answered with its ``challenge``. An ``event_callback`` is stored and answered 200 at once
  (Slack retries after 3 s); the turn runs in the background. The dedup key is the ``event_id``, so Slack's
  redeliveries (``X-Slack-Retry-Num``) are dropped by the receipt.
* Taken: ``app_mention`` (the bot's ``<@U…>`` removed from the text) and ``message`` with ``channel_type: "im"``.
  Ignored: anything with a ``bot_id`` or from the bot's own user (``auth.test`` at ``start``, else the event's
  ``authorizations``), and every ``subtype`` but ``file_share`` (edits, deletions, joins, topics...). Files come from
  ``url_private_download`` with the bot token as Bearer — sent only to ``files.slack.com`` or the API base's host.
* A ``block_actions`` press of one of hearth's buttons becomes a message whose ``action`` is the button's ``value``
  (hearth's button id) and whose text is its label. In a DM, where only the person asked can press, the original
  message is then replaced through ``response_url`` with its text and "<@user> chose *Yes*" instead of the buttons;
  in a channel anybody could press, so the buttons stay (a second answer gets "already answered").

Where replies go (the address names the conversation): a mention in a channel is answered in its thread
(``C123:<thread_ts or ts>``). A DM is one conversation answered at the top level (``D123``), except a message
written inside a DM thread, answered in that thread (``D123:<thread_ts>``). An unknown member who mentions the
bot in a channel is told there to write to it in a DM: the pairing code is only ever sent in the DM.

Out (``send``, the outbox's ``Sender``): ``chat.postMessage`` with ``channel``, ``thread_ts``, mrkdwn ``text`` and
``blocks`` (``SlackRenderer``). Slack's limits are per method, workspace and channel (``chat.postMessage``: about one
message per second per channel, https://api.slack.com/docs/rate-limits), so a 429 or ``ratelimited`` postpones only
that message by ``Retry-After`` (``channel_wide=False``): other conversations keep going. Errors that retrying
cannot fix (``channel_not_found``, ``not_in_channel``, ``is_archived``, ``invalid_auth``, ...) are permanent; 5xx,
other errors and network failures are retried by the outbox. The web client itself never retries.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import orjson
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hearth.errors import ConfigError, DeliveryError, HearthError, InvalidRequest
from hearth.gateway.base import Outbound
from hearth.gateway.formatting import split, to_slack
from hearth.types import Button

from .common import ChannelServices, Inbound, InboundFile, PlatformChannel, SenderRules

__all__ = [
    "CHANNEL", "EVENTS_PATH", "INTERACTIVE_PATH", "PERMANENT_ERRORS", "SECTION_LIMIT", "SlackChannel", "SlackConfig",
    "SlackRenderer", "plain_text",
]

_log = logging.getLogger("hearth.channels.slack")

CHANNEL = "slack"
EVENTS_PATH = "/channels/slack/events"
INTERACTIVE_PATH = "/channels/slack/interactive"
DEFAULT_API_BASE = "https://slack.com/api/"
MAX_BODY = 1_048_576
# A section block's text holds at most 3,000 characters (https://api.slack.com/reference/block-kit/blocks#section),
# fewer than chat.postMessage's 4,000 (SLACK_LIMIT): every part is sent as a section, so it is the section's limit.
SECTION_LIMIT = 3000
BUTTON_LABEL_LIMIT = 75  # a button's plain_text (https://api.slack.com/reference/block-kit/block-elements#button)
BUTTON_VALUE_LIMIT = 2000
ACTIONS_LIMIT = 25  # elements of one actions block
DEFAULT_RETRY_AFTER = 5.0  # a 429 without Retry-After (Slack always sends it; a proxy might not)
_FILES_ORIGIN = ("https", "files.slack.com", 443)

# Errors of chat.postMessage that trying again cannot fix (https://api.slack.com/methods/chat.postMessage#errors).
PERMANENT_ERRORS = frozenset({
    "channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "account_inactive", "token_revoked",
    "token_expired", "not_authed", "no_permission", "missing_scope", "ekm_access_denied", "team_access_not_granted",
    "invalid_blocks", "invalid_blocks_format", "msg_too_long", "no_text", "too_many_attachments",
    "restricted_action", "restricted_action_read_only_channel", "restricted_action_thread_only_channel",
    "restricted_action_non_threadable_channel", "cannot_reply_to_message", "invalid_arguments", "invalid_thread_ts",
    "message_limit_exceeded", "not_allowed_token_type", "channel_type_not_supported",
})
_TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"})
# <@U123>, <@U123|name>, <#C123|general>, <!here>, <!subteam^S1|@team>, <https://x|label>, <mailto:a@b|a@b>
_ANGLE = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


@dataclass(frozen=True, slots=True)
class SlackConfig:
    """What the Slack channel needs from the settings. An empty ``signing_secret`` turns the channel off."""

    bot_token: str = field(default="", repr=False)
    signing_secret: str = field(default="", repr=False)
    api_base: str = DEFAULT_API_BASE
    rules: SenderRules = field(default_factory=SenderRules)  # pairing
    timeout: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.signing_secret)


class SlackRenderer:
    """A reply as chat.postMessage payloads: mrkdwn text cut to the section limit, the buttons under the last part.

    Each payload is ``{"text", "blocks"}``: ``text`` is the notification fallback, ``blocks`` a mrkdwn ``section``
    and, on the last part, an ``actions`` block of ``button``s whose ``value`` is hearth's button id (``primary``
    for ``confirm:`` ids, ``danger`` for ``cancel:`` ones).
    """

    def __init__(self, limit: int = SECTION_LIMIT) -> None:
        self._limit = limit

    def render(self, text: str, buttons: Sequence[Button]) -> list[dict[str, Any]]:
        parts = split(to_slack(text), self._limit, dialect="slack")
        if not parts and buttons:
            parts = ["…"]
        payloads: list[dict[str, Any]] = []
        for index, part in enumerate(parts):
            blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": part}}]
            if buttons and index == len(parts) - 1:
                blocks.append({"type": "actions", "elements": [_button(i, b) for i, b in
                                                               enumerate(buttons[:ACTIONS_LIMIT])]})
            payloads.append({"text": part, "blocks": blocks})
        return payloads


def _button(index: int, button: Button) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "action_id": f"hearth-{index}",
        "text": {"type": "plain_text", "text": button.label[:BUTTON_LABEL_LIMIT] or "…", "emoji": True},
        "value": button.id[:BUTTON_VALUE_LIMIT],
    }
    if button.id.startswith("confirm:"):
        element["style"] = "primary"
    elif button.id.startswith("cancel:"):
        element["style"] = "danger"
    return element


class SlackChannel:
    """The Slack adapter: webhook routes, the outbox's sender (``send``) and the messenger's ``deliver``."""

    def __init__(self, config: SlackConfig, services: ChannelServices) -> None:
        self._config = config
        self._events = services.events
        self._files = services.files
        self._verifier = SignatureVerifier(config.signing_secret) if config.enabled else None
        self._client = AsyncWebClient(token=config.bot_token or None, base_url=config.api_base,
                                      timeout=max(1, round(config.timeout)), retry_handlers=[])
        self._token_origins = {_FILES_ORIGIN, _origin(config.api_base)}
        self._channel = PlatformChannel(CHANNEL, services, renderer=SlackRenderer(), rules=config.rules)
        self._tasks: set[asyncio.Task[None]] = set()
        self.bot_user: str | None = None

    @property
    def name(self) -> str:
        return CHANNEL

    @property
    def enabled(self) -> bool:
        return self._config.enabled

    def routes(self) -> list[Route]:
        return [Route(EVENTS_PATH, self.handle_events, methods=["POST"]),
                Route(INTERACTIVE_PATH, self.handle_interaction, methods=["POST"])]

    async def start(self) -> None:
        """Learn the bot's own user id (``auth.test``). A refused token is a ``ConfigError``; Slack being away is
        only logged — the id then comes from the events' ``authorizations``."""
        if not self.enabled:
            return
        if not self._config.bot_token:
            raise ConfigError("SLACK_BOT_TOKEN", "required when SLACK_SIGNING_SECRET is set")
        try:
            identity = await self._client.auth_test()
        except SlackApiError as exc:
            error = _api_error(exc)
            if error in _TOKEN_ERRORS:
                raise ConfigError("SLACK_BOT_TOKEN", f"Slack refused the bot token ({error})") from exc
            _log.warning("slack: auth.test failed (%s); the bot's user id will come from the events", error)
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            _log.warning("slack: auth.test could not reach Slack (%s); the bot's user id will come from the events",
                         type(exc).__name__)
            return
        self.bot_user = str(identity.get("user_id") or "") or None
        _log.info("slack: signed in as %s in team %s", identity.get("user"), identity.get("team"))

    async def close(self, grace: float = 5.0) -> None:
        """Let answers being prepared reach the outbox, and message updates reach Slack, for up to ``grace``."""
        await self._channel.close(grace)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()

    # --- in ---------------------------------------------------------------------------------------------------

    async def handle_events(self, request: Request) -> Response:
        checked = await self._checked_body(request)
        if isinstance(checked, Response):
            return checked
        try:
            data = orjson.loads(checked)
        except orjson.JSONDecodeError:
            return _problem(400, "the body is not JSON")
        if not isinstance(data, dict):
            return _problem(400, "the body is not a JSON object")
        kind = data.get("type")
        if kind == "url_verification":
            return Response(orjson.dumps({"challenge": str(data.get("challenge") or "")}),
                            media_type="application/json")
        if kind == "app_rate_limited":
            _log.warning("slack: Slack is holding back events for this app (app_rate_limited)")
        if kind != "event_callback":
            return Response(status_code=200)
        message = self._from_event(data)
        if message is not None:
            retry = request.headers.get("x-slack-retry-num")
            if retry:
                _log.debug("slack: event %s delivered again (retry %s, %s)", message.delivery_id, retry,
                           request.headers.get("x-slack-retry-reason"))
            try:
                await self._channel.receive(message)
            except HearthError as exc:
                return self._not_stored(message, exc)
        return Response(status_code=200)

    async def handle_interaction(self, request: Request) -> Response:
        checked = await self._checked_body(request)
        if isinstance(checked, Response):
            return checked
        try:
            fields = parse_qs(checked.decode("utf-8"), keep_blank_values=True)
            payload = orjson.loads(fields["payload"][0])
        except (UnicodeDecodeError, KeyError, IndexError, orjson.JSONDecodeError):
            return _problem(400, "expected a form with a JSON 'payload' field")
        if not isinstance(payload, dict):
            return _problem(400, "the payload is not a JSON object")
        if payload.get("type") != "block_actions":
            return Response(status_code=200)
        for message in _from_actions(payload):
            try:
                taken = await self._channel.receive(message)
            except HearthError as exc:
                return self._not_stored(message, exc)
            if taken and message.address.startswith("D") and payload.get("response_url"):
                self._spawn(self._show_choice(payload, message))
        return Response(status_code=200)

    @staticmethod
    def _not_stored(message: Inbound, exc: HearthError) -> Response:
        """Not stored: a 500 makes Slack deliver the event again (a button press is not redelivered)."""
        _log.warning("slack: could not take %s: %s", message.delivery_id, exc)
        return _problem(500, "not stored; deliver again")

    async def _checked_body(self, request: Request) -> bytes | Response:
        """The raw body, or the response refusing it: off (404), too large (413), not signed by Slack (401)."""
        if self._verifier is None:
            return Response(status_code=404)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            return _problem(413, f"the body is larger than {MAX_BODY} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return _problem(413, f"the body is larger than {MAX_BODY} bytes")
        raw = bytes(body)
        timestamp = request.headers.get("x-slack-request-timestamp")
        signature = request.headers.get("x-slack-signature")
        try:
            valid = bool(timestamp and signature and self._verifier.is_valid(raw, timestamp, signature))
        except (ValueError, UnicodeDecodeError):  # a timestamp that is not a number, a body that is not UTF-8
            valid = False
        if not valid:
            self._channel.refused("signature")
            return _problem(401, "the request is not signed by Slack")
        return raw

    def _from_event(self, data: Mapping[str, Any]) -> Inbound | None:
        event = data.get("event")
        event_id = data.get("event_id")
        if not isinstance(event, dict) or not isinstance(event_id, str) or not event_id:
            return None
        kind = event.get("type")
        direct = kind == "message" and event.get("channel_type") == "im"
        if not (kind == "app_mention" or direct):
            return None
        if event.get("bot_id") or event.get("subtype") not in (None, "file_share"):
            return None
        user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
        if not (isinstance(user, str) and isinstance(channel, str) and isinstance(ts, str)) or not user:
            return None
        bot_user = self.bot_user or _authorized_bot(data)
        if user == bot_user:
            return None
        thread = event.get("thread_ts") if isinstance(event.get("thread_ts"), str) else None
        address = (f"{channel}:{thread}" if thread else channel) if direct else f"{channel}:{thread or ts}"
        text = plain_text(str(event.get("text") or ""), bot_user)
        files = tuple(f for f in (self._file(item) for item in event.get("files") or ()) if f is not None)
        if not text and not files:
            return None
        return Inbound(delivery_id=event_id, sender_id=user, sender_name=_display_name(event), address=address,
                       text=text, files=files, native=event, message_id=ts, private=direct)

    def _file(self, item: object) -> InboundFile | None:
        if not isinstance(item, dict):
            return None
        url = item.get("url_private_download") or item.get("url_private")
        if not isinstance(url, str) or item.get("is_external"):
            return None  # a tombstone, a Slack Connect file behind file_access, a Google Drive link
        size = item.get("size")
        name = str(item.get("name") or item.get("title") or item.get("id") or "file")
        mimetype = item.get("mimetype") if isinstance(item.get("mimetype"), str) else None

        def fetch() -> Awaitable[bytes]:
            return self.download(url)

        return InboundFile(name, mimetype, size if isinstance(size, int) else None, fetch)

    async def download(self, url: str) -> bytes:
        """A file's bytes from Slack, with the bot token; at most the file sink's limit."""
        if _origin(url) not in self._token_origins:
            raise InvalidRequest("it is not on Slack's file server", code="unsupported_file")
        limit = self._files.max_bytes if self._files is not None else MAX_BODY
        headers = {"Authorization": f"Bearer {self._config.bot_token}"}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session, \
                    session.get(url, headers=headers) as response:
                if response.status != 200:
                    raise DeliveryError(f"Slack did not hand it over (HTTP {response.status})")
                if response.content_type == "text/html":  # Slack's sign-in page: the token lacks files:read
                    raise DeliveryError("Slack did not hand it over (the app needs the files:read scope)")
                data = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    data += chunk
                    if len(data) > limit:
                        raise InvalidRequest(f"it is larger than the {limit // (1024 * 1024)} MB limit",
                                             code="too_large")
                return bytes(data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"Slack could not be reached for it ({type(exc).__name__})") from exc

    async def _show_choice(self, payload: Mapping[str, Any], message: Inbound) -> None:
        """Replace the buttons of the message that was answered with what was chosen (``response_url``)."""
        original = _dict(payload.get("message"))
        blocks = [b for b in original.get("blocks") or () if isinstance(b, dict) and b.get("type") != "actions"]
        choice = f"<@{message.sender_id}> chose *{_escape(message.text)}*"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": choice}]})
        hook = AsyncWebhookClient(str(payload["response_url"]), timeout=max(1, round(self._config.timeout)),
                                  retry_handlers=[])
        try:
            response = await hook.send(text=str(original.get("text") or choice), blocks=blocks, replace_original=True)
        except (aiohttp.ClientError, TimeoutError) as exc:
            _log.info("slack: could not update the answered message: %s", type(exc).__name__)
            return
        if response.status_code != 200:
            _log.info("slack: response_url refused the update (HTTP %d)", response.status_code)

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- out --------------------------------------------------------------------------------------------------

    async def send(self, address: str, payload: Mapping[str, Any]) -> str | None:
        """``chat.postMessage`` to ``channel[:thread_ts]``; the message's ``ts``. Raises ``DeliveryError``."""
        channel, _, thread = address.partition(":")
        arguments: dict[str, Any] = {"channel": channel, "text": str(payload.get("text") or "")}
        if thread:
            arguments["thread_ts"] = thread
        if payload.get("blocks"):
            arguments["blocks"] = payload["blocks"]
        try:
            response = await self._client.chat_postMessage(**arguments)
        except SlackApiError as exc:
            raise _delivery_error(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"Slack could not be reached: {type(exc).__name__}") from exc
        ts = response.get("ts")
        return str(ts) if ts else None

    async def deliver(self, message: Outbound) -> bool:
        """A message hearth sends on its own (a reminder) to the conversation's channel or thread."""
        return await self._channel.deliver(message)


def _from_actions(payload: Mapping[str, Any]) -> list[Inbound]:
    """One message per button pressed, addressed like the conversation the buttons were posted in."""
    user, message = _dict(payload.get("user")), _dict(payload.get("message"))
    container = _dict(payload.get("container"))
    user_id = user.get("id")
    channel = _dict(payload.get("channel")).get("id") or container.get("channel_id")
    if not isinstance(user_id, str) or not user_id or not isinstance(channel, str) or not channel:
        return []
    thread = message.get("thread_ts") or container.get("thread_ts")
    if channel.startswith("D") and thread == (message.get("ts") or container.get("message_ts")):
        thread = None  # a top-level DM message that has since got a thread: still the DM's conversation
    address = f"{channel}:{thread}" if isinstance(thread, str) and thread else channel
    name = user.get("username") or user.get("name")
    taken: list[Inbound] = []
    for action in payload.get("actions") or ():
        if not isinstance(action, dict) or action.get("type") != "button" or not isinstance(action.get("value"), str):
            continue
        label = _dict(action.get("text")).get("text")
        stamp = action.get("action_ts") or payload.get("trigger_id") or container.get("message_ts")
        taken.append(Inbound(delivery_id=f"action:{stamp}:{action.get('action_id')}", sender_id=user_id,
                             sender_name=name if isinstance(name, str) else None, address=address,
                             text=str(label or action["value"]), action=action["value"], native=payload,
                             private=channel.startswith("D")))
    return taken


def plain_text(text: str, bot_user: str | None) -> str:
    """Slack's message markup as plain text for the model: the bot's own mention dropped, other mentions as
    ``@name``/``#channel``, links as ``label (url)``, and ``&amp;``/``&lt;``/``&gt;`` decoded."""

    def angle(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("@"):
            return "" if target[1:] == bot_user else f"@{label or target[1:]}"
        if target.startswith("#"):
            return f"#{label or target[1:]}"
        if target.startswith("!"):
            special = target[1:].split("^", 1)[0]
            return label or (f"@{special}" if special in ("here", "channel", "everyone") else "")
        address = target.removeprefix("mailto:")
        return address if not label or label in (target, address) else f"{label} ({address})"

    return re.sub(r"[ \t]{2,}", " ", html.unescape(_ANGLE.sub(angle, text))).strip()


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _display_name(event: Mapping[str, Any]) -> str | None:
    profile = event.get("user_profile")
    if isinstance(profile, dict):
        for key in ("display_name", "real_name", "name"):
            if isinstance(profile.get(key), str) and profile[key].strip():
                return str(profile[key]).strip()
    return None


def _authorized_bot(data: Mapping[str, Any]) -> str | None:
    for authorization in data.get("authorizations") or ():
        if isinstance(authorization, dict) and authorization.get("is_bot") and authorization.get("user_id"):
            return str(authorization["user_id"])
    return None


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port


def _api_error(exc: SlackApiError) -> str | None:
    data = getattr(exc.response, "data", None)
    error = data.get("error") if isinstance(data, dict) else None
    return str(error) if error else None


def _retry_after(exc: SlackApiError) -> float:
    headers = getattr(exc.response, "headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else DEFAULT_RETRY_AFTER
    except ValueError:
        return DEFAULT_RETRY_AFTER


def _delivery_error(exc: SlackApiError) -> DeliveryError:
    status = int(getattr(exc.response, "status_code", 0) or 0)
    error = _api_error(exc)
    if status == 429 or error == "ratelimited":
        wait = _retry_after(exc)
        return DeliveryError(f"Slack rate limited chat.postMessage (HTTP {status}); retry after {wait:g}s",
                             retry_after=wait, channel_wide=False)
    if error in PERMANENT_ERRORS:
        return DeliveryError(f"Slack refused the message: {error}", permanent=True)
    return DeliveryError(f"Slack answered HTTP {status}: {error or 'no error code'}")


def _problem(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status_code=status, media_type="application/json")
