"""The chat platforms end to end, through the composition root.

The other platform tests serve one adapter's routes on a server of their own. Here the channels are configured
the way an operator configures them — ``TELEGRAM_*``, ``SLACK_*`` and ``WHATSAPP_*`` settings, with each API base
URL pointing at a fake platform server from ``hearth.testing`` on 127.0.0.1 — and the whole hearth is run:
in-process with ``running_hearth`` (the runtime built from ``Settings`` as ``hearth serve`` builds it), and as a
real ``hearth serve`` child process that is SIGKILLed while a reply is waiting in the outbox for a retry.

Payloads follow the platforms' documentation: Telegram's ``Update`` (https://core.telegram.org/bots/api#update),
Slack's Events API wrapper with ``app_mention`` and ``message.im`` (https://api.slack.com/apis/events-api, signed
as https://api.slack.com/authentication/verifying-requests-from-slack describes, with slack_sdk's signer) and
Meta's WhatsApp ``messages`` webhook (signed with ``X-Hub-Signature-256``, HMAC-SHA256 over the raw body keyed
with the app secret).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from slack_sdk.signature import SignatureVerifier

from hearth.errors import ConfigError
from hearth.runtime import Runtime
from hearth.store import Database, PlainTextCodec
from hearth.store.channels import ChannelRepository, OutboxItem
from hearth.testing.fake_slack import FakeSlack
from hearth.testing.fake_telegram import DEFAULT_TOKEN, FakeTelegram
from hearth.testing.fake_telegram import Failure as TelegramFailure
from hearth.testing.fake_whatsapp import FakeWhatsApp
from hearth.testing.modelsim import ModelSimulator, Turn
from tests.support.hearth import RunningHearth, running_hearth
from tests.support.process import Server

# Telegram
TG_SECRET = "s3cret-webhook_token"
TG_PATH = "/channels/telegram/webhook"
ANN = 555
GROUP = -1001234567890
BOT = "hearth_test_bot"
DATE = 1_735_689_600
# Slack
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the example signing secret of Slack's verification guide
SLACK_PATH = "/channels/slack/events"
SLACK_USER = "U061F7AUR"
TEAM = "T0HEARTH"
SLACK_CHANNEL = "C123ABC456"
SLACK_DM = "D024BE91L"
# WhatsApp
APP_SECRET = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
VERIFY_TOKEN = "meatyhamhock"
PHONE_NUMBER_ID = "106540352242922"  # the business phone number id of Meta's examples
WA_PATH = "/channels/whatsapp/webhook"
WA_USER = "16505551234"


# --- the platforms' payloads, as their documentation shows them ---------------------------------------------


def tg_update(update_id: int, text: str, *, chat: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """An ``Update`` carrying a ``Message`` from Ann (a private chat unless ``chat`` says otherwise)."""
    message = {"message_id": update_id, "from": {"id": ANN, "is_bot": False, "first_name": "Ann",
                                                 "language_code": "en"},
               "chat": chat or {"id": ANN, "first_name": "Ann", "type": "private"}, "date": DATE, "text": text,
               **extra}
    return {"update_id": update_id, "message": message}


def tg_topic_mention(update_id: int, text: str, thread: int) -> dict[str, Any]:
    """A message in a forum topic of a supergroup that mentions the bot (``@hearth_test_bot ...``)."""
    mention = f"@{BOT}"
    chat = {"id": GROUP, "title": "Family", "type": "supergroup", "is_forum": True}
    return tg_update(update_id, f"{mention} {text}", chat=chat, message_thread_id=thread, is_topic_message=True,
                     entities=[{"type": "mention", "offset": 0, "length": len(mention)}])


def slack_wrap(event: dict[str, Any], event_id: str) -> dict[str, Any]:
    """The event wrapper of https://api.slack.com/apis/events-api#callback-field."""
    return {"token": "XXYYZZ", "team_id": TEAM, "api_app_id": "A123ABC456", "event": event, "type": "event_callback",
            "authorizations": [{"enterprise_id": None, "team_id": TEAM, "user_id": "U0HEARTH", "is_bot": True,
                                "is_enterprise_install": False}],
            "event_id": event_id, "event_time": 1515449522}


def slack_mention(text: str, event_id: str, ts: str) -> dict[str, Any]:
    """https://api.slack.com/events/app_mention"""
    return slack_wrap({"type": "app_mention", "user": SLACK_USER, "text": text, "ts": ts, "channel": SLACK_CHANNEL,
                       "event_ts": ts}, event_id)


