"""The outbox worker, the identity policies for chat platforms, and the channels' common path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hearth.core.bus import EventBus
from hearth.core.identity import ChannelIdentities, Refusal
from hearth.core.outbox import Outbox
from hearth.errors import DeliveryError
from hearth.gateway.channels.common import ChannelServices, Inbound, PlatformChannel, SenderRules
from hearth.runtime import Runtime
from hearth.store import Database, PlainTextCodec, UserRepository, upgrade
from hearth.store.channels import ChannelRepository
from hearth.testing.modelsim import ModelSimulator, Turn
from hearth.types import Actor, Button, Envelope, RetryPolicy, utcnow


class Platform:
    """A sender that fails as told, then records what it sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.failures: list[DeliveryError] = []

    async def send(self, address: str, payload: Mapping[str, Any]) -> str | None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((address, dict(payload)))
        return f"p{len(self.sent)}"


class Plain:
    def render(self, text: str, buttons: Sequence[Button]) -> list[dict[str, Any]]:
        return [{"text": text, "buttons": [b.label for b in buttons]}]


FAST = RetryPolicy(attempts=3, base=0.0, cap=0.0, jitter=False)


async def test_failures_are_retried_then_dead_and_an_operator_retry_sends(db: Database) -> None:
    store = ChannelRepository(db, PlainTextCodec())
    outbox = Outbox(store, EventBus(), policy=FAST)
    platform = Platform()
    outbox.add_sender("telegram", platform)
    [first] = await outbox.put("telegram", "42", [{"text": "hello"}])
    platform.failures = [DeliveryError("HTTP 502")] * 3
    for _ in range(3):
        await outbox.run_once()
    [dead] = await outbox.dead()
    assert dead.id == first and dead.attempts == 3 and dead.last_error == "HTTP 502"
    assert platform.sent == []
    await outbox.retry(first)
    await outbox.run_once()
    assert platform.sent == [("42", {"text": "hello"})]
    assert (await store.get(first)).status == "sent"


async def test_permanent_failures_die_at_once(db: Database) -> None:
    outbox = Outbox(ChannelRepository(db, PlainTextCodec()), EventBus(), policy=FAST)
    platform = Platform()
    outbox.add_sender("slack", platform)
    await outbox.put("slack", "C1", [{"text": "x"}])
    platform.failures = [DeliveryError("channel_not_found", permanent=True)]
    await outbox.run_once()
    assert len(await outbox.dead()) == 1


async def test_retry_after_is_honoured_without_using_an_attempt(db: Database) -> None:
    store = ChannelRepository(db, PlainTextCodec())
    outbox = Outbox(store, EventBus(), policy=FAST)
    platform = Platform()
    outbox.add_sender("telegram", platform)
    [a] = await outbox.put("telegram", "1", [{"text": "a"}])
    [b] = await outbox.put("telegram", "2", [{"text": "b"}])
    platform.failures = [DeliveryError("Too Many Requests: retry after 1", retry_after=1.0, channel_wide=True)]
    assert await outbox.run_once() == 1  # the bot-wide limit holds "b" back in the same pass
    item = await store.get(a)
    assert item.attempts == 0 and item.next_attempt_at > utcnow()
    assert await outbox.run_once() == 0
    await asyncio.sleep(1.05)
    await outbox.run_once()
    assert [address for address, _ in platform.sent] == ["1", "2"]
    assert (await store.get(b)).status == "sent"


async def test_a_restart_in_the_middle_of_retries_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hearth.db'}"
    db = Database(url)
    await upgrade(db)
    outbox = Outbox(ChannelRepository(db, PlainTextCodec()), EventBus(), policy=RetryPolicy(3, 0.0, 0.0, False))
    failing = Platform()
    failing.failures = [DeliveryError("HTTP 503")]
    outbox.add_sender("whatsapp", failing)
    await outbox.put("whatsapp", "4915", [{"text": "one"}, {"text": "two"}])
    await outbox.run_once()  # "one" failed once; "two" waits behind it
    await db.aclose()  # the process goes away

    db = Database(url)
    try:
        restarted = Outbox(ChannelRepository(db, PlainTextCodec()), EventBus())
        platform = Platform()
        restarted.add_sender("whatsapp", platform)
        task = asyncio.create_task(restarted.run())
        for _ in range(100):
            if len(platform.sent) == 2:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        assert [p["text"] for _, p in platform.sent] == ["one", "two"]
    finally:
        await db.aclose()


