"""The Telegram channel over real HTTP: Telegram's updates posted to the webhook route (served by Hypercorn), the
replies read from a fake Bot API server on a real socket, python-telegram-bot in between.

Update payloads follow the Bot API's objects (https://core.telegram.org/bots/api#update, #message,
#callbackquery, #document, #photosize, #messageentity).
"""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from PIL import Image
from telegram import Update

from hearth.core.dialog import confirm_buttons
from hearth.gateway.base import Outbound
from hearth.gateway.channels.common import ChannelServices, SenderRules
from hearth.gateway.channels.telegram import TelegramChannel, TelegramConfig, TelegramRenderer
from hearth.runtime import Runtime
from hearth.testing.fake_telegram import DEFAULT_TOKEN, Failure, FakeTelegram, markdown_v2_text
from hearth.testing.modelsim import ModelSimulator, Turn
from hearth.types import Actor, Button, utcnow
from tests.support.serving import serving

SECRET = "s3cret-webhook_token"
ANN = 555  # a Telegram user linked to hearth's admin
GROUP = -1001234567890
BOT = "hearth_test_bot"
DATE = 1_735_689_600


# --- Telegram's payloads ---------------------------------------------------------------------------------------


def user(uid: int = ANN, name: str = "Ann") -> dict[str, Any]:
    return {"id": uid, "is_bot": False, "first_name": name, "language_code": "en"}


def message(text: str | None, *, chat: dict[str, Any] | None = None, sender: int = ANN, message_id: int = 1,
            **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"message_id": message_id, "from": user(sender), "date": DATE,
                            "chat": chat or {"id": sender, "first_name": "Ann", "type": "private"}, **extra}
    if text is not None:
        body["text"] = text
    return body


def group_chat(forum: bool = False) -> dict[str, Any]:
    chat = {"id": GROUP, "title": "Family", "type": "supergroup"}
    return {**chat, "is_forum": True} if forum else chat


def update(update_id: int, **kinds: Any) -> dict[str, Any]:
    return {"update_id": update_id, **kinds}


def entity(kind: str, text: str, part: str) -> dict[str, Any]:
    return {"type": kind, "offset": text.index(part), "length": len(part)}


# --- a served channel over a real runtime ------------------------------------------------------------------------


def build(runtime: Runtime, fake: FakeTelegram, *, secret: str | None = SECRET, policy: str = "pairing",
          poll_timeout: int = 50) -> TelegramChannel:
    """The channel as the composition root assembles it (cf. tests/core/test_outbox.py)."""
    config = TelegramConfig(DEFAULT_TOKEN, secret, fake.api_base, SenderRules(policy), poll_timeout)
    channel = TelegramChannel(config, ChannelServices(runtime.inbox, runtime.identities, runtime.channel_store,
                                                      runtime.outbox, runtime.files, runtime.bus))
    runtime.outbox.add_sender("telegram", channel)
    return channel


@dataclass
class Harness:
    runtime: Runtime
    fake: FakeTelegram
    channel: TelegramChannel
    client: httpx.AsyncClient
    admin: Actor

    async def post(self, body: Any, *, secret: str | None = SECRET, raw: bytes | None = None) -> httpx.Response:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        if raw is not None:
            return await self.client.post("/channels/telegram/webhook", content=raw, headers=headers)
        return await self.client.post("/channels/telegram/webhook", json=body, headers=headers)

    async def sent(self, count: int = 1) -> list[dict[str, Any]]:
        """The parameters of the first ``count`` sendMessage calls, once there are that many."""
        calls = await self.fake.wait_for("sendMessage", count, within=10)
        return [call.params for call in calls[:count]]


@asynccontextmanager
async def running(channel: TelegramChannel, runtime: Runtime) -> AsyncIterator[None]:
    """The channel started and the outbox sending, as ``hearth serve`` runs them."""
    await channel.start()
    worker = asyncio.create_task(runtime.outbox.run())
    try:
        yield
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await channel.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(username=BOT, lifetime=60) as telegram:
        yield telegram