def slack_direct(text: str, event_id: str, ts: str) -> dict[str, Any]:
    """https://api.slack.com/events/message.im"""
    return slack_wrap({"type": "message", "channel": SLACK_DM, "user": SLACK_USER, "text": text, "ts": ts,
                       "event_ts": ts, "channel_type": "im"}, event_id)


def slack_signed(body: bytes, *, secret: str = SLACK_SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature,
            "Content-Type": "application/json"}


def wa_text(body: str, wamid: str) -> dict[str, Any]:
    """A ``messages`` webhook with one text message (Meta's webhook reference, "Text messages")."""
    raw = {"from": WA_USER, "id": wamid, "timestamp": "1739321024", "type": "text", "text": {"body": body}}
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
                  "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": WA_USER}], "messages": [raw]},
        "field": "messages"}]}]}


def wa_signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


# --- the platforms, and hearth configured for them -----------------------------------------------------------


@dataclass
class Platforms:
    telegram: FakeTelegram
    slack: FakeSlack
    meta: FakeWhatsApp


@pytest.fixture
async def platforms() -> AsyncIterator[Platforms]:
    async with FakeTelegram(username=BOT, poll_cap=0.5, lifetime=60) as telegram, \
            FakeSlack(team=TEAM, lifetime=60) as slack, \
            FakeWhatsApp(phone_number_id=PHONE_NUMBER_ID, lifetime=60) as meta:
        yield Platforms(telegram, slack, meta)


def channel_settings(p: Platforms, policy: str = "open") -> dict[str, Any]:
    """The three channels' settings, as an operator sets them, with the API base URLs at the fakes."""
    return {
        "telegram_bot_token": DEFAULT_TOKEN, "telegram_webhook_secret": TG_SECRET, "telegram_mode": "webhook",
        "telegram_api_base": p.telegram.api_base, "telegram_sender_policy": policy,
        "slack_bot_token": p.slack.token, "slack_signing_secret": SLACK_SECRET, "slack_api_base": p.slack.api_url,
        "slack_sender_policy": policy,
        "whatsapp_token": p.meta.token, "whatsapp_app_secret": APP_SECRET, "whatsapp_verify_token": VERIFY_TOKEN,
        "whatsapp_phone_number_id": PHONE_NUMBER_ID, "whatsapp_api_base": p.meta.api_base,
        "whatsapp_sender_policy": policy,
    }


