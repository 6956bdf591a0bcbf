"""The WhatsApp Cloud API channel, over real HTTP: Meta's webhook payloads (from its webhook reference) signed
with hmac, the channel served by Hypercorn, and a fake Graph API (``hearth.testing.fake_whatsapp``) that
checks what is sent the way the Cloud API does."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from icalendar import Calendar
from PIL import Image

from hearth.errors import DeliveryError
from hearth.gateway.base import Outbound
from hearth.gateway.channels.common import ChannelServices, Inbound, SenderRules
from hearth.gateway.channels.whatsapp import (
    CHANNEL,
    UNSUPPORTED_NOTE,
    WEBHOOK_PATH,
    GraphApi,
    WhatsAppChannel,
    WhatsAppConfig,
    WhatsAppRenderer,
    parse_webhook,
)
from hearth.runtime import Runtime
from hearth.store.channels import OutboxItem
from hearth.testing.fake_whatsapp import Failure, FakeWhatsApp, message_problem
from hearth.testing.modelsim import ModelSimulator, Turn
from hearth.types import Actor, Button, Event, utcnow
from tests.support.serving import serving

APP_SECRET = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
VERIFY_TOKEN = "meatyhamhock"
PHONE_NUMBER_ID = "106540352242922"  # the examples' business phone number id
USER = "16505551234"
NOTES = b"Boiler notes\n\nThe boiler was serviced on 3 March by Dana.\n"


# --- payloads as Meta's webhook reference shows them -------------------------------------------------------


def wamid() -> str:
    return "wamid." + base64.b64encode(secrets.token_bytes(30)).decode()


def webhook(value: dict[str, Any], *, phone_number_id: str = PHONE_NUMBER_ID) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "15550783881", "phone_number_id": phone_number_id},
                  **value},
        "field": "messages"}]}]}


def message(kind: str, content: dict[str, Any], *, sender: str = USER, name: str = "Sheena Nelson",
            message_id: str | None = None, context: str | None = None, phone_number_id: str = PHONE_NUMBER_ID,
            **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"from": sender, "id": message_id or wamid(), "timestamp": "1739321024", "type": kind,
                           kind: content, **extra}
    if context:
        raw["context"] = {"from": "15550783881", "id": context}
    return webhook({"contacts": [{"profile": {"name": name}, "wa_id": sender}], "messages": [raw]},
                   phone_number_id=phone_number_id)


def text(body: str, **kwargs: Any) -> dict[str, Any]:
    return message("text", {"body": body}, **kwargs)


def status(state: str, message_id: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": message_id, "status": state, "timestamp": "1750857384", "recipient_id": USER}
    if state in ("sent", "delivered"):
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "utility"}
    if errors:
        item["errors"] = errors
    return webhook({"statuses": [item]})


def sign(raw: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 80, 40)).save(buffer, "PNG")
    return buffer.getvalue()


# --- the rig: hearth's runtime, the channel on Hypercorn, the fake Graph API --------------------------------


@asynccontextmanager
async def served(runtime: Runtime, channel: WhatsAppChannel) -> AsyncIterator[str]:
    """The channel's routes on 127.0.0.1 (a port the OS picks); yields the webhook URL."""
    async with serving(channel.routes(), runtime.settings.server) as base:
        yield base + WEBHOOK_PATH


