"""The Slack channel over real HTTP: Slack's documented payloads, signed with slack_sdk's own signer, posted to
the routes served by Hypercorn; replies sent through the outbox with slack_sdk's web client to a fake Slack Web
API on a real socket (``hearth.testing.fake_slack``)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from hearth.core.outbox import Outbox
from hearth.errors import ConfigError, DeliveryError
from hearth.gateway.channels.common import ChannelServices, SenderRules
from hearth.gateway.channels.slack import SECTION_LIMIT, SlackChannel, SlackConfig, SlackRenderer, plain_text
from hearth.runtime import Runtime
from hearth.store.calendar import CalendarRepository
from hearth.testing.fake_slack import FakeSlack
from hearth.testing.modelsim import ModelSimulator, Turn
from hearth.types import Actor, Button, RetryPolicy
from tests.support.serving import serving

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the example signing secret of Slack's verification guide
ANN = "U061F7AUR"
TEAM = "T0HEARTH"
CHANNEL = "C123ABC456"
DM = "D024BE91L"
QUICK = RetryPolicy(attempts=3, base=0.05, cap=0.1, jitter=False)


# --- Slack's payloads, as its documentation shows them -------------------------------------------------------


def wrap(event: dict[str, Any], event_id: str) -> dict[str, Any]:
    """The event wrapper of https://api.slack.com/apis/events-api#callback-field."""
    return {"token": "XXYYZZ", "team_id": TEAM, "api_app_id": "A123ABC456", "event": event, "type": "event_callback",
            "authorizations": [{"enterprise_id": None, "team_id": TEAM, "user_id": "U0HEARTH", "is_bot": True,
                                "is_enterprise_install": False}],
            "event_id": event_id, "event_time": 1515449522}


def app_mention(text: str, event_id: str = "Ev123ABC456", *, user: str = ANN, ts: str = "1515449522.000016",
                thread_ts: str | None = None) -> dict[str, Any]:
    event = {"type": "app_mention", "user": user, "text": text, "ts": ts, "channel": CHANNEL, "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return wrap(event, event_id)


def direct(text: str, event_id: str = "Ev0PV52K21", *, user: str = ANN, ts: str = "1355517523.000005",
           **extra: Any) -> dict[str, Any]:
    """https://api.slack.com/events/message.im"""
    event = {"type": "message", "channel": DM, "user": user, "text": text, "ts": ts, "event_ts": ts,
             "channel_type": "im", **extra}
    return wrap(event, event_id)


def press(slack: FakeSlack, message: dict[str, Any], element: dict[str, Any], *, user: str = ANN) -> dict[str, Any]:
    """A block_actions payload (https://api.slack.com/reference/interaction-payloads/block-actions) for a press
    of ``element`` on ``message`` as the fake posted it."""
    channel = message["channel"]
    echoed = {key: value for key, value in message.items() if key != "channel"}
    container = {"type": "message", "message_ts": message["ts"], "channel_id": channel, "is_ephemeral": False}
    if "thread_ts" in message:
        container["thread_ts"] = message["thread_ts"]
    return {
        "type": "block_actions", "user": {"id": user, "username": "ann", "name": "ann", "team_id": TEAM},
        "api_app_id": "A123ABC456", "token": "XXYYZZ", "container": container,
        "trigger_id": f"{time.time_ns()}.1395872398.9bc163894734c1f4", "team": {"id": TEAM, "domain": "hearth"},
        "enterprise": None, "is_enterprise_install": False,
        "channel": {"id": channel, "name": "directmessage" if channel.startswith("D") else "general"},
        "message": echoed, "state": {"values": {}}, "response_url": slack.response_url(),
        "actions": [{"action_id": element["action_id"], "block_id": "=qXel", "text": element["text"],
                     "value": element["value"], "style": element.get("style"), "type": "button",
                     "action_ts": f"{time.time():.6f}"}],
    }


def signed(body: bytes, *, at: float | None = None, secret: str = SECRET,
           content_type: str = "application/json") -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature, "Content-Type": content_type}


# --- the channel, served --------------------------------------------------------------------------------------