@dataclass
class Wired:
    running: RunningHearth
    http: httpx.AsyncClient

    @property
    def runtime(self) -> Runtime:
        return self.running.runtime

    async def telegram(self, update: Any, secret: str | None = TG_SECRET) -> httpx.Response:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        return await self.http.post(TG_PATH, content=orjson.dumps(update),
                                    headers={**headers, "Content-Type": "application/json"})

    async def slack(self, payload: Any, **signing: Any) -> httpx.Response:
        body = orjson.dumps(payload)
        return await self.http.post(SLACK_PATH, content=body, headers=slack_signed(body, **signing))

    async def whatsapp(self, payload: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        body = orjson.dumps(payload)
        return await self.http.post(WA_PATH, content=body, headers=wa_signed(body) if headers is None else headers)

    async def outbox(self) -> list[OutboxItem]:
        return await self.runtime.channel_store.list()

    async def sent_outbox(self, count: int) -> list[OutboxItem]:
        """The outbox once ``count`` messages in it are marked sent (oldest first)."""
        async def done() -> bool:
            return sum(item.status == "sent" for item in await self.outbox()) >= count

        await eventually(done)
        return list(reversed(await self.outbox()))


@pytest.fixture
async def wired(sim: ModelSimulator, tmp_path: Path, platforms: Platforms) -> AsyncIterator[Wired]:
    """A whole hearth with all three channels on, senders let in by the ``open`` policy."""
    async with running_hearth(tmp_path / "data", ai_model_endpoint=sim.url,
                              **channel_settings(platforms)) as running, \
            httpx.AsyncClient(base_url=running.http_url, timeout=10) as http:
        yield Wired(running, http)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not await check():
            await asyncio.sleep(0.02)


async def wa_messages(meta: FakeWhatsApp, count: int, within: float = 10.0) -> list[dict[str, Any]]:
    async def enough() -> bool:
        return len(meta.messages) >= count

    await eventually(enough, within)
    return list(meta.messages)


# --- a reply reaches each platform as its API expects it --------------------------------------------------


async def test_telegram_a_webhook_update_is_answered_with_send_message(wired: Wired, platforms: Platforms,
                                                                      sim: ModelSimulator) -> None:
    telegram = platforms.telegram
    assert [call.method for call in telegram.calls] == ["getMe"]  # start-up asked who the bot is
    sim.script(Turn(text="Noted: the boiler (gas) is due on 3.4."), Turn(text="Pong!"))

    assert (await wired.telegram(tg_update(100, "When is the boiler due?"))).status_code == 200
    [sent] = await telegram.wait_for("sendMessage", 1, within=10)
    assert sent.params == {"chat_id": ANN, "text": "Noted: the boiler \\(gas\\) is due on 3\\.4\\.",
                           "parse_mode": "MarkdownV2"}

    assert (await wired.telegram(tg_topic_mention(101, "ping", thread=42))).status_code == 200
    _, topic = await telegram.wait_for("sendMessage", 2, within=10)
    assert topic.params == {"chat_id": GROUP, "message_thread_id": 42, "text": "Pong\\!", "parse_mode": "MarkdownV2"}

    assert [r.last_user_text for r in sim.requests] == ["When is the boiler due?", "ping"]
    first, second = await wired.sent_outbox(2)
    assert (first.channel, first.address, first.attempts) == ("telegram", str(ANN), 1)
    assert (second.channel, second.address, second.attempts) == ("telegram", f"{GROUP}:42", 1)
    assert first.platform_id and second.platform_id
    linked = await wired.runtime.users.find_identity("telegram", str(ANN))
    assert linked is not None and linked[1].name == "telegram-ann"  # the open policy made Ann a user


async def test_slack_a_mention_is_answered_in_its_thread_and_a_dm_at_the_top(wired: Wired, platforms: Platforms,
                                                                            sim: ModelSimulator) -> None:
    slack = platforms.slack
    assert [call.method for call in slack.calls] == ["auth.test"]  # start-up learnt the bot's user id
    sim.script(Turn(text="The plan: **dinner** at 7 & a walk."), Turn(text="Yes, I hear you."))

    mention = slack_mention("<@U0HEARTH> what is the plan?", "Ev0E2E0001", ts="1515449522.000016")
    assert (await wired.slack(mention)).status_code == 200
    [posted] = await slack.wait_for("chat.postMessage", 1)
    text = "The plan: *dinner* at 7 &amp; a walk."
    assert posted.body == {"channel": SLACK_CHANNEL, "thread_ts": "1515449522.000016", "text": text,
                           "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
    assert posted.headers["Authorization"] == f"Bearer {slack.token}"

    assert (await wired.slack(slack_direct("can you hear me?", "Ev0E2E0002", ts="1355517523.000005"))
            ).status_code == 200
    _, direct = await slack.wait_for("chat.postMessage", 2)
    assert direct.body == {"channel": SLACK_DM, "text": "Yes, I hear you.",
                           "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Yes, I hear you."}}]}

    assert [r.last_user_text for r in sim.requests] == ["what is the plan?", "can you hear me?"]
    first, second = await wired.sent_outbox(2)
    assert (first.address, second.address) == (f"{SLACK_CHANNEL}:1515449522.000016", SLACK_DM)
    assert first.platform_id == slack.messages[0]["ts"] and second.platform_id == slack.messages[1]["ts"]


async def test_whatsapp_a_text_message_is_answered_through_the_graph_api(wired: Wired, platforms: Platforms,
                                                                        sim: ModelSimulator) -> None:
    meta = platforms.meta
    sim.script(Turn(text="The **boiler** was serviced on 3 March."))
    assert (await wired.whatsapp(wa_text("When was the boiler serviced?", "wamid.E2E0001"))).status_code == 200
    [sent] = await wa_messages(meta, 1)
    assert sent == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": WA_USER, "type": "text",
                    "text": {"preview_url": False, "body": "The *boiler* was serviced on 3 March."}}
    [call] = meta.calls_to("/messages")
    assert call.path == f"/v25.0/{PHONE_NUMBER_ID}/messages"
    assert call.headers["Authorization"] == f"Bearer {meta.token}"
    assert [r.last_user_text for r in sim.requests] == ["When was the boiler serviced?"]
    [item] = await wired.sent_outbox(1)
    assert (item.channel, item.address, item.attempts) == ("whatsapp", WA_USER, 1)
    assert item.platform_id and item.platform_id.startswith("wamid.")