@dataclass
class Rig:
    runtime: Runtime
    meta: FakeWhatsApp
    channel: WhatsAppChannel
    url: str
    client: httpx.AsyncClient
    events: list[Event] = field(default_factory=list)

    async def post(self, payload: Any, *, raw: bytes | None = None, signature: str | None = "sign") -> httpx.Response:
        body = raw if raw is not None else orjson.dumps(payload)
        headers = {"Content-Type": "application/json"}
        if signature == "sign":
            headers["X-Hub-Signature-256"] = sign(body)
        elif signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return await self.client.post(self.url, content=body, headers=headers)

    async def sent(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Run the outbox until ``count`` messages reached WhatsApp; all of them."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.meta.messages) < count:
            await self.runtime.outbox.run_once()
            assert asyncio.get_running_loop().time() < deadline, f"only {len(self.meta.messages)} sent"
            await asyncio.sleep(0.02)
        return list(self.meta.messages)

    async def quiet(self) -> None:
        """Let answers in the making finish, and send what they queued."""
        await self.channel.aclose(grace=10.0)
        await self.runtime.outbox.run_once()

    async def calls(self, suffix: str, count: int, timeout: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.meta.calls_to(suffix)) < count:
            await self.runtime.outbox.run_once()
            assert asyncio.get_running_loop().time() < deadline, f"{suffix} was not called {count} times"
            await asyncio.sleep(0.02)

    async def outbox(self) -> list[OutboxItem]:
        return await self.runtime.channel_store.list(channel=CHANNEL)


def config_for(meta: FakeWhatsApp, **overrides: Any) -> WhatsAppConfig:
    values: dict[str, Any] = {"token": meta.token, "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN,
                              "phone_number_id": PHONE_NUMBER_ID, "api_base": meta.api_base}
    values.update(overrides)
    return WhatsAppConfig(**values)


def channel_for(runtime: Runtime, config: WhatsAppConfig, policy: str = "pairing") -> WhatsAppChannel:
    services = ChannelServices(runtime.inbox, runtime.identities, runtime.channel_store, runtime.outbox,
                               runtime.files, runtime.bus)
    channel = WhatsAppChannel(config, services, rules=SenderRules(policy))
    runtime.outbox.add_sender(CHANNEL, channel.sender)
    return channel


@pytest.fixture
async def meta() -> AsyncIterator[FakeWhatsApp]:
    async with FakeWhatsApp(phone_number_id=PHONE_NUMBER_ID, lifetime=60.0) as fake:
        yield fake


@pytest.fixture
async def rig(runtime: Runtime, meta: FakeWhatsApp) -> AsyncIterator[Rig]:
    channel = channel_for(runtime, config_for(meta))
    events: list[Event] = []
    runtime.bus.subscribe(events.append, "whatsapp.")
    async with served(runtime, channel) as url, httpx.AsyncClient(timeout=10) as client:
        yield Rig(runtime, meta, channel, url, client, events)
    await channel.aclose()


@pytest.fixture
async def linked(rig: Rig, admin: Actor) -> Actor:
    """The admin, known on WhatsApp by USER's number."""
    await rig.runtime.users.link_identity(admin.user_id, CHANNEL, USER, "Sheena Nelson")
    return admin


# --- the webhook's door ---------------------------------------------------------------------------------


async def test_the_subscription_handshake(rig: Rig, runtime: Runtime) -> None:
    ok = await rig.client.get(rig.url, params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                               "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.text == "1158201444"
    assert ok.headers["content-type"].startswith("text/plain")
    wrong = await rig.client.get(rig.url, params={"hub.mode": "subscribe", "hub.verify_token": "meatyhamhock2",
                                                  "hub.challenge": "1158201444"})
    assert wrong.status_code == 403 and "1158201444" not in wrong.text
    no_token = await rig.client.get(rig.url, params={"hub.mode": "subscribe", "hub.challenge": "1158201444"})
    assert no_token.status_code == 403
    assert (await rig.client.get(rig.url)).status_code == 400
    assert (await rig.client.get(rig.url, params={"hub.verify_token": VERIFY_TOKEN,
                                                  "hub.challenge": "1"})).status_code == 400

    off = channel_for(runtime, WhatsAppConfig(token="t", phone_number_id=PHONE_NUMBER_ID))  # no secrets: off
    async with served(runtime, off) as url:
        shake = await rig.client.get(url, params={"hub.mode": "subscribe", "hub.verify_token": "",
                                                  "hub.challenge": "1"})
        raw = orjson.dumps(text("hi"))
        posted = await rig.client.post(url, content=raw, headers={"X-Hub-Signature-256": sign(raw, "")})
    await off.aclose()
    assert shake.status_code == 404 and posted.status_code == 404


async def test_the_signature_is_checked_first_and_a_bad_body_changes_nothing(rig: Rig, sim: ModelSimulator) -> None:
    hello = text("hello", message_id=(first := wamid()))
    assert (await rig.post(hello, signature=None)).status_code == 401
    assert (await rig.post(hello, signature=sign(orjson.dumps(hello), "not-the-app-secret"))).status_code == 401
    assert (await rig.post(hello, signature="sha256=" + "0" * 64)).status_code == 401
    assert (await rig.post(hello, signature=sign(b"{}"))).status_code == 401
    assert (await rig.post(hello, signature="sha1=" + hashlib.sha1(b"x").hexdigest())).status_code == 401
    assert (await rig.post(None, raw=b'{"object": "whatsapp_business_account", "entry": [')).status_code == 400
    assert (await rig.post(None, raw=b"[1, 2]")).status_code == 400
    huge = orjson.dumps(text("x" * (1024 * 1024)))
    assert (await rig.post(None, raw=huge)).status_code == 413
    await rig.quiet()
    assert sim.requests == [] and list(rig.meta.messages) == []
    assert await rig.outbox() == []
    assert await rig.runtime.channel_store.first_receipt(CHANNEL, first)  # the refused message was never taken


# --- messages in, answers out ---------------------------------------------------------------------------


async def test_a_text_message_is_answered_once_in_whatsapp_markup(rig: Rig, linked: Actor, sim: ModelSimulator) -> None:
    sim.script(Turn(text="**Boiler** serviced on _3 March_ by ~~Dan~~ Dana. See [notes](https://example.com/n)",
                    ttft=1.5))
    hello = text("When was the boiler serviced?")
    started = asyncio.get_running_loop().time()
    first = await rig.post(hello)
    assert first.status_code == 200
    assert asyncio.get_running_loop().time() - started < 1.0  # answered before the model has
    assert (await rig.post(hello)).status_code == 200  # Meta's redelivery of the same wamid
    [sent] = await rig.sent(1)
    assert sent == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": USER, "type": "text",
                    "text": {"preview_url": False,
                             "body": "*Boiler* serviced on _3 March_ by ~Dan~ Dana. See notes (https://example.com/n)"}}
    await rig.quiet()
    assert len(rig.meta.messages) == 1 and len(sim.requests) == 1
    assert sim.requests[0].last_user_text == "When was the boiler serviced?"
    [item] = await rig.outbox()
    assert item.status == "sent" and item.platform_id and item.platform_id.startswith("wamid.")
    # a message hearth sends on its own (a reminder) takes the same road, to the conversation's number
    assert item.conversation_id is not None
    assert await rig.channel.deliver(Outbound(item.conversation_id, linked.user_id, CHANNEL, USER,
                                              "Reminder: **stretch**"))
    reminder = (await rig.sent(2))[1]
    assert reminder["to"] == USER and reminder["text"]["body"] == "Reminder: *stretch*"


async def test_the_message_being_answered_is_marked_read_with_a_typing_indicator(rig: Rig, linked: Actor,
                                                                                 sim: ModelSimulator) -> None:
    sim.script(Turn(text="On 3 March.", ttft=0.5))
    asked = wamid()
    assert (await rig.post(text("When was the boiler serviced?", message_id=asked))).status_code == 200
    [sent] = await rig.sent(1)
    assert sent["text"]["body"] == "On 3 March."
    # Meta's typing indicator: https://developers.facebook.com/documentation/business-messaging/whatsapp/typing-indicators/
    assert list(rig.meta.reads) == [{"messaging_product": "whatsapp", "status": "read", "message_id": asked,
                                     "typing_indicator": {"type": "text"}}]
    typing, reply = rig.meta.calls_to("/messages", reads=True)
    assert typing.body == rig.meta.reads[0] and reply.body == sent  # the indicator came first
    assert typing.path == f"/v25.0/{PHONE_NUMBER_ID}/messages" and typing.method == "POST"
    assert typing.headers["Authorization"] == f"Bearer {rig.meta.token}"
    assert typing.headers["Content-Type"] == "application/json"

    # a stranger gets a pairing code, but no "typing…": only a message that will be answered shows it
    assert (await rig.post(text("hi", sender="447700900123", name="Zed"))).status_code == 200
    await rig.sent(2)
    await rig.quiet()
    assert len(rig.meta.reads) == 1


async def test_a_failing_or_hanging_typing_indicator_never_holds_up_the_reply(rig: Rig, linked: Actor,
                                                                              sim: ModelSimulator) -> None:
    loop = asyncio.get_running_loop()
    sim.script(Turn(text="First answer."), Turn(text="Second answer."))
    rig.meta.fail_reads(Failure(131000, status=500))  # Graph's "Something went wrong"
    assert (await rig.post(text("one"))).status_code == 200
    [first] = await rig.sent(1)
    assert first["text"]["body"] == "First answer."

    rig.meta.fail_reads(Failure(None, status=503, delay=30.0))  # a Graph API that does not answer for 30 s
    started = loop.time()
    answered = await rig.post(text("two"))
    assert answered.status_code == 200 and loop.time() - started < 1.0
    second = (await rig.sent(2))[1]
    assert second["text"]["body"] == "Second answer." and loop.time() - started < 5.0
    await rig.quiet()
    assert list(rig.meta.reads) == [] and len(rig.meta.calls_to("/messages", reads=True)) == 4  # 2 tries, 2 sends
    assert [(item.status, item.attempts) for item in await rig.outbox()] == [("sent", 1), ("sent", 1)]
    assert await rig.runtime.outbox.dead() == []


async def test_a_confirmation_is_a_button_message_and_its_yes_button_schedules(rig: Rig, linked: Actor,
                                                                             sim: ModelSimulator) -> None:
    assert (await rig.post(text("schedule a meeting tomorrow at 3pm for half an hour"))).status_code == 200
    [asked] = await rig.sent(1)
    interactive = asked["interactive"]
    body = interactive["body"]["text"]
    yes_id = interactive["action"]["buttons"][0]["reply"]["id"]
    token = yes_id.removeprefix("confirm:")
    assert "Shall I" in body and yes_id.startswith("confirm:")
    assert asked == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": USER,
                     "type": "interactive", "interactive": {
                         "type": "button", "body": {"text": body},
                         "action": {"buttons": [{"type": "reply", "reply": {"id": f"confirm:{token}", "title": "Yes"}},
                                                {"type": "reply", "reply": {"id": f"cancel:{token}", "title": "No"}}]}}}

    [item] = await rig.outbox()
    pressed = message("interactive", {"type": "button_reply", "button_reply": {"id": yes_id, "title": "Yes"}},
                      context=item.platform_id)
    assert (await rig.post(pressed)).status_code == 200
    done = (await rig.sent(2))[1]
    assert done["type"] == "text" and "15:00" in done["text"]["body"]
    events = Calendar.from_ical(await rig.runtime.calendar.export_ics(linked.user_id)).walk("VEVENT")
    assert [str(e["SUMMARY"]) for e in events] == ["Meeting"]
    assert sim.requests == []  # the dialog handled both without a model