@dataclass
class Rig:
    runtime: Runtime
    slack: FakeSlack
    channel: SlackChannel
    outbox: Outbox
    http: httpx.AsyncClient

    async def event(self, payload: dict[str, Any], **headers: str) -> httpx.Response:
        body = json.dumps(payload).encode()
        return await self.http.post("/channels/slack/events", content=body, headers={**signed(body), **headers})

    async def interact(self, payload: dict[str, Any]) -> httpx.Response:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.http.post("/channels/slack/interactive", content=body,
                                    headers=signed(body, content_type="application/x-www-form-urlencoded"))

    async def settle(self) -> None:
        """Every answer in the outbox, and the outbox (running in the background) with nothing left to send."""
        await self.channel.close()
        for _ in range(200):
            if await self.runtime.channel_store.next_attempt() is None:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the outbox did not drain")


@asynccontextmanager
async def rigged(runtime: Runtime, slack: FakeSlack, **config: Any) -> AsyncIterator[Rig]:
    settings = {"bot_token": slack.token, "signing_secret": SECRET, "api_base": slack.api_url,
                "rules": SenderRules("pairing"), "timeout": 5.0, **config}
    outbox = Outbox(runtime.channel_store, runtime.bus, policy=QUICK)
    channel = SlackChannel(SlackConfig(**settings), ChannelServices(runtime.inbox, runtime.identities,
                                                                    runtime.channel_store, outbox, runtime.files,
                                                                    runtime.bus))
    outbox.add_sender("slack", channel)
    await channel.start()
    sending = asyncio.create_task(outbox.run())
    try:
        async with serving(channel.routes(), runtime.settings.server) as url, \
                httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield Rig(runtime, slack, channel, outbox, http)
    finally:
        await channel.close()
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(team=TEAM) as fake:
        yield fake


@pytest.fixture
async def rig(runtime: Runtime, slack: FakeSlack, admin: Actor) -> AsyncIterator[Rig]:
    await runtime.users.link_identity(admin.user_id, "slack", ANN, "Ann")
    async with rigged(runtime, slack) as made:
        yield made


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


# --- in --------------------------------------------------------------------------------------------------------