@pytest.fixture
async def tg(runtime: Runtime, fake: FakeTelegram, admin: Actor) -> AsyncIterator[Harness]:
    await runtime.users.link_identity(admin.user_id, "telegram", str(ANN), "Ann")
    channel = build(runtime, fake)
    async with running(channel, runtime), serving(channel.routes(), runtime.settings.server) as url, \
            httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield Harness(runtime, fake, channel, client, admin)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not await check():
            await asyncio.sleep(0.02)


# --- in ----------------------------------------------------------------------------------------------------------


async def test_a_private_message_is_answered_once_in_markdown_v2(tg: Harness, sim: ModelSimulator,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "httpx")
    sim.script(Turn(text="Noted: the boiler (gas) is due on 3.4.", ttft=0.3))
    hello = update(100, message=message("When is the boiler due?"))
    assert (await tg.post(hello)).status_code == 200
    assert (await tg.post(hello)).status_code == 200  # Telegram's redelivery of the same update
    [sent] = await tg.sent()
    assert sent == {"chat_id": ANN, "text": "Noted: the boiler \\(gas\\) is due on 3\\.4\\.",
                    "parse_mode": "MarkdownV2"}
    assert markdown_v2_text(sent["text"]) == "Noted: the boiler (gas) is due on 3.4."
    typing = tg.fake.called("sendChatAction")
    assert typing and typing[0].params == {"chat_id": ANN, "action": "typing"}
    await asyncio.sleep(0.3)
    assert len(tg.fake.called("sendMessage")) == 1 and len(sim.requests) == 1
    assert sim.requests[0].last_user_text == "When is the boiler due?"
    assert "/bot<token>/sendMessage" in caplog.text and DEFAULT_TOKEN not in caplog.text  # httpx logs every URL


async def test_the_secret_is_checked_first_and_nothing_is_stored_without_it(tg: Harness, sim: ModelSimulator) -> None:
    hello = update(101, message=message("hi"))
    for secret in (None, "wrong", SECRET + "x", ""):
        answer = await tg.post(hello, secret=secret)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthenticated"
    assert (await tg.post(None, secret="wrong", raw=b"not json")).status_code == 401  # before the body is read
    await asyncio.sleep(0.2)
    assert tg.fake.called("sendMessage") == [] and sim.requests == []
    assert (await tg.post(hello)).status_code == 200  # no receipt was recorded: the real delivery is taken
    [sent] = await tg.sent()
    assert sent["text"] == "You said: hi"


async def test_bad_bodies_are_refused(tg: Harness) -> None:
    assert (await tg.post(None, raw=b"{not json")).json()["error"]["code"] == "bad_json"
    assert (await tg.post(None, raw=b"{not json")).status_code == 400
    assert (await tg.post({"message": {"text": "no update id"}})).status_code == 400
    assert (await tg.post([1, 2])).status_code == 400
    huge = b'{"update_id": 1, "pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert (await tg.post(None, raw=huge)).status_code == 413


async def test_with_no_secret_the_webhook_is_off(runtime: Runtime, fake: FakeTelegram) -> None:
    channel = build(runtime, fake, secret=None)
    async with serving(channel.routes(), runtime.settings.server) as url, httpx.AsyncClient(base_url=url) as client:
        for secret in ("", "anything"):
            answer = await client.post("/channels/telegram/webhook", json=update(1, message=message("hi")),
                                       headers={"X-Telegram-Bot-Api-Secret-Token": secret})
            assert answer.status_code == 404
    await channel.close()


async def test_an_edit_is_answered_as_a_new_message(tg: Harness, sim: ModelSimulator) -> None:
    await tg.post(update(110, message=message("meet at 5", message_id=7)))
    await tg.sent()
    edited = message("meet at 6", message_id=7, edit_date=DATE + 60)
    assert (await tg.post(update(111, edited_message=edited))).status_code == 200
    first, second = await tg.sent(2)
    assert (first["text"], second["text"]) == ("You said: meet at 5", "You said: meet at 6")


