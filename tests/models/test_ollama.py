"""OllamaProvider: the exact ``/api/chat`` body it sends, and tool calls as Ollama sends them (whole)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from hearth.models import OllamaProvider
from hearth.settings import EndpointSettings
from hearth.testing.modelsim import ModelSimulator, Turn
from hearth.types import (
    AssistantContent,
    ChatRequest,
    SystemContent,
    ToolCall,
    ToolResultContent,
    ToolSpec,
    UserContent,
)

from .streams import collect

WEATHER = ToolSpec("get_weather", "Current weather for a city.",
                   {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})

CONVERSATION = ChatRequest(
    messages=(
        SystemContent("You are hearth."),
        UserContent("Weather in Paris?"),
        AssistantContent("Let me check.", tool_calls=(ToolCall("call_1", "get_weather", {"city": "Paris"}),)),
        ToolResultContent("call_1", "get_weather", "18°C, cloudy"),
    ),
    tools=(WEATHER,),
    max_tokens=256,
    temperature=0.2,
)


@pytest.fixture
async def ollama(sim: ModelSimulator) -> AsyncIterator[OllamaProvider]:
    provider = OllamaProvider(EndpointSettings(sim.url, "ollama", "llama3.2"), context_tokens=4096)
    yield provider
    await provider.aclose()


async def test_sends_the_native_chat_body(sim: ModelSimulator, ollama: OllamaProvider) -> None:
    await collect(ollama, CONVERSATION)
    received = sim.requests[0]
    assert (received.protocol, received.path) == ("ollama", "/api/chat")
    assert received.body == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "You are hearth."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Let me check.",
             "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "content": "18°C, cloudy", "tool_name": "get_weather"},
        ],
        "stream": True,
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "options": {"num_predict": 256, "temperature": 0.2, "num_ctx": 4096},
    }
    assert received.headers["content-type"] == "application/json"


async def test_minimal_body_has_no_tools_or_options(sim: ModelSimulator) -> None:
    provider = OllamaProvider(EndpointSettings(sim.url, "ollama", "llama3.2"))
    await collect(provider, ChatRequest(messages=(UserContent("hi"),), model="llama3.2:latest"))
    await provider.aclose()
    assert sim.requests[0].body == {"model": "llama3.2:latest", "messages": [{"role": "user", "content": "hi"}],
                                    "stream": True}


async def test_tool_calls_arrive_whole_with_made_up_ids(sim: ModelSimulator, ollama: OllamaProvider) -> None:
    sim.script(Turn(text="Checking.", tool_calls=[("get_weather", {"city": "Paris"}),
                                                   ("get_weather", {"city": "Rome", "units": "metric"})]))
    chunks = await collect(ollama, CONVERSATION)
    calls = [call for chunk in chunks for call in chunk.tool_calls]
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome", "units": "metric"})]
    assert all(re.fullmatch(r"call_[0-9a-f]{12}", c.id) for c in calls)
    assert calls[0].id != calls[1].id
    assert "".join(c.text for c in chunks) == "Checking."
    assert chunks[-1].done
    assert chunks[-1].finish_reason == "tool_calls"


async def test_keeps_server_ids_and_wraps_unparsable_arguments(raw_server) -> None:  # type: ignore[no-untyped-def]
    calls = (b'{"message":{"role":"assistant","content":"","tool_calls":['
             b'{"id":"call_srv","function":{"name":"a","arguments":{"x":1}}},'
             b'{"function":{"name":"b","arguments":"{\\"y\\": 2}"}},'
             b'{"function":{"name":"c","arguments":"not json"}}]},"done":false}\n'
             b'{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":5}')
    url = await raw_server("/api/chat", calls, "application/x-ndjson")
    provider = OllamaProvider(EndpointSettings(url, "ollama", "m"))
    chunks = await collect(provider)
    await provider.aclose()
    got = chunks[0].tool_calls
    assert got[0] == ToolCall("call_srv", "a", {"x": 1})
    assert got[1].arguments == {"y": 2}
    assert got[2].arguments == {"_unparsed": "not json"}
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