async def test_an_unknown_number_gets_a_pairing_code_and_nothing_else(rig: Rig, sim: ModelSimulator) -> None:
    stranger = "447700900123"
    assert (await rig.post(text("hi", sender=stranger, name="Zed"))).status_code == 200
    [sent] = await rig.sent(1)
    assert sent["to"] == stranger and sent["type"] == "text"
    assert "hearth users pair" in sent["text"]["body"]
    assert sim.requests == []
    assert await rig.runtime.users.find_identity(CHANNEL, stranger) is None


async def test_an_image_and_a_document_reach_the_files_store(rig: Rig, linked: Actor, sim: ModelSimulator) -> None:
    photo = rig.meta.add_media(png(), "image/png")
    notes = rig.meta.add_media(NOTES, "text/plain")
    sim.script(Turn(text="A photo."), Turn(text="Noted."))
    image = message("image", {"caption": "my boiler", "mime_type": "image/png",
                              "sha256": hashlib.sha256(png()).hexdigest(), "id": photo})
    assert (await rig.post(image)).status_code == 200
    await rig.sent(1)
    document = message("document", {"filename": "boiler.txt", "mime_type": "text/plain",
                                    "sha256": hashlib.sha256(NOTES).hexdigest(), "id": notes})
    assert (await rig.post(document)).status_code == 200
    await rig.sent(2)
    files = await rig.runtime.files.list(linked.user_id)
    assert sorted((f.filename.split("-")[0], f.media_type) for f in files) == [
        ("boiler.txt", "text/plain"), ("photo", "image/png")]
    assert next(f for f in files if f.filename == "boiler.txt").status == "ready"
    lookups = rig.meta.calls_to(f"/{photo}")
    downloads = [c for c in rig.meta.calls if c.path.startswith("/whatsapp_business/attachments")]
    assert lookups and len(downloads) == 2
    assert all(c.headers["Authorization"] == f"Bearer {rig.meta.token}" for c in [*lookups, *downloads])
    assert sim.requests[0].last_user_text.startswith("my boiler")