async def test_groups_are_answered_only_when_the_bot_is_addressed(tg: Harness, sim: ModelSimulator) -> None:
    chat = group_chat()
    await tg.post(update(120, message=message("the bot should stay quiet", chat=chat)))
    other = "/calendar@other_bot list"
    await tg.post(update(121, message=message(other, chat=chat,
                                              entities=[entity("bot_command", other, "/calendar@other_bot")])))
    text = f"hey @{BOT} what is the plan?"
    await tg.post(update(122, message=message(text, chat=chat, entities=[entity("mention", text, f"@{BOT}")])))
    [answer] = await tg.sent()
    assert answer["chat_id"] == GROUP and answer["text"] == "You said: hey what is the plan?"

    bots_message = {"message_id": 50, "from": tg.fake.bot_user(), "chat": chat, "date": DATE, "text": "earlier"}
    await tg.post(update(123, message=message("and after that?", chat=chat, reply_to_message=bots_message)))
    _, replied = await tg.sent(2)
    assert replied["text"] == "You said: and after that?"
    assert [r.last_user_text for r in sim.requests] == ["hey what is the plan?", "and after that?"]

    command = f"/calendar@{BOT} list_events"
    await tg.post(update(124, message=message(command, chat=chat,
                                              entities=[entity("bot_command", command, f"/calendar@{BOT}")])))
    *_, listed = await tg.sent(3)
    assert listed["text"] == "Nothing on your calendar in the next 7 days\\."
    assert len(sim.requests) == 2  # "/calendar list_events" is the calendar skill's own command: no model


async def test_a_channel_post_and_a_sticker_are_ignored(tg: Harness, sim: ModelSimulator) -> None:
    post = {"message_id": 3, "date": DATE, "chat": {"id": -1009, "title": "News", "type": "channel"},
            "sender_chat": {"id": -1009, "title": "News", "type": "channel"}, "text": "news"}
    assert (await tg.post(update(130, channel_post=post))).status_code == 200
    sticker = message(None, sticker={"file_id": "CAAC", "file_unique_id": "u1", "type": "regular", "width": 512,
                                     "height": 512, "is_animated": False, "is_video": False})
    assert (await tg.post(update(131, message=sticker))).status_code == 200
    await asyncio.sleep(0.3)
    assert tg.fake.called("sendMessage") == [] and sim.requests == []


async def test_forum_topics_and_reminders_reach_their_thread(tg: Harness, sim: ModelSimulator) -> None:
    sim.script(Turn(text="You said: ping", ttft=0.3))  # long enough for the typing indicator to show
    text = f"@{BOT} ping"
    topic = message(text, chat=group_chat(forum=True), message_thread_id=42, is_topic_message=True,
                    entities=[entity("mention", text, f"@{BOT}")])
    await tg.post(update(140, message=topic))
    [answer] = await tg.sent()
    assert (answer["chat_id"], answer["message_thread_id"], answer["text"]) == (GROUP, 42, "You said: ping")
    await tg.fake.wait_for("sendChatAction")
    assert tg.fake.called("sendChatAction")[0].params["message_thread_id"] == 42

    [conversation] = await tg.runtime.conversations.list_conversations(tg.admin.user_id)
    reminder = Outbound(conversation=conversation.id, user_id=tg.admin.user_id, channel="telegram",
                        external_ref=f"{GROUP}:42", text="Reminder: water the plants!")
    assert await tg.channel.deliver(reminder)
    _, sent = await tg.sent(2)
    assert sent == {"chat_id": GROUP, "message_thread_id": 42, "text": "Reminder: water the plants\\!",
                    "parse_mode": "MarkdownV2"}