# --- what is refused --------------------------------------------------------------------------------------


async def test_wrong_signatures_are_refused_and_nothing_is_stored_or_sent(wired: Wired, platforms: Platforms,
                                                                         sim: ModelSimulator) -> None:
    refusals: list[tuple[str, str]] = []
    wired.runtime.bus.subscribe(lambda e: refusals.append((e.properties["channel"], e.properties["reason"])),
                                "channel.refused")
    update = tg_update(200, "hello from telegram")
    for secret in ("wrong", TG_SECRET + "x", "", None):
        answer = await wired.telegram(update, secret=secret)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthenticated"

    event = slack_direct("hello from slack", "Ev0E2E0200", ts="1355517600.000001")
    assert (await wired.slack(event, secret="0" * 32)).status_code == 401  # another app's signing secret
    assert (await wired.slack(event, at=time.time() - 600)).status_code == 401  # outside the 5-minute window
    assert (await wired.http.post(SLACK_PATH, json=event)).status_code == 401  # not signed at all

    payload = wa_text("hello from whatsapp", "wamid.E2E0200")
    body = orjson.dumps(payload)
    forged = [wa_signed(body, secret="f" * 32), wa_signed(body + b" "), {"Content-Type": "application/json"},
              {**wa_signed(body), "X-Hub-Signature-256": wa_signed(body)["X-Hub-Signature-256"].replace("sha256=",
                                                                                                     "sha1=")}]
    for headers in forged:
        assert (await wired.whatsapp(payload, headers=headers)).status_code == 401

    # each refusal is an audited event, whichever the channel
    assert refusals == [("telegram", "signature")] * 4 + [("slack", "signature")] * 3 + [("whatsapp", "signature")] * 4

    # Every channel stores (receipt, user, message) before it answers 200: nothing of that may exist now.
    runtime = wired.runtime
    assert await runtime.users.count_users() == 1  # the first admin only: the open policy made no one a user
    for channel, account in (("telegram", str(ANN)), ("slack", SLACK_USER), ("whatsapp", WA_USER)):
        assert await runtime.users.find_identity(channel, account) is None
    assert await wired.outbox() == [] and sim.requests == []
    assert platforms.telegram.called("sendMessage") == [] and platforms.slack.of("chat.postMessage") == []
    assert list(platforms.meta.messages) == []

    # and no receipt was taken either: the genuine deliveries of the same ids are answered
    assert (await wired.telegram(update)).status_code == 200
    assert (await wired.slack(event)).status_code == 200
    assert (await wired.whatsapp(payload)).status_code == 200
    await wired.sent_outbox(3)
    assert sorted(r.last_user_text for r in sim.requests) == [
        "hello from slack", "hello from telegram", "hello from whatsapp"]
    [tg] = platforms.telegram.called("sendMessage")
    [sl] = platforms.slack.of("chat.postMessage")
    [wa] = platforms.meta.messages
    assert (tg.params["chat_id"], tg.params["text"]) == (ANN, "You said: hello from telegram")
    assert (sl.body["channel"], sl.body["text"]) == (SLACK_DM, "You said: hello from slack")
    assert (wa["to"], wa["text"]["body"]) == (WA_USER, "You said: hello from whatsapp")


