"""OpenAIProvider: the exact ``/chat/completions`` body, fragmented tool calls, and the base URL rule."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hearth.errors import ContextTooLong
from hearth.models import OpenAIProvider
from hearth.models.openai import api_base
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

from .streams import ask, collect

WEATHER = ToolSpec("get_weather", "Current weather for a city.",
                   {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})

CONVERSATION = ChatRequest(
    messages=(
        SystemContent("You are hearth."),
        UserContent("Weather in Paris and Rome?"),
        AssistantContent("", tool_calls=(ToolCall("call_1", "get_weather", {"city": "Paris"}),
                                         ToolCall("call_2", "get_weather", {"city": "Rome"}))),
        ToolResultContent("call_1", "get_weather", "18°C"),
        ToolResultContent("call_2", "get_weather", "24°C", is_error=False),
    ),
    tools=(WEATHER,),
    max_tokens=128,
    temperature=0.0,
)


@pytest.fixture
async def openai(sim: ModelSimulator) -> AsyncIterator[OpenAIProvider]:
    provider = OpenAIProvider(EndpointSettings(sim.url, "openai", "llama3.2"))
    yield provider
    await provider.aclose()


async def test_sends_the_chat_completions_body(sim: ModelSimulator, openai: OpenAIProvider) -> None:
    await collect(openai, CONVERSATION)
    received = sim.requests[0]
    assert (received.protocol, received.path) == ("openai", "/v1/chat/completions")
    assert received.body == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "You are hearth."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "24°C"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "max_tokens": 128,
        "temperature": 0.0,
    }


async def test_minimal_body(sim: ModelSimulator, openai: OpenAIProvider) -> None:
    await collect(openai, ChatRequest(messages=(UserContent("hi"), AssistantContent("hello"), UserContent("ok"))))
    assert sim.requests[0].body == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                     {"role": "user", "content": "ok"}],
        "stream": True, "stream_options": {"include_usage": True}}


async def test_assembles_two_parallel_fragmented_calls(sim: ModelSimulator, openai: OpenAIProvider) -> None:
    sim.script(Turn(text="On it.", usage=(40, 12), tool_calls=[
        ("get_weather", {"city": "Paris", "units": "metric"}), ("get_time", {"tz": "Europe/Rome"})]))
    chunks = await collect(openai, CONVERSATION)
    with_calls = [c for c in chunks if c.tool_calls]
    assert len(with_calls) == 1  # emitted once, complete, when finish_reason arrived
    calls = with_calls[0].tool_calls
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Paris", "units": "metric"}), ("get_time", {"tz": "Europe/Rome"})]
    assert all(c.id.startswith("call_") for c in calls)
    assert calls[0].id != calls[1].id
    final = chunks[-1]
    assert final.done
    assert final.finish_reason == "tool_calls"
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (40, 12)
    assert "".join(c.text for c in chunks) == "On it."


async def test_fragments_from_less_tidy_servers(raw_server) -> None:  # type: ignore[no-untyped-def]
    def event(delta: str, finish: str = "null") -> bytes:
        return b'data: {"choices":[{"index":0,"delta":%s,"finish_reason":%s}]}\n\n' % (delta.encode(), finish.encode())

    body = b"".join([
        b": keep-alive comment\n\n",
        event('{"tool_calls":[{"id":"srv_1","function":{"name":"a","arguments":"{\\"x\\""}}]}'),
        event('{"tool_calls":[{"function":{"arguments":": 1}"}}]}'),           # no index: same call
        event('{"tool_calls":[{"id":"srv_2","function":{"name":"b","arguments":""}}]}'),  # new id: next call
        event('{"tool_calls":[{"index":5,"id":"srv_3","function":{"name":"c","arguments":"[1,2]"}}]}'),
        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}\r\n\r\n',
        b"data: [DONE]\r\n\r\n",
    ])
    url = await raw_server("/v1/chat/completions", body, "text/event-stream")
    provider = OpenAIProvider(EndpointSettings(url + "/v1/", "openai", "m"))
    chunks = await collect(provider)
    await provider.aclose()
    calls = chunks[0].tool_calls  # the stream ended without finish_reason: emitted at [DONE]
    assert calls == (ToolCall("srv_1", "a", {"x": 1}), ToolCall("srv_2", "b", {}),
                     ToolCall("srv_3", "c", {"_unparsed": "[1,2]"}))
    assert chunks[-1].done
    assert chunks[-1].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
async def test_base_url_with_or_without_v1(sim: ModelSimulator, suffix: str) -> None:
    provider = OpenAIProvider(EndpointSettings(sim.url + suffix, "openai", "llama3.2"))
    chunks = await collect(provider)
    probe = await provider.probe()
    await provider.aclose()
    assert chunks[-1].done
    assert probe.ok
    assert sim.requests[0].path == "/v1/chat/completions"


def test_api_base() -> None:
    assert api_base("http://h:8000") == "http://h:8000/v1"
    assert api_base("http://h:8000/v1/") == "http://h:8000/v1"
    assert api_base("https://proxy/openai/v1") == "https://proxy/openai/v1"
    assert api_base("https://proxy/openai") == "https://proxy/openai/v1"


async def test_a_prompt_beyond_the_context_is_context_too_long() -> None:
    async with ModelSimulator(context_length=16) as small:
        provider = OpenAIProvider(EndpointSettings(small.url, "openai", "llama3.2"))
        with pytest.raises(ContextTooLong, match="maximum context length is 16"):
            await collect(provider, ask("word " * 20))
        await provider.aclose()