async def test_a_confirmation_has_buttons_and_pressing_yes_schedules(tg: Harness, sim: ModelSimulator) -> None:
    ask = "schedule a meeting tomorrow at 3pm for half an hour"
    await tg.post(update(150, message=message(ask)))
    [question] = await tg.sent()
    [conversation] = await tg.runtime.conversations.list_conversations(tg.admin.user_id)
    *_, asked = await tg.runtime.conversations.history(conversation.id)
    keyboard = question["reply_markup"]["inline_keyboard"]
    yes = keyboard[0][0]
    token = yes["callback_data"].removeprefix("confirm:")
    assert question == {
        "chat_id": ANN, "parse_mode": "MarkdownV2",
        "text": TelegramRenderer().render(asked.content, ())[0]["text"],
        "reply_markup": {"inline_keyboard": [[{"text": "Yes", "callback_data": f"confirm:{token}"},
                                              {"text": "No", "callback_data": f"cancel:{token}"}]]},
    }
    assert markdown_v2_text(question["text"]).startswith("Shall I")

    bots_message = {"message_id": 60, "from": tg.fake.bot_user(), "date": DATE, "text": asked.content,
                    "chat": {"id": ANN, "first_name": "Ann", "type": "private"},
                    "reply_markup": {"inline_keyboard": keyboard}}
    press = {"id": "4382bfdwdsb323b2d9", "from": user(), "message": bots_message, "chat_instance": "-8243",
             "data": yes["callback_data"]}
    assert (await tg.post(update(151, callback_query=press))).status_code == 200
    _, done = await tg.sent(2)
    assert "15:00" in markdown_v2_text(done["text"])
    [answered] = await tg.fake.wait_for("answerCallbackQuery")
    assert answered.params == {"callback_query_id": "4382bfdwdsb323b2d9"}
    assert b"BEGIN:VEVENT" in await tg.runtime.calendar.export_ics(tg.admin.user_id)
    *_, pressed, _ = await tg.runtime.conversations.history(conversation.id)
    assert pressed.content == "Yes"  # the button's label is what the conversation shows
    assert sim.requests == []  # no model involved at any point


def test_replies_are_cut_at_4096_with_the_buttons_on_the_last_part(caplog: pytest.LogCaptureFixture) -> None:
    for button in confirm_buttons(secrets.token_urlsafe(9)):  # hearth's own button ids must fit callback_data
        assert len(button.id.encode()) <= 64, f"{button.id!r} is too long for Telegram's callback_data"
    paragraphs = "\n\n".join(f"Paragraph {n}: " + "word " * 150 for n in range(20))
    parts = TelegramRenderer().render(paragraphs, (Button("confirm:x", "Yes"), Button("c" * 65, "Too long")))
    assert len(parts) > 1 and all(len(p["text"]) <= 4096 and p["parse_mode"] == "MarkdownV2" for p in parts)
    assert [p.get("reply_markup") for p in parts[:-1]] == [None] * (len(parts) - 1)
    assert parts[-1]["reply_markup"] == {"inline_keyboard": [[{"text": "Yes", "callback_data": "confirm:x"}]]}
    assert "over 64 bytes" in caplog.text
    for part in parts:
        markdown_v2_text(part["text"])  # each part parses on its own


# --- out: Telegram's errors --------------------------------------------------------------------------------------


async def test_retry_after_is_honoured_and_a_blocked_chat_ends_dead(tg: Harness) -> None:
    tg.fake.fail("sendMessage", Failure.too_many_requests(1))
    await tg.post(update(160, message=message("one")))
    await tg.fake.wait_for("sendMessage", 2, within=10)
    first, second = tg.fake.called("sendMessage")
    assert second.at - first.at >= 1.0 and second.params["text"] == "You said: one"

    tg.fake.fail("sendMessage", Failure.server_error())  # Telegram's 5xx: tried again after a pause
    await tg.post(update(161, message=message("two")))
    *_, failed, retried = await tg.fake.wait_for("sendMessage", 4, within=10)
    assert retried.params["text"] == "You said: two" and retried.at - failed.at >= 0.9

    tg.fake.fail("sendMessage", Failure.blocked(), Failure.chat_not_found())
    await tg.post(update(162, message=message("three")))
    stranger = {"id": 777, "type": "private"}  # its pairing code goes to a chat that is gone
    await tg.post(update(163, message=message("four", sender=777, chat=stranger)))

    async def dead() -> bool:
        return len(await tg.runtime.outbox.dead()) == 2

    await eventually(dead)
    errors = [item.last_error or "" for item in await tg.runtime.outbox.dead()]
    assert any("blocked" in e for e in errors) and any("chat not found" in e.lower() for e in errors)
    assert all(item.attempts == 1 for item in await tg.runtime.outbox.dead())  # no retry can help these
    assert not any(DEFAULT_TOKEN in error for error in errors)


