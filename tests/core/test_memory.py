"""Context memory: prompts stay within the budget; older turns are summarised, kept and used."""

from __future__ import annotations

from hearth.core.identity import actor_for
from hearth.core.memory import SUMMARY_INSTRUCTIONS
from hearth.core.tokens import estimate_text
from hearth.runtime import Runtime
from hearth.testing.modelsim import ModelSimulator, SimRequest, Turn
from hearth.types import Event
from tests.support.runtime import send

SUMMARY_MARK = SUMMARY_INSTRUCTIONS.split("{")[0][:40]


def is_summary_request(request: SimRequest) -> bool:
    messages = request.body["messages"]
    return bool(messages) and messages[0]["role"] == "system" and messages[0]["content"].startswith(SUMMARY_MARK)


def summariser(request: SimRequest) -> Turn:
    if is_summary_request(request):
        return Turn(text="The user is Ada, a pilot who likes tea; topics so far were numbered facts.")
    return Turn(text=f"Noted: {request.last_user_text[:40]}")


async def without_tools(runtime: Runtime) -> None:
    """These tests measure prompts against a tiny context: the skills' tool schemas would fill it."""
    for skill in runtime.skills.skills():
        await runtime.skills.set_enabled(skill.manifest.name, False)


def prompt_tokens(request: SimRequest) -> int:
    return sum(estimate_text(m["content"]) + 4 for m in request.body["messages"])


async def test_long_conversations_are_summarised_and_the_summary_is_used(runtime_factory, sim: ModelSimulator) -> None:  # type: ignore[no-untyped-def]
    build = runtime_factory
    runtime: Runtime = await build(ai_model_context_tokens=600, ai_model_reply_tokens=100,
                                   hearth_system_prompt="You are a test.")
    await runtime.start(serving=False)
    await without_tools(runtime)
    events: list[Event] = []
    runtime.bus.subscribe(events.append)
    sim.responder = summariser
    user = await runtime.users.get_user_by_name("admin")
    assert user is not None
    actor = actor_for(user)
    first = await send(runtime, actor, "My name is Ada and I fly planes. " + "fact " * 30)
    conversation = first.conversation
    for i in range(12):
        await send(runtime, actor, f"Fact number {i}: " + "detail " * 30, conversation=conversation)

    summaries = [r for r in sim.requests if is_summary_request(r)]
    chats = [r for r in sim.requests if not is_summary_request(r)]
    assert summaries, "the conversation outgrew the budget but nothing was summarised"
    assert len(summaries) < len(chats) / 2, "summarising should not happen on every turn"
    assert "My name is Ada" in summaries[0].body["messages"][1]["content"]
    # every prompt stayed within the budget (context minus the reply reserve)
    assert max(prompt_tokens(r) for r in chats) <= 500
    last = chats[-1].body["messages"]
    assert "Summary of the earlier conversation:\nThe user is Ada" in last[0]["content"]
    assert not any("My name is Ada" in m["content"] for m in last[1:])
    assert last[-1]["content"].startswith("Fact number 11")

    stored = await runtime.conversations.get_conversation(conversation)
    assert stored is not None and stored.summary is not None and stored.summary_upto is not None
    assert any(e.name == "memory.summarised" for e in events)

    # a fresh process on the same database uses the stored summary
    again = await build(ai_model_context_tokens=600, ai_model_reply_tokens=100, hearth_system_prompt="You are a test.")
    await without_tools(again)
    await send(again, actor, "What is my name?", conversation=conversation)
    assert "The user is Ada" in sim.requests[-1].body["messages"][0]["content"]


async def test_a_failed_summary_drops_old_turns_for_now(runtime_factory, sim: ModelSimulator) -> None:  # type: ignore[no-untyped-def]
    build = runtime_factory
    runtime: Runtime = await build(ai_model_context_tokens=600, ai_model_reply_tokens=100)
    await runtime.start(serving=False)
    await without_tools(runtime)
    events: list[Event] = []
    runtime.bus.subscribe(events.append)

    def failing_summaries(request: SimRequest) -> Turn:
        if is_summary_request(request):
            return Turn(status=400, error="summaries are not allowed here")
        return Turn(text="ok")

    sim.responder = failing_summaries
    user = await runtime.users.get_user_by_name("admin")
    assert user is not None
    actor = actor_for(user)
    conversation = None
    for i in range(10):
        outcome = await send(runtime, actor, f"message {i} " + "words " * 40, conversation=conversation)
        conversation = outcome.conversation
        assert outcome.final.error is None and outcome.text == "ok"
    assert any(e.name == "memory.summary_failed" for e in events)
    chats = [r for r in sim.requests if not is_summary_request(r)]
    assert max(prompt_tokens(r) for r in chats) <= 500
    stored = await runtime.conversations.get_conversation(conversation)
    assert stored is not None and stored.summary is None


async def test_a_message_larger_than_the_context_is_refused_clearly(runtime_factory, sim: ModelSimulator) -> None:  # type: ignore[no-untyped-def]
    build = runtime_factory
    runtime: Runtime = await build(ai_model_context_tokens=600, ai_model_reply_tokens=100)
    await runtime.start(serving=False)
    user = await runtime.users.get_user_by_name("admin")
    assert user is not None
    outcome = await send(runtime, actor_for(user), "word " * 2000)
    assert outcome.final.error is not None
    assert outcome.final.error.code == "context_too_long"
    assert "too long" in outcome.final.error.message
    assert sim.requests == []


async def test_two_processes_on_one_database_see_each_others_turns(runtime_factory, sim: ModelSimulator) -> None:  # type: ignore[no-untyped-def]
    first, second = await runtime_factory(), await runtime_factory()
    await first.start(serving=False)
    user = await first.users.get_user_by_name("admin")
    assert user is not None
    actor = actor_for(user)
    conversation = (await send(first, actor, "one")).conversation
    await send(second, actor, "two", conversation=conversation)
    await send(first, actor, "three", conversation=conversation)  # first's cache knows only "one"
    assert [m["content"] for m in sim.requests[-1].body["messages"][1:]] == [
        "one", "You said: one", "two", "You said: two", "three"]
    await send(second, actor, "four", conversation=conversation)
    assert [m["content"] for m in sim.requests[-1].body["messages"] if m["role"] == "user"] == [
        "one", "two", "three", "four"]


async def test_a_conversation_kept_by_one_process_is_never_read_back(runtime: Runtime, sim: ModelSimulator,
                                                     monkeypatch) -> None:  # type: ignore[no-untyped-def]
    reads = []
    original = runtime.conversations.history

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(args)
        return await original(*args, **kwargs)

    monkeypatch.setattr(runtime.conversations, "history", counting)
    user = await runtime.users.get_user_by_name("admin")
    assert user is not None
    conversation = None
    for i in range(5):
        conversation = (await send(runtime, actor_for(user), f"message {i}", conversation=conversation)).conversation
    assert reads == []  # new conversation: nothing to read; afterwards the cache is current
    assert [m["content"] for m in sim.requests[-1].body["messages"] if m["role"] == "user"] == [
        f"message {i}" for i in range(5)]