async def test_url_verification_is_answered_with_its_challenge(rig: Rig) -> None:
    challenge = {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "type": "url_verification",
                 "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    response = await rig.event(challenge)
    assert response.status_code == 200
    assert response.json() == {"challenge": challenge["challenge"]}
    unsigned = await rig.http.post("/channels/slack/events", json=challenge)
    assert unsigned.status_code == 401


async def test_a_mention_is_answered_in_its_thread_once(rig: Rig, sim: ModelSimulator) -> None:
    assert rig.channel.bot_user == "U0HEARTH"  # auth.test at start
    payload = app_mention("<@U0HEARTH> is it everything a river should be?")
    assert (await rig.event(payload)).status_code == 200
    [posted] = await rig.slack.wait_for("chat.postMessage")
    text = "You said: is it everything a river should be?"
    assert posted.body == {"channel": CHANNEL, "thread_ts": "1515449522.000016", "text": text,
                           "blocks": [section(text)]}
    assert posted.headers["Authorization"] == f"Bearer {rig.slack.token}"
    assert sim.requests[-1].last_user_text == "is it everything a river should be?"

    again = await rig.event(payload, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert again.status_code == 200
    await rig.settle()
    assert len(rig.slack.of("chat.postMessage")) == 1 and len(sim.requests) == 1

    in_thread = app_mention("<@U0HEARTH> and <@U0BOB|bob> too &amp; more", "Ev2", ts="1515449600.000100",
                            thread_ts="1515449522.000016")
    assert (await rig.event(in_thread)).status_code == 200
    await rig.slack.wait_for("chat.postMessage", 2)
    assert sim.requests[-1].last_user_text == "and @bob too & more"
    assert rig.slack.of("chat.postMessage")[-1].body["thread_ts"] == "1515449522.000016"


async def test_direct_messages_are_taken_but_not_bots_edits_or_joins(rig: Rig, sim: ModelSimulator) -> None:
    assert (await rig.event(direct("Hello hello can you hear me?"))).status_code == 200
    [posted] = await rig.slack.wait_for("chat.postMessage")
    assert posted.body == {"channel": DM, "text": "You said: Hello hello can you hear me?",
                           "blocks": [section("You said: Hello hello can you hear me?")]}  # a DM: top level

    ignored = [
        direct("You said: hi", "Ev-bot", user="U0HEARTH", bot_id="B0HEARTH", app_id="A123ABC456"),
        direct("from the bot user itself", "Ev-self", user="U0HEARTH"),
        direct("a webhook", "Ev-other-bot", bot_id="B0OTHER", subtype="bot_message"),
        wrap({"type": "message", "subtype": "message_changed", "hidden": True, "channel": DM, "channel_type": "im",
              "ts": "1358878755.000001",
              "message": {"type": "message", "user": ANN, "text": "Hello, world!", "ts": "1355517523.000005",
                          "edited": {"user": ANN, "ts": "1358878755.000001"}}}, "Ev-edit"),
        direct("<@U061F7AUR> has joined the channel", "Ev-join", subtype="channel_join"),
        wrap({"type": "message", "channel": CHANNEL, "user": ANN, "text": "Live long and prospect.",
              "ts": "1355517523.000006", "event_ts": "1355517523.000006", "channel_type": "channel"}, "Ev-chan"),
        wrap({"type": "reaction_added", "user": ANN, "reaction": "thumbsup", "item_user": "U0HEARTH",
              "item": {"type": "message", "channel": DM, "ts": "1360782400.498405"},
              "event_ts": "1360782804.083113"}, "Ev-reaction"),
    ]
    for payload in ignored:
        assert (await rig.event(payload)).status_code == 200, payload["event_id"]
    await rig.settle()
    assert len(sim.requests) == 1 and len(rig.slack.of("chat.postMessage")) == 1


async def test_a_shared_file_is_fetched_with_the_bot_token_and_only_from_slack(rig: Rig, admin: Actor) -> None:
    notes = b"The boiler was serviced on 3 March by Dana.\n"
    shared = rig.slack.add_file("notes.txt", notes)
    stranger = {**rig.slack.add_file("evil.txt", b"x"), "url_private_download": "https://files.example.com/evil.txt"}
    payload = direct("what does this say?", "Ev04EEHX2PSS", subtype="file_share", upload=True,
                     files=[shared, stranger], ts="1670631527.874149", display_as_bot=False)
    assert (await rig.event(payload)).status_code == 200
    posted = await rig.slack.wait_for("chat.postMessage", 2)
    [download] = rig.slack.of("file")
    assert download.path.endswith("/download/notes.txt")
    assert download.headers["Authorization"] == f"Bearer {rig.slack.token}"
    assert "I could not take evil.txt: it is not on Slack's file server" in posted[0].body["text"]
    assert [f.filename for f in await rig.runtime.files.list(admin.user_id)] == ["notes.txt"]


async def test_requests_not_signed_by_slack_are_refused_and_change_nothing(rig: Rig, sim: ModelSimulator) -> None:
    body = json.dumps(direct("hi", "Ev-forged")).encode()
    now = time.time()
    forged = [
        signed(body, secret="not-the-signing-secret"),
        signed(body, at=now - 360),  # six minutes old
        signed(body, at=now + 360),  # six minutes ahead
        {**signed(body), "X-Slack-Request-Timestamp": "yesterday"},
        {k: v for k, v in signed(body).items() if k != "X-Slack-Signature"},
        {k: v for k, v in signed(body).items() if k != "X-Slack-Request-Timestamp"},
        {"Content-Type": "application/json"},
        signed(body + b" "),  # signed, then changed
    ]
    for headers in forged:
        response = await rig.http.post("/channels/slack/events", content=body, headers=headers)
        assert response.status_code == 401, headers
    press_body = urlencode({"payload": "{}"}).encode()
    refused = await rig.http.post("/channels/slack/interactive", content=press_body,
                                  headers=signed(press_body, secret="nope"))
    assert refused.status_code == 401

    malformed = b'{"type": "event_callback", "event": '
    assert (await rig.http.post("/channels/slack/events", content=malformed,
                                headers=signed(malformed))).status_code == 400
    not_a_form = b"payload=%7Bnot json"
    assert (await rig.http.post("/channels/slack/interactive", content=not_a_form,
                                headers=signed(not_a_form))).status_code == 400
    huge = b'{"type": "event_callback", "pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert (await rig.http.post("/channels/slack/events", content=huge, headers=signed(huge))).status_code == 413

    await rig.settle()
    assert sim.requests == [] and rig.slack.of("chat.postMessage") == []
    # nothing was recorded for the forged event: the real one with the same id is taken
    assert (await rig.http.post("/channels/slack/events", content=body, headers=signed(body))).status_code == 200
    await rig.slack.wait_for("chat.postMessage")


async def test_without_a_signing_secret_the_channel_is_off(runtime: Runtime, slack: FakeSlack) -> None:
    async with rigged(runtime, slack, signing_secret="") as off:
        body = json.dumps(direct("hi")).encode()
        assert (await off.http.post("/channels/slack/events", content=body, headers=signed(body))).status_code == 404
        assert (await off.http.post("/channels/slack/interactive", content=body,
                                    headers=signed(body))).status_code == 404
    assert list(slack.calls) == []


async def test_a_confirmation_in_a_thread_is_answered_by_its_yes_button(rig: Rig, sim: ModelSimulator,
                                                                       admin: Actor) -> None:
    payload = app_mention("<@U0HEARTH> schedule a meeting tomorrow at 3pm for half an hour")
    assert (await rig.event(payload)).status_code == 200
    [asked] = await rig.slack.wait_for("chat.postMessage")
    question = asked.body["text"]
    yes = asked.body["blocks"][1]["elements"][0]
    token = yes["value"].removeprefix("confirm:")
    assert question.startswith("Shall I ") and question.endswith("?")
    assert asked.body == {
        "channel": CHANNEL, "thread_ts": "1515449522.000016", "text": question,
        "blocks": [section(question), {"type": "actions", "elements": [
            {"type": "button", "action_id": "hearth-0", "text": {"type": "plain_text", "text": "Yes", "emoji": True},
             "value": f"confirm:{token}", "style": "primary"},
            {"type": "button", "action_id": "hearth-1", "text": {"type": "plain_text", "text": "No", "emoji": True},
             "value": f"cancel:{token}", "style": "danger"}]}],
    }
    assert sim.requests == []  # no model needed

    started = time.monotonic()
    response = await rig.interact(press(rig.slack, rig.slack.messages[-1], yes))
    assert response.status_code == 200 and time.monotonic() - started < 1.0
    posted = await rig.slack.wait_for("chat.postMessage", 2)
    done = posted[-1].body
    assert done["channel"] == CHANNEL and done["thread_ts"] == "1515449522.000016"
    assert done["text"].startswith("Scheduled “Meeting”")
    [meeting] = await CalendarRepository(rig.runtime.db).all(admin.user_id)
    assert meeting.ends_at - meeting.starts_at == timedelta(minutes=30)
    assert rig.slack.of("response_url") == []  # in a channel the buttons stay: anybody could press them
    assert sim.requests == []


async def test_a_button_in_a_dm_replaces_the_question_with_the_choice(rig: Rig, admin: Actor) -> None:
    assert (await rig.event(direct("schedule a meeting tomorrow at 3pm for half an hour"))).status_code == 200
    [asked] = await rig.slack.wait_for("chat.postMessage")
    assert "thread_ts" not in asked.body
    no = asked.body["blocks"][1]["elements"][1]
    assert (await rig.interact(press(rig.slack, rig.slack.messages[-1], no))).status_code == 200
    [update] = await rig.slack.wait_for("response_url")
    assert update.body["replace_original"] is True
    assert update.body["blocks"][0]["text"]["text"] == asked.body["text"]
    assert update.body["blocks"][-1] == {"type": "context",
                                         "elements": [{"type": "mrkdwn", "text": f"<@{ANN}> chose *No*"}]}
    assert all(block["type"] != "actions" for block in update.body["blocks"])
    posted = await rig.slack.wait_for("chat.postMessage", 2)
    assert posted[-1].body["text"] == "OK, I won't do that." and posted[-1].body["channel"] == DM
    assert await CalendarRepository(rig.runtime.db).all(admin.user_id) == []


async def test_an_unknown_sender_gets_a_pairing_code(rig: Rig, sim: ModelSimulator) -> None:
    assert (await rig.event(direct("hi there", "Ev-stranger", user="U0STRANGER"))).status_code == 200
    [posted] = await rig.slack.wait_for("chat.postMessage")
    assert posted.body["channel"] == DM and "hearth users pair" in posted.body["text"]
    await rig.settle()
    assert sim.requests == []


async def test_in_a_channel_an_unknown_member_is_told_to_pair_in_a_dm(rig: Rig, sim: ModelSimulator) -> None:
    mention = app_mention("<@U0HEARTH> let me in", "Ev-stranger-channel", user="U0STRANGER")
    assert (await rig.event(mention)).status_code == 200
    [said] = await rig.slack.wait_for("chat.postMessage")
    assert (said.body["channel"], said.body["thread_ts"]) == (CHANNEL, "1515449522.000016")  # in the channel...
    assert "private message" in said.body["text"] and "hearth users pair" not in said.body["text"]  # ...no code
    assert await rig.runtime.channel_store.pending_pairings() == []

    assert (await rig.event(direct("hi", "Ev-stranger-dm", user="U0STRANGER"))).status_code == 200
    _, dm = await rig.slack.wait_for("chat.postMessage", 2)
    [pending] = await rig.runtime.channel_store.pending_pairings()
    assert dm.body["channel"] == DM and pending.code in dm.body["text"] and pending.external_id == "U0STRANGER"
    await rig.settle()
    assert sim.requests == []


async def test_the_events_endpoint_answers_at_once_while_the_model_is_slow(rig: Rig, sim: ModelSimulator) -> None:
    sim.script(Turn(text="Finally.", ttft=3.2))
    payload = direct("think hard", "Ev-slow")
    started = time.monotonic()
    response = await rig.event(payload)
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and elapsed < 0.5, elapsed
    retried = await rig.event(payload, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert retried.status_code == 200
    [posted] = await rig.slack.wait_for("chat.postMessage", within=10)
    assert posted.body["text"] == "Finally." and len(sim.requests) == 1


# --- out -------------------------------------------------------------------------------------------------------


async def test_slack_errors_become_delivery_errors_that_say_what_to_do(rig: Rig) -> None:
    message = SlackRenderer().render("hello", ())[0]
    rig.slack.fail("chat.postMessage", "ratelimited", status=429, retry_after=7)
    with pytest.raises(DeliveryError) as limited:
        await rig.channel.send(f"{CHANNEL}:1.0", message)
    assert limited.value.retry_after == 7 and not limited.value.channel_wide and not limited.value.permanent
    for error in ("channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "account_inactive"):
        rig.slack.fail("chat.postMessage", error)
        with pytest.raises(DeliveryError) as refused:
            await rig.channel.send(CHANNEL, message)
        assert refused.value.permanent and error in str(refused.value)
    rig.slack.fail("chat.postMessage", None, status=503)
    with pytest.raises(DeliveryError) as unavailable:
        await rig.channel.send(CHANNEL, message)
    assert not unavailable.value.permanent and unavailable.value.retry_after is None
    rig.slack.fail("chat.postMessage", "fatal_error")
    with pytest.raises(DeliveryError) as odd:
        await rig.channel.send(CHANNEL, message)
    assert not odd.value.permanent
    assert await rig.channel.send(f"{CHANNEL}:1.0", message)  # the message's ts


async def test_the_outbox_honours_retry_after_and_buries_dead_ends(rig: Rig) -> None:
    rig.slack.fail("chat.postMessage", "ratelimited", status=429, retry_after=1)
    await rig.outbox.put("slack", f"{CHANNEL}:1.0", SlackRenderer().render("patience", ()))
    await rig.outbox.put("slack", DM, SlackRenderer().render("meanwhile", ()))
    calls = await rig.slack.wait_for("chat.postMessage", 3, within=5)
    assert [c.body["text"] for c in calls] == ["patience", "meanwhile", "patience"]
    assert calls[1].at - calls[0].at < 0.5  # the limit held back that message only, not the channel
    assert calls[2].at - calls[0].at >= 0.9  # and for as long as Retry-After said

    rig.slack.fail("chat.postMessage", "channel_not_found")
    [gone] = await rig.outbox.put("slack", "C0GONE", SlackRenderer().render("anyone?", ()))
    for _ in range(100):
        dead = await rig.outbox.dead()
        if dead:
            break
        await asyncio.sleep(0.05)
    assert [(d.id, d.attempts) for d in dead] == [(gone, 1)] and "channel_not_found" in (dead[0].last_error or "")

    network_down = SlackChannel(SlackConfig(bot_token="xoxb-1", signing_secret=SECRET, api_base=_closed_port_url()),
                                ChannelServices(rig.runtime.inbox, rig.runtime.identities, rig.runtime.channel_store,
                                                rig.outbox, None, rig.runtime.bus))
    with pytest.raises(DeliveryError) as unreachable:
        await network_down.send(CHANNEL, {"text": "x"})
    assert not unreachable.value.permanent


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/"


async def test_start_checks_the_token(runtime: Runtime, slack: FakeSlack) -> None:
    def channel(**config: Any) -> SlackChannel:
        return SlackChannel(SlackConfig(signing_secret=SECRET, **config),
                            ChannelServices(runtime.inbox, runtime.identities, runtime.channel_store,
                                            runtime.outbox, None, runtime.bus))

    with pytest.raises(ConfigError) as refused:
        await channel(bot_token="xoxb-wrong", api_base=slack.api_url).start()
    assert refused.value.variable == "SLACK_BOT_TOKEN" and "invalid_auth" in str(refused.value)
    assert "xoxb-wrong" not in str(refused.value)
    with pytest.raises(ConfigError):
        await channel(bot_token="", api_base=slack.api_url).start()
    away = channel(bot_token=slack.token, api_base=_closed_port_url())
    await away.start()  # Slack unreachable at start: logged, not fatal
    assert away.bot_user is None


# --- the dialect -----------------------------------------------------------------------------------------------


def test_replies_are_cut_to_the_section_limit_with_the_buttons_last() -> None:
    text = "\n\n".join(f"Paragraph {i}: " + "word " * 120 for i in range(12))
    buttons = (Button("confirm:t0k", "Yes"), Button("cancel:t0k", "No"), Button("later", "Remind me later"))
    payloads = SlackRenderer().render(text, buttons)
    assert len(payloads) > 1
    assert all(len(p["text"]) <= SECTION_LIMIT and p["blocks"][0] == section(p["text"]) for p in payloads)
    assert [len(p["blocks"]) for p in payloads] == [1] * (len(payloads) - 1) + [2]
    elements = payloads[-1]["blocks"][1]["elements"]
    assert [(e["action_id"], e["value"], e.get("style")) for e in elements] == [
        ("hearth-0", "confirm:t0k", "primary"), ("hearth-1", "cancel:t0k", "danger"), ("hearth-2", "later", None)]
    rendered = SlackRenderer().render("**bold** <!channel> & `code`", ())[0]["text"]
    assert rendered == "*bold* &lt;!channel&gt; &amp; `code`"
    assert SlackRenderer().render("", ()) == []


def test_slack_markup_becomes_plain_text() -> None:
    assert plain_text("<@U0HEARTH> hi <@U2|bob>, see <#C1|general> &amp; <https://x.org|the docs>", "U0HEARTH") == (
        "hi @bob, see #general & the docs (https://x.org)")
    assert plain_text("<!here> mail <mailto:a@b.org|a@b.org> at <https://x.org>", None) == (
        "@here mail a@b.org at https://x.org")
    assert plain_text("1 &lt; 2 &gt; 0", None) == "1 < 2 > 0"
