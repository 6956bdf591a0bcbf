"""The inbox: stored before acknowledged, deduplicated, one turn per conversation at a time, recovered."""

from __future__ import annotations

import asyncio

from hearth.core.identity import actor_for
from hearth.core.inbox import INTERRUPTED
from hearth.runtime import Runtime
from hearth.testing.modelsim import ModelSimulator, Turn
from hearth.types import Actor, Envelope, Event
from tests.support.runtime import send


async def accept_only(runtime: Runtime, actor: Actor, text: str, envelope_id: str) -> int:
    """Store a message as the inbox does, without running its turn: what a crash right after the ack leaves."""
    accepted = await runtime.conversations.accept_message(
        conversation_id=None, user_id=actor.user_id, channel="test", external_ref=None,
        dedup_key=f"test:{actor.user_id}:{envelope_id}", text=text,
        meta={"channel": "test", "envelope_id": envelope_id, "identity": ""})
    return accepted.message.id


async def test_turns_interrupted_by_a_crash_are_completed_at_start(runtime_factory, sim: ModelSimulator) -> None:  # type: ignore[no-untyped-def]
    first = await runtime_factory()
    await first.start(serving=False)
    user = await first.users.get_user_by_name("admin")
    assert user is not None
    actor = actor_for(user, channel="test")
    message_id = await accept_only(first, actor, "finish me", "lost-1")

    events: list[Event] = []
    restarted = await runtime_factory()
    restarted.bus.subscribe(events.append)
    await restarted.start()  # serving: recovery runs
    outcome = await send(restarted, actor, "finish me", envelope_id="lost-1")  # the client retries its id
    assert outcome.text == "You said: finish me"
    assert len(sim.requests) == 1  # the retry joined the recovered turn; it did not start another
    stored = await restarted.conversations.get_message(message_id)
    assert stored is not None and stored.status == "done" and stored.attempts == 1
    assert any(e.name == "turn.recovered" and e.properties["count"] == 1 for e in events)


async def test_a_turn_that_keeps_crashing_is_failed_with_a_clear_message(runtime_factory, sim: ModelSimulator) -> None:  # type: ignore[no-untyped-def]
    runtime = await runtime_factory(hearth_turn_attempts=2)
    await runtime.start(serving=False)
    user = await runtime.users.get_user_by_name("admin")
    assert user is not None
    actor = actor_for(user, channel="test")
    message_id = await accept_only(runtime, actor, "poison", "p-1")
    await runtime.conversations.start_attempt(message_id)
    await runtime.conversations.start_attempt(message_id)  # two crashes already
    assert await runtime.inbox.recover() == 0
    stored = await runtime.conversations.get_message(message_id)
    assert stored is not None and stored.status == "failed" and stored.error_code == INTERRUPTED.code
    outcome = await send(runtime, actor, "poison", envelope_id="p-1")
    assert outcome.final.error == INTERRUPTED
    assert sim.requests == []


async def test_turns_in_one_conversation_run_in_order(runtime: Runtime, admin: Actor, sim: ModelSimulator) -> None:
    first = await send(runtime, admin, "start")
    sim.script(Turn(text="slow one", ttft=0.4), Turn(text="fast two"))
    conversation = first.conversation
    slow = asyncio.create_task(send(runtime, admin, "one", conversation=conversation))
    await asyncio.sleep(0.05)
    fast = asyncio.create_task(send(runtime, admin, "two", conversation=conversation))
    assert (await slow).text == "slow one" and (await fast).text == "fast two"
    # the second turn saw the first one's answer: they did not overlap
    prompt = [m["content"] for m in sim.requests[-1].body["messages"]]
    assert prompt[-3:] == ["one", "slow one", "two"], prompt


async def test_other_conversations_are_not_blocked(runtime: Runtime, admin: Actor, sim: ModelSimulator) -> None:
    sim.script(Turn(text="slow", ttft=0.5))
    slow = asyncio.create_task(send(runtime, admin, "slow please"))
    await asyncio.sleep(0.05)
    started = asyncio.get_running_loop().time()
    fast = await send(runtime, admin, "another conversation")
    assert asyncio.get_running_loop().time() - started < 0.4
    assert fast.text == "You said: another conversation"
    await slow


async def test_shutdown_leaves_unfinished_turns_pending(runtime: Runtime, admin: Actor, sim: ModelSimulator) -> None:
    sim.script(Turn(text="never delivered", ttft=5.0))
    submission = await runtime.inbox.submit(Envelope(id="late", channel="test", sender=admin, text="long job"))
    await asyncio.sleep(0.1)
    await runtime.inbox.close(grace=0.2)
    stored = await runtime.conversations.get_message(submission.message_id)
    assert stored is not None and stored.status == "pending" and stored.attempts == 1
    # and a closing inbox accepts nothing new
    refused = None
    try:
        await runtime.inbox.submit(Envelope(id="after", channel="test", sender=admin, text="x"))
    except Exception as exc:
        refused = exc
    assert refused is not None and "restarting" in getattr(refused, "user_message", "")
    assert await runtime.conversations.count_messages() == 1


async def test_a_disabled_user_is_not_answered_after_a_restart(runtime_factory, sim: ModelSimulator) -> None:  # type: ignore[no-untyped-def]
    runtime = await runtime_factory()
    await runtime.start(serving=False)
    created = await runtime.auth.create_user("gone")
    actor = actor_for(created.user, channel="test")
    message_id = await accept_only(runtime, actor, "hello", "g-1")
    await runtime.users.set_disabled(created.user.id, True)
    assert await runtime.inbox.recover() == 0
    stored = await runtime.conversations.get_message(message_id)
    assert stored is not None and stored.status == "failed" and stored.error_code == "forbidden"
    assert sim.requests == []