async def test_with_a_secret_unset_each_channel_is_off_never_open(sim: ModelSimulator, tmp_path: Path,
                                                                  platforms: Platforms) -> None:
    """Slack without ``SLACK_SIGNING_SECRET``, WhatsApp without ``WHATSAPP_VERIFY_TOKEN`` and Telegram (in polling
    mode) without ``TELEGRAM_WEBHOOK_SECRET``: their webhook routes answer 404, even to well-signed requests."""
    settings = {**channel_settings(platforms), "slack_signing_secret": "", "whatsapp_verify_token": None,
                "telegram_webhook_secret": None, "telegram_mode": "polling"}
    async with running_hearth(tmp_path / "data", ai_model_endpoint=sim.url, **settings) as running, \
            httpx.AsyncClient(base_url=running.http_url, timeout=10) as http:
        off = Wired(running, http)
        for secret in (TG_SECRET, "", None):
            assert (await off.telegram(tg_update(300, "hi"), secret=secret)).status_code == 404
        assert (await off.slack(slack_direct("hi", "Ev0E2E0300", ts="1355517700.000001"))).status_code == 404
        assert (await off.whatsapp(wa_text("hi", "wamid.E2E0300"))).status_code == 404  # signed with the app secret
        handshake = await http.get(WA_PATH, params={"hub.mode": "subscribe", "hub.verify_token": "",
                                                    "hub.challenge": "1158201444"})
        assert handshake.status_code == 404
        assert await running.runtime.users.count_users() == 1
        assert await off.outbox() == [] and sim.requests == []
        assert list(platforms.slack.calls) == [] and list(platforms.meta.calls) == []  # Slack: no auth.test
        assert platforms.telegram.called("sendMessage") == []

    # In webhook mode a Telegram bot token without the secret is a configuration error: hearth does not start.
    webhook = {**channel_settings(platforms), "telegram_webhook_secret": None}
    with pytest.raises(ConfigError) as refused:
        async with running_hearth(tmp_path / "data2", ai_model_endpoint=sim.url, **webhook):
            pass
    assert refused.value.variable == "TELEGRAM_WEBHOOK_SECRET"


# --- a real process, killed while a reply waits for a retry ------------------------------------------------


async def read_outbox(data_dir: Path) -> list[OutboxItem]:
    """The outbox as stored in the data dir's SQLite database, read with hearth's own store classes."""
    db = Database(f"sqlite:///{(data_dir / 'hearth.db').resolve()}")
    try:
        return await ChannelRepository(db, PlainTextCodec()).list()
    finally:
        await db.aclose()


async def test_a_reply_retried_when_hearth_is_killed_is_sent_once_after_restart(sim: ModelSimulator,
                                                                              tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with FakeTelegram(username=BOT, lifetime=60) as telegram:
        telegram.fail("sendMessage", *[TelegramFailure.server_error()] * 1000)  # Telegram is down, for now
        server = Server(data_dir, sim.url, TELEGRAM_BOT_TOKEN=DEFAULT_TOKEN, TELEGRAM_WEBHOOK_SECRET=TG_SECRET,
                        TELEGRAM_API_BASE=telegram.api_base, TELEGRAM_SENDER_POLICY="open", TELEGRAM_MODE="webhook")
        try:
            await server.start()
            sim.script(Turn(text="Your parcel arrives on Friday (after 5)."))
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.post(f"http://127.0.0.1:{server.http}{TG_PATH}",
                                         content=orjson.dumps(tg_update(400, "When does my parcel come?")),
                                         headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET,
                                                  "Content-Type": "application/json"})
            assert answer.status_code == 200
            await telegram.wait_for("sendMessage", 1, within=10)

            async def retry_pending() -> bool:
                items = await read_outbox(data_dir)
                return len(items) == 1 and items[0].status == "pending" and items[0].attempts >= 1

            await eventually(retry_pending)
            server.kill()  # SIGKILL: no shutdown, no last attempt
            [waiting] = await read_outbox(data_dir)
            assert waiting.status == "pending" and waiting.attempts >= 1
            assert "Bad Gateway" in (waiting.last_error or "")
            failed = len(telegram.called("sendMessage"))
            assert failed >= waiting.attempts  # (a kill between an attempt and its record leaves one uncounted)
            assert telegram.clear_failures("sendMessage") > 0  # Telegram is back
            await server.start()  # the same data dir and ports

            async def delivered() -> bool:
                return [i.status for i in await read_outbox(data_dir)] == ["sent"]

            await eventually(delivered, within=15)
            [item] = await read_outbox(data_dir)
            calls = telegram.called("sendMessage")
            expected = {"chat_id": ANN, "text": "Your parcel arrives on Friday \\(after 5\\)\\.",
                        "parse_mode": "MarkdownV2"}
            assert len(calls) == failed + 1  # one delivery after the restart, no more
            assert all(call.params == expected for call in calls)  # and each attempt was the same message
            assert (item.address, item.attempts, item.last_error) == (str(ANN), waiting.attempts + 1, None)
            assert item.platform_id is not None and item.platform_id.isdigit()
            assert [r.last_user_text for r in sim.requests] == ["When does my parcel come?"]  # the turn ran once

            assert server.stop() == 0
        finally:
            server.stop()