async def test_identity_policies(db: Database) -> None:
    users = UserRepository(db)
    identities = ChannelIdentities(users, ChannelRepository(db, PlainTextCodec()), EventBus())
    refused = await identities.resolve("telegram", "100", "Ann", policy="pairing")
    assert isinstance(refused, Refusal) and refused.code and refused.code in (refused.text or "")
    assert await users.find_identity("telegram", "100") is None

    stranger = await identities.resolve("telegram", "101", "Eve", policy="allowlist", allowlist=frozenset({"102"}))
    assert stranger == Refusal(None)
    listed = await identities.resolve("telegram", "102", "Bo Diddley", policy="allowlist",
                                      allowlist=frozenset({"102"}))
    assert isinstance(listed, Actor) and listed.name == "telegram-bo-diddley" and listed.identity == "102"
    again = await identities.resolve("telegram", "102", "Bo Diddley", policy="pairing")
    assert isinstance(again, Actor) and again.user_id == listed.user_id  # linked now, whatever the policy

    opened = await identities.resolve("slack", "U9", None, policy="open")
    assert isinstance(opened, Actor) and opened.name == "slack-u9"
    await users.set_disabled(opened.user_id, True)
    assert await identities.resolve("slack", "U9", None, policy="open") == Refusal(None)


async def test_a_platform_message_is_answered_once_through_the_outbox(runtime: Runtime, sim: ModelSimulator,
                                                                      admin: Actor) -> None:
    store = ChannelRepository(runtime.db, PlainTextCodec())
    outbox = Outbox(store, runtime.bus, policy=FAST)
    platform = Platform()
    outbox.add_sender("telegram", platform)
    typing: list[str] = []

    async def typing_in(address: str, message_id: str | None) -> None:
        typing.append(address)

    services = ChannelServices(runtime.inbox, ChannelIdentities(runtime.users, store, runtime.bus), store, outbox,
                               runtime.files, runtime.bus)
    channel = PlatformChannel("telegram", services, renderer=Plain(), rules=SenderRules("pairing"), typing=typing_in)
    await runtime.users.link_identity(admin.user_id, "telegram", "555", "Admin")
    sim.script(Turn(text="Hello from the model", ttft=0.1))
    message = Inbound(delivery_id="update-1", sender_id="555", sender_name="Admin", address="555", text="hi")
    assert await channel.receive(message)
    assert not await channel.receive(message)  # the platform's redelivery
    await channel.close()
    await outbox.run_once()
    assert platform.sent == [("555", {"text": "Hello from the model", "buttons": []})]
    assert typing and typing[0] == "555"

    stranger = Inbound(delivery_id="update-2", sender_id="999", sender_name="Zed", address="999", text="hi")
    await channel.receive(stranger)
    await outbox.run_once()
    assert platform.sent[-1][0] == "999" and "hearth users pair" in platform.sent[-1][1]["text"]
    assert len(sim.requests) == 1  # the stranger never reached the model


async def test_a_platform_turn_rerun_after_a_crash_is_answered_on_its_platform(  # type: ignore[no-untyped-def]
        runtime_factory, sim: ModelSimulator) -> None:
    first = await runtime_factory()
    await first.start(serving=False)
    user = await first.users.get_user_by_name("admin")
    assert user is not None
    actor = Actor(user.id, user.name, frozenset({user.role}), channel="slack", identity="U1")
    sim.script(Turn(hang=True))
    submission = await first.inbox.submit(Envelope(id="Ev1", channel="slack", sender=actor, text="hello?"),
                                          external_ref="C1:1700000000.000100")
    await asyncio.sleep(0.3)
    await first.inbox.close(grace=0.1)  # the process goes away mid-turn: the message stays pending
    await first.aclose()

    sim.script(Turn(text="Sorry for the wait: hello!"))
    second = await runtime_factory()
    await second.start()  # serving: recovers the turn
    for _ in range(200):
        queued = await second.channel_store.list(channel="slack")
        if queued:
            break
        await asyncio.sleep(0.02)
    [item] = queued
    assert item.address == "C1:1700000000.000100" and item.conversation_id == submission.conversation
    assert "Sorry for the wait" in json.dumps(item.payload)