async def test_unparsable_markdown_is_sent_again_as_plain_text(tg: Harness) -> None:
    tg.fake.fail("sendMessage", Failure.cant_parse_entities())
    await tg.post(update(170, message=message("is 2.5 > 2?")))
    rich, plain = await tg.sent(2)
    assert rich["parse_mode"] == "MarkdownV2" and rich["text"] == "You said: is 2\\.5 \\> 2?"
    assert plain == {"chat_id": ANN, "text": "You said: is 2.5 > 2?"}


async def test_an_unknown_sender_gets_a_pairing_code(tg: Harness, sim: ModelSimulator) -> None:
    stranger = 999
    await tg.post(update(180, message=message("hello", sender=stranger,
                                              chat={"id": stranger, "first_name": "Zed", "type": "private"})))
    [sent] = await tg.sent()
    text = markdown_v2_text(sent["text"])
    [pending] = await tg.runtime.channel_store.pending_pairings()
    assert sent["chat_id"] == stranger and "hearth users pair" in text and pending.code in text
    assert sim.requests == []


async def test_in_a_group_an_unknown_member_is_told_to_pair_in_a_private_chat(tg: Harness, sim: ModelSimulator) -> None:
    stranger, text = 888, f"@{BOT} let me in"
    mention = message(text, chat=group_chat(), sender=stranger, entities=[entity("mention", text, f"@{BOT}")])
    await tg.post(update(185, message=mention))
    [said] = await tg.sent()
    shown = markdown_v2_text(said["text"])
    assert said["chat_id"] == GROUP and "private message" in shown  # said in the group, for everyone to read...
    assert "hearth users pair" not in shown and await tg.runtime.channel_store.pending_pairings() == []  # ...no code

    await tg.post(update(186, message=message("hello", sender=stranger,
                                              chat={"id": stranger, "first_name": "Zed", "type": "private"})))
    _, private = await tg.sent(2)
    [pending] = await tg.runtime.channel_store.pending_pairings()
    assert private["chat_id"] == stranger and pending.code in markdown_v2_text(private["text"])
    assert pending.external_id == str(stranger) and sim.requests == []


# --- files -------------------------------------------------------------------------------------------------------


async def test_a_document_reaches_the_files_store(tg: Harness) -> None:
    data = b"The boiler was serviced on 3 March by Dana.\n"
    stored = tg.fake.add_file(data, path="documents/file_7.txt")
    document = {"file_name": "boiler.txt", "mime_type": "text/plain", "file_id": stored["file_id"],
                "file_unique_id": "AgADdoc", "file_size": len(data)}
    await tg.post(update(190, message=message(None, document=document, caption="keep this")))
    [answer] = await tg.sent()
    [record] = await tg.runtime.files.list(tg.admin.user_id)
    assert (record.filename, record.size) == ("boiler.txt", len(data))
    assert tg.fake.called("getFile")[0].params == {"file_id": stored["file_id"]}
    assert answer["text"].startswith("You said: keep this")

    huge = {**document, "file_id": "BQAChuge", "file_name": "huge.iso", "file_size": 25 * 1024 * 1024}
    await tg.post(update(191, message=message(None, document=huge)))
    _, refused = await tg.sent(2)
    assert "huge.iso" in markdown_v2_text(refused["text"]) and len(tg.fake.called("getFile")) == 1


