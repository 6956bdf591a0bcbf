"""The agent's tool loop: tools offered, called, their results (errors too) fed back, rounds bounded."""

from __future__ import annotations

import asyncio

import pytest

from hearth.core import agent as agent_module
from hearth.core.identity import actor_for
from hearth.runtime import Runtime
from hearth.testing.modelsim import ModelSimulator, SimRequest, Turn
from hearth.types import Actor
from tests.support.runtime import ScriptedTools, send


async def test_a_tool_call_round_trip(runtime: Runtime, admin: Actor, sim: ModelSimulator,
                                      tools: ScriptedTools) -> None:
    async def weather(city: str) -> str:
        return f"sunny, 21 C in {city}"

    tools.add("get_weather", weather, city={"type": "string"})
    sim.script(Turn(tool_calls=[("get_weather", {"city": "Oslo"})]), Turn(text="It is sunny in Oslo."))
    outcome = await send(runtime, admin, "What's the weather in Oslo?")
    assert outcome.text == "It is sunny in Oslo."
    assert [(c.name, dict(c.arguments), c.actor.name) for c in tools.calls] == [
        ("get_weather", {"city": "Oslo"}, "admin")]

    first, second = sim.requests
    offered = {t["function"]["name"] for t in first.body["tools"]}
    assert "get_weather" in offered and "time__now" in offered  # skills' intents are offered too
    assistant, result = second.body["messages"][-2:]
    assert assistant["role"] == "assistant" and assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    assert result == {"role": "tool", "content": "sunny, 21 C in Oslo", "tool_name": "get_weather"}

    stored = await runtime.conversations.history(outcome.conversation)
    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert outcome.final.message_id == stored[-1].id

    # the next turn remembers the tool exchange
    await send(runtime, admin, "and tomorrow?", conversation=outcome.conversation)
    roles = [m["role"] for m in sim.requests[-1].body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]


async def test_tool_failures_are_results_the_model_sees(runtime: Runtime, admin: Actor, sim: ModelSimulator,
                                                         tools: ScriptedTools) -> None:
    async def broken(x: str) -> str:
        raise ValueError("disk on fire")

    tools.add("broken", broken, x={"type": "string"})
    sim.script(Turn(tool_calls=[("broken", {"x": "1"}), ("missing_tool", {})]), Turn(text="Sorry, that failed."))
    outcome = await send(runtime, admin, "try it")
    assert outcome.text == "Sorry, that failed."
    results = [m for m in sim.requests[1].body["messages"] if m["role"] == "tool"]
    assert "failed" in results[0]["content"] and "ValueError" in results[0]["content"]
    assert "There is no tool named 'missing_tool'" in results[1]["content"]
    stored = await runtime.conversations.history(outcome.conversation)
    assert [m.meta.get("is_error") for m in stored if m.role == "tool"] == [True, True]


async def test_slow_tools_time_out(runtime: Runtime, admin: Actor, sim: ModelSimulator, tools: ScriptedTools,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "TOOL_TIMEOUT", 0.2)

    async def slow(x: str) -> str:
        await asyncio.sleep(5)
        return "late"

    tools.add("slow", slow, x={"type": "string"})
    sim.script(Turn(tool_calls=[("slow", {"x": "1"})]), Turn(text="It timed out."))
    outcome = await send(runtime, admin, "go")
    assert outcome.text == "It timed out."
    assert "did not finish in time" in sim.requests[1].body["messages"][-1]["content"]


async def test_tool_rounds_are_bounded(runtime_factory, tools: ScriptedTools, sim: ModelSimulator) -> None:  # type: ignore[no-untyped-def]
    build = runtime_factory
    runtime = await build(hearth_max_tool_rounds=2)
    await runtime.start(serving=False)

    async def ping(n: str) -> str:
        return "pong"

    tools.add("ping", ping, n={"type": "string"})

    def always_a_tool(request: SimRequest) -> Turn:
        if request.body.get("tools"):
            return Turn(tool_calls=[("ping", {"n": "again"})])
        return Turn(text="I'll stop calling tools now.")

    sim.responder = always_a_tool
    user = await runtime.users.get_user_by_name("admin")
    assert user is not None
    outcome = await send(runtime, actor_for(user), "loop forever")
    assert outcome.text == "I'll stop calling tools now."
    assert len(sim.requests) == 3 and "tools" not in sim.requests[2].body
    assert len(tools.calls) == 2


async def test_guests_are_not_offered_tools(runtime: Runtime, sim: ModelSimulator, tools: ScriptedTools) -> None:
    async def secret(x: str) -> str:
        return "classified"

    tools.add("secret", secret, x={"type": "string"})
    created = await runtime.auth.create_user("visitor", "guest")
    outcome = await send(runtime, actor_for(created.user), "hello")
    assert outcome.final.error is None
    assert "tools" not in sim.requests[0].body


async def test_unparsable_arguments_become_an_error_result(runtime: Runtime, admin: Actor, sim: ModelSimulator,
                                                           tools: ScriptedTools) -> None:
    async def echo(x: str) -> str:
        return x

    tools.add("echo", echo, x={"type": "string"})
    sim.script(Turn(tool_calls=[("echo", {"_unparsed": "{x: oops"})]), Turn(text="Let me fix that."))
    await send(runtime, admin, "go")
    assert tools.calls == []
    assert "not a valid JSON object" in sim.requests[1].body["messages"][-1]["content"]