async def test_kinds_hearth_cannot_use_get_a_note_once(rig: Rig, linked: Actor, sim: ModelSimulator) -> None:
    where = message("location", {"latitude": 37.48, "longitude": -122.15, "name": "Philz Coffee"},
                    message_id=(located := wamid()))
    assert (await rig.post(where)).status_code == 200
    assert (await rig.post(where)).status_code == 200
    reaction = message("reaction", {"message_id": located, "emoji": "👍"})
    assert (await rig.post(reaction)).status_code == 200
    [sent] = await rig.sent(1)
    assert sent["text"]["body"] == UNSUPPORTED_NOTE
    await rig.quiet()
    assert len(rig.meta.messages) == 1 and sim.requests == []


async def test_statuses_are_recorded_and_never_answered(rig: Rig, linked: Actor, sim: ModelSimulator,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    sim.script(Turn(text="Hello"))
    await rig.post(text("hi"))
    await rig.sent(1)
    [item] = await rig.outbox()
    assert item.platform_id
    failed = [{"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message",
               "error_data": {"details": "Message failed to send because more than 24 hours have passed since the "
                                         "customer last replied to this number."},
               "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]
    with caplog.at_level(logging.WARNING, logger="hearth.channels.whatsapp"):
        for state in ("sent", "delivered", "read"):
            assert (await rig.post(status(state, item.platform_id))).status_code == 200
        assert (await rig.post(status("failed", item.platform_id, failed))).status_code == 200
    recorded = [e for e in rig.events if e.name == "whatsapp.status"]
    assert [(e.properties["platform_id"], e.properties["status"]) for e in recorded] == [
        (item.platform_id, s) for s in ("sent", "delivered", "read", "failed")]
    assert recorded[-1].properties["errors"] == [{"code": 131047, "title": "Re-engagement message"}]
    [warning] = [r for r in caplog.records if r.name == "hearth.channels.whatsapp"]
    assert "131047" in warning.getMessage() and "Re-engagement message" in warning.getMessage()
    assert item.platform_id in warning.getMessage() and USER not in warning.getMessage()
    assert all(USER not in str(e.properties) for e in recorded)
    await rig.quiet()
    assert len(rig.meta.messages) == 1 and len(sim.requests) == 1


# --- the platform's limits ------------------------------------------------------------------------------


async def test_rate_limits_postpone_without_using_an_attempt(rig: Rig, linked: Actor, sim: ModelSimulator) -> None:
    sim.script(Turn(text="one"), Turn(text="two"))
    rig.meta.fail(Failure(130429, status=429, retry_after=1))
    await rig.post(text("first"))
    await rig.calls("/messages", 1)
    [item] = await rig.outbox()
    waited = (item.next_attempt_at - utcnow()).total_seconds()
    assert item.status == "pending" and item.attempts == 0 and 0.3 < waited <= 1.0
    assert [m["text"]["body"] for m in await rig.sent(1)] == ["one"]

    rig.meta.fail(Failure(131056))  # the pair limit, without a Retry-After: hearth's own wait
    await rig.post(text("second"))
    await rig.calls("/messages", 3)
    held = [i for i in await rig.outbox() if i.status == "pending"]
    assert len(held) == 1 and held[0].attempts == 0
    assert 4.5 < (held[0].next_attempt_at - utcnow()).total_seconds() <= 6.0
    await rig.runtime.channel_store.postpone(held[0].id, utcnow())  # skip the wait
    assert [m["text"]["body"] for m in await rig.sent(2)] == ["one", "two"]


async def test_outside_the_24_hour_window_the_reply_is_a_dead_letter(rig: Rig, linked: Actor,
                                                                     sim: ModelSimulator) -> None:
    sim.script(Turn(text="late"))
    rig.meta.fail(Failure(131047))
    await rig.post(text("hello again"))
    for _ in range(500):
        dead = await rig.runtime.outbox.dead()
        if dead:
            break
        await rig.runtime.outbox.run_once()
        await asyncio.sleep(0.02)
    [letter] = await rig.runtime.outbox.dead()
    assert letter.attempts == 1 and "131047" in (letter.last_error or "")
    assert letter.payload == {"type": "text", "text": {"preview_url": False, "body": "late"}}
    assert list(rig.meta.messages) == []


@pytest.mark.parametrize(("failure", "retry_after", "permanent", "channel_wide"), [
    (Failure(130429), 5.0, False, True),
    (Failure(130429, status=429, retry_after="2"), 2.0, False, True),
    (Failure(131056), 6.0, False, False),
    (Failure(4), 60.0, False, True),
    (Failure(80007), 60.0, False, True),
    (Failure(None, status=429, retry_after=7), 7.0, False, True),
    (Failure(131047), None, True, False),
    (Failure(131026), None, True, False),
    (Failure(100), None, True, False),
    (Failure(190, status=401), None, True, False),
    (Failure(131000, status=500), None, False, False),
    (Failure(None, status=503), None, False, False),
])
async def test_graph_errors_become_the_outbox_decisions(meta: FakeWhatsApp, failure: Failure,
                                                        retry_after: float | None, permanent: bool,
                                                        channel_wide: bool) -> None:
    api = GraphApi(config_for(meta))
    meta.fail(failure)
    try:
        with pytest.raises(DeliveryError) as caught:
            await api.send(USER, {"type": "text", "text": {"preview_url": False, "body": "x"}})
        assert meta.token not in str(caught.value)
        assert (caught.value.retry_after, caught.value.permanent, caught.value.channel_wide) == (
            retry_after, permanent, channel_wide)
        assert await api.send(USER, {"type": "text", "text": {"preview_url": False, "body": "x"}})
    finally:
        await api.aclose()


async def test_a_wrong_token_is_permanent_and_an_unreachable_api_is_retried(meta: FakeWhatsApp) -> None:
    wrong = GraphApi(config_for(meta, token="EAAJB-expired"))
    payload = {"type": "text", "text": {"preview_url": False, "body": "x"}}
    with pytest.raises(DeliveryError) as refused:
        await wrong.send(USER, payload)
    assert refused.value.permanent and "190" in str(refused.value) and "EAAJB" not in str(refused.value)
    await wrong.aclose()
    away = GraphApi(config_for(meta, api_base="http://127.0.0.1:9/v25.0", timeout=2.0))
    with pytest.raises(DeliveryError) as unreachable:
        await away.send(USER, payload)
    assert not unreachable.value.permanent and unreachable.value.retry_after is None
    await away.aclose()


# --- rendering and parsing, against the API's rules -------------------------------------------------------


def test_replies_are_rendered_within_the_cloud_api_limits() -> None:
    renderer = WhatsAppRenderer()

    def checked(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for payload in payloads:
            assert message_problem({"messaging_product": "whatsapp", "to": USER, **payload}) is None, payload
        return payloads

    long = checked(renderer.render("word " * 1500, ()))
    assert len(long) == 2 and all(p["type"] == "text" for p in long)
    three = checked(renderer.render("Which one?", [Button("a", "A very long first option label"), Button("b", "B"),
                                                   Button("c", "C")]))
    [only] = three
    titles = [b["reply"]["title"] for b in only["interactive"]["action"]["buttons"]]
    assert only["interactive"]["body"]["text"] == "Which one?" and titles == ["A very long first o…", "B", "C"]
    wordy = checked(renderer.render("x " * 700, [Button("y", "Yes"), Button("n", "No")]))
    assert [p["type"] for p in wordy] == ["text", "interactive"]
    assert wordy[1]["interactive"]["body"]["text"] == "Please choose:"
    many = checked(renderer.render("Pick a slot", [Button(f"s{i}", f"Slot {i} on Thursday afternoon")
                                                   for i in range(12)]))
    [listed] = many
    rows = listed["interactive"]["action"]["sections"][0]["rows"]
    assert listed["interactive"]["type"] == "list" and len(rows) == 10
    assert rows[0] == {"id": "s0", "title": "Slot 0 on Thursday afte…", "description": "Slot 0 on Thursday afternoon"}


def test_webhook_payloads_from_the_docs_are_parsed() -> None:
    async def download(media_id: str) -> bytes:
        return media_id.encode()

    def parsed(payload: dict[str, Any]) -> list[Inbound]:
        batch = parse_webhook(payload, phone_number_id=PHONE_NUMBER_ID, download=download)
        return batch.messages

    [row] = parsed(message("interactive", {"type": "list_reply", "list_reply": {
        "id": "priority_express", "title": "Priority Mail Express", "description": "Next Day to 2 Days"}}))
    assert (row.action, row.text, row.sender_id, row.address, row.sender_name) == (
        "priority_express", "Priority Mail Express", USER, USER, "Sheena Nelson")
    [quick] = parsed(message("button", {"payload": "Unsubscribe", "text": "Unsubscribe"}))
    assert quick.action == "Unsubscribe"
    [voice] = parsed(message("audio", {"mime_type": "audio/ogg; codecs=opus", "sha256": "abc", "id": "1003383421387256",
                                       "voice": True}))
    assert voice.files[0].filename == "voice-387256.ogg" and voice.files[0].media_type == "audio/ogg"
    assert parsed(text("hi", phone_number_id="999")) == []  # another number of the business account
    assert parsed(text("hi", group_id="120363025246125486@g.us")) == []
    assert parse_webhook({"object": "page", "entry": []}, phone_number_id="", download=download).messages == []
    unsupported = parse_webhook(message("unsupported", {}, errors=[{"code": 131051, "title": "Message type unknown"}]),
                                phone_number_id=PHONE_NUMBER_ID, download=download)
    assert len(unsupported.unsupported) == 1 and unsupported.messages == []


async def test_the_fake_graph_api_takes_read_receipts_as_meta_documents_them(meta: FakeWhatsApp) -> None:
    url = f"{meta.api_base}/{PHONE_NUMBER_ID}/messages"
    auth = {"Authorization": f"Bearer {meta.token}"}
    typing = {"messaging_product": "whatsapp", "status": "read", "message_id": wamid(),
              "typing_indicator": {"type": "text"}}
    async with httpx.AsyncClient() as client:
        ok = await client.post(url, json=typing, headers=auth)
        assert ok.status_code == 200 and ok.json() == {"success": True}
        for wrong in ({**typing, "typing_indicator": {"type": "audio"}}, {**typing, "status": "delivered"},
                      {**typing, "message_id": "123"}, {**typing, "to": USER}):
            refused = await client.post(url, json=wrong, headers=auth)
            assert refused.status_code == 400 and refused.json()["error"]["code"] == 100
        assert (await client.post(url, json=typing)).status_code == 401
    assert list(meta.reads) == [typing] and list(meta.messages) == []
    assert meta.calls_to("/messages") == [] and len(meta.calls_to("/messages", reads=True)) == 6


async def test_the_fake_graph_api_stops_by_itself() -> None:
    fake = FakeWhatsApp(lifetime=0.2)
    await fake.start()
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{fake.api_base}/123")).status_code == 401  # Graph's answer without a token
        await asyncio.sleep(0.5)
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{fake.api_base}/123")
    await fake.stop()