async def test_the_largest_size_of_a_photo_is_fetched(tg: Harness) -> None:
    def jpeg(size: int) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (size, size), (200, 80, 40)).save(out, "JPEG")
        return out.getvalue()

    sizes = []
    for side in (90, 320, 800):
        data = jpeg(side)
        stored = tg.fake.add_file(data, path=f"photos/file_{side}.jpg")
        sizes.append({"file_id": stored["file_id"], "file_unique_id": f"AQAD{side}", "file_size": len(data),
                      "width": side, "height": side})
    await tg.post(update(200, message=message(None, photo=sizes, caption="our roof")))
    await tg.sent()
    [record] = await tg.runtime.files.list(tg.admin.user_id)
    assert record.media_type == "image/jpeg" and record.size == sizes[-1]["file_size"]
    assert [c.params["file_id"] for c in tg.fake.called("getFile")] == [sizes[-1]["file_id"]]


# --- polling, the webhook's registration, restarts ---------------------------------------------------------------


async def test_long_polling_takes_updates_after_removing_the_webhook(runtime: Runtime, fake: FakeTelegram,
                                                                     admin: Actor) -> None:
    await runtime.users.link_identity(admin.user_id, "telegram", str(ANN), "Ann")
    channel = build(runtime, fake, poll_timeout=1)
    await channel.set_webhook("https://hearth.example.org/channels/telegram/webhook")
    assert fake.webhook == {"url": "https://hearth.example.org/channels/telegram/webhook", "secret_token": SECRET,
                            "allowed_updates": ["message", "edited_message", "callback_query"],
                            "drop_pending_updates": False}
    queued = fake.push_update({"message": message("polled")})
    stop = asyncio.Event()
    async with running(channel, runtime):
        poller = asyncio.create_task(channel.run_polling(stop))
        [sent] = [c.params for c in await fake.wait_for("sendMessage", within=10)]
        assert sent["text"] == "You said: polled"
        await fake.wait_for("getUpdates", 2)
        stop.set()
        await asyncio.wait_for(poller, 3)
    assert fake.called("deleteWebhook")[0].at < fake.called("getUpdates")[0].at and fake.webhook == {}
    polls = fake.called("getUpdates")
    assert polls[0].params["timeout"] == 1 and polls[0].params["allowed_updates"] == ["message", "edited_message",
                                                                                       "callback_query"]
    assert polls[1].params["offset"] == queued["update_id"] + 1


async def test_polling_survives_errors(runtime: Runtime, fake: FakeTelegram, caplog: pytest.LogCaptureFixture) -> None:
    channel = build(runtime, fake, poll_timeout=1)
    fake.fail("getUpdates", Failure.server_error())
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, "hearth.channels.telegram"):
        poller = asyncio.create_task(channel.run_polling(stop))
        await fake.wait_for("getUpdates", 2, within=5)
        stop.set()
        await asyncio.wait_for(poller, 3)
    assert "polling failed" in caplog.text and DEFAULT_TOKEN not in caplog.text
    await channel.close()


async def test_a_restart_during_a_rate_limit_loses_nothing(runtime_factory, fake: FakeTelegram) -> None:  # type: ignore[no-untyped-def]
    first = await runtime_factory()
    await first.start(serving=False)
    admin = await first.users.get_user_by_name("admin")
    assert admin is not None
    await first.users.link_identity(admin.id, "telegram", str(ANN), "Ann")
    fake.fail("sendMessage", Failure.too_many_requests(2))
    channel = build(first, fake)
    async with running(channel, first):
        assert await channel.handle(Update.de_json(update(210, message=message("survive")), None))
        await fake.wait_for("sendMessage")  # refused: the outbox now holds the message for 2 s

        async def postponed() -> bool:
            [item] = await first.channel_store.list(channel="telegram")
            return item.next_attempt_at > utcnow() + timedelta(seconds=1)

        await eventually(postponed)
    await first.aclose()  # the process goes away while the message waits

    second = await runtime_factory()
    await second.start(serving=False)
    channel = build(second, fake)
    async with running(channel, second):
        calls = await fake.wait_for("sendMessage", 2, within=10)

        async def sent() -> bool:
            [item] = await second.channel_store.list(channel="telegram")
            return item.status == "sent"

        await eventually(sent)
    assert [c.params["text"] for c in calls] == ["You said: survive"] * 2
    assert calls[1].at - calls[0].at >= 2.0
