"""The simulator speaks the real protocols: the official ``ollama`` and ``openai`` SDKs parse its answers."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import ollama
import openai
import pytest

from hearth.models import OllamaProvider
from hearth.settings import EndpointSettings
from hearth.testing.modelsim import ModelSimulator, SimRequest, Turn

from .streams import ask, collect

TOOL: dict[str, Any] = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALLS = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome, Italy", "days": [1, 2]})]
MESSAGES: list[Any] = [{"role": "user", "content": "Weather in Paris and Rome?"}]


@pytest.fixture
async def client(sim: ModelSimulator) -> AsyncIterator[ollama.AsyncClient]:
    sdk = ollama.AsyncClient(host=sim.url)
    yield sdk
    await sdk.close()


async def test_ollama_sdk_parses_a_stream_with_tool_calls(sim: ModelSimulator, client: ollama.AsyncClient) -> None:
    sim.script(Turn(text="Checking both.", tool_calls=CALLS, usage=(21, 9)))
    parts = [part async for part in await client.chat("llama3.2", MESSAGES, tools=[TOOL], stream=True)]
    assert "".join(p.message.content or "" for p in parts) == "Checking both."
    calls = [c for p in parts for c in p.message.tool_calls or ()]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == CALLS
    assert parts[-1].done
    assert parts[-1].done_reason == "stop"
    assert (parts[-1].prompt_eval_count, parts[-1].eval_count) == (21, 9)
    assert sim.requests[0].body["tools"] == [TOOL]
    assert sim.requests[0].body["stream"] is True


async def test_ollama_sdk_parses_a_whole_answer_and_the_listings(
    sim: ModelSimulator, client: ollama.AsyncClient,
) -> None:
    sim.script(Turn(text="All at once.", tool_calls=CALLS[:1]))
    reply = await client.chat("llama3.2", MESSAGES, tools=[TOOL], stream=False)
    assert reply.message.content == "All at once."
    assert reply.done
    assert reply.message.tool_calls is not None
    assert reply.message.tool_calls[0].function.arguments == {"city": "Paris"}
    assert sim.requests[0].body["stream"] is False
    listing = await client.list()
    assert [m.model for m in listing.models] == ["llama3.2:latest"]
    shown = await client.show("llama3.2")
    assert shown.modelinfo is not None
    assert shown.modelinfo["llama.context_length"] == 8192
    with pytest.raises(ollama.ResponseError) as missing:
        await client.show("nope")
    assert missing.value.status_code == 404
    async with aiohttp.ClientSession() as session, session.get(f"{sim.url}/api/version") as resp:
        assert "version" in await resp.json()


async def test_ollama_sdk_reads_error_bodies(sim: ModelSimulator, client: ollama.AsyncClient) -> None:
    sim.script(Turn(status=500, error="out of memory"))
    with pytest.raises(ollama.ResponseError) as failed:
        await client.chat("llama3.2", MESSAGES)
    assert (failed.value.error, failed.value.status_code) == ("out of memory", 500)
    sim.script(Turn(text="a b c", stream_error_after=1, error="runner died"))
    with pytest.raises(ollama.ResponseError, match="runner died"):
        async for _ in await client.chat("llama3.2", MESSAGES, stream=True):
            pass
    with pytest.raises(ollama.ResponseError, match='model "llama9" not found'):
        await client.chat("llama9", MESSAGES)


async def test_openai_sdk_parses_a_stream_with_parallel_tool_calls(sim: ModelSimulator) -> None:
    sim.script(Turn(text="Checking both.", tool_calls=CALLS, usage=(21, 9)))
    client = openai.AsyncOpenAI(base_url=sim.openai_url, api_key="x", max_retries=0)
    stream = await client.chat.completions.create(
        model="llama3.2", messages=MESSAGES, tools=[TOOL],  # type: ignore[list-item]
        stream=True, stream_options={"include_usage": True})
    text, arguments, names, finish, usage = "", {}, {}, None, None
    fragments = 0
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or ():
                fragments += 1
                if call.function and call.function.name:
                    names[call.index] = call.function.name
                arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
            finish = choice.finish_reason or finish
    await client.close()
    assert text == "Checking both."
    assert finish == "tool_calls"
    assert names == {0: "get_weather", 1: "get_weather"}
    assert [json.loads(arguments[i]) for i in (0, 1)] == [args for _, args in CALLS]
    assert fragments >= 6  # each call: a naming fragment and at least two argument pieces
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (21, 9, 30)
    assert sim.requests[0].headers["authorization"] == "Bearer x"


async def test_openai_sdk_parses_a_whole_answer_models_and_errors(sim: ModelSimulator) -> None:
    client = openai.AsyncOpenAI(base_url=sim.openai_url, api_key="x", max_retries=0)
    sim.script(Turn(text="All at once.", tool_calls=CALLS[:1]))
    reply = await client.chat.completions.create(
        model="llama3.2", messages=MESSAGES, tools=[TOOL])  # type: ignore[list-item]
    message = reply.choices[0].message
    assert message.content == "All at once."
    assert reply.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    assert message.tool_calls[0].function.name == "get_weather"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 4
    assert [m.id async for m in client.models.list()] == ["llama3.2"]
    sim.script(Turn(status=429, error="slow down", retry_after=2))
    with pytest.raises(openai.RateLimitError, match="slow down"):
        await client.chat.completions.create(model="llama3.2", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        await client.chat.completions.create(model="llama9", messages=MESSAGES)
    sim.script(Turn(text="a b c", stream_error_after=1, error="runner died"))
    with pytest.raises(openai.APIError, match="runner died"):
        async for _ in await client.chat.completions.create(model="llama3.2", messages=MESSAGES, stream=True):
            pass
    await client.close()




async def test_a_hanging_turn_ends_when_the_client_gives_up(sim: ModelSimulator) -> None:
    sim.script(Turn(hang=True))
    provider = OllamaProvider(EndpointSettings(sim.url, "ollama", "llama3.2"))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await collect(provider)
    await provider.aclose()
    for _ in range(50):
        if sim.active == 0:
            break
        await asyncio.sleep(0.02)
    assert sim.active == 0


async def test_leaving_the_context_ends_hanging_requests_quickly() -> None:
    async with ModelSimulator() as sim:
        sim.script(Turn(hang=True), Turn(hang=True))
        provider = OllamaProvider(EndpointSettings(sim.url, "ollama", "llama3.2"))
        waiting = [asyncio.create_task(collect(provider)) for _ in range(2)]
        while sim.active < 2:
            await asyncio.sleep(0.01)
        started = time.monotonic()
    assert time.monotonic() - started < 1.0
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)
    await provider.aclose()


async def test_script_order_responder_concurrency_and_reset(sim: ModelSimulator) -> None:
    provider = OllamaProvider(EndpointSettings(sim.url, "ollama", "llama3.2"))
    sim.script(Turn(text="first", ttft=0.15), Turn(text="second", ttft=0.15), Turn(text="third", ttft=0.15))
    answers = await asyncio.gather(*(collect(provider) for _ in range(3)))
    assert sorted("".join(c.text for c in a) for a in answers) == ["first", "second", "third"]
    assert sim.max_active == 3
    assert sim.active == 0
    seen: list[SimRequest] = []

    def responder(request: SimRequest) -> Turn:
        seen.append(request)
        return Turn(tokens=[request.last_user_text.upper()])

    sim.responder = responder
    assert "".join(c.text for c in await collect(provider, ask("shout"))) == "SHOUT"
    assert seen[0].protocol == "ollama"
    assert len(sim.requests) == 4
    sim.script(Turn(text="queued"))
    sim.reset()
    assert sim.requests == []
    assert sim.max_active == 0
    assert "".join(c.text for c in await collect(provider, ask("again"))) == "AGAIN"  # the queue was cleared
    await provider.aclose()


async def test_command_line_server() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hearth.testing.modelsim", "--port", "0", "--ttft", "0", "--gap", "0",
        "--tokens", "7", stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        assert line.startswith("modelsim listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        assert not url.endswith(":0")
        for text in ("hi", "a much longer sentence than seven tokens can hold"):
            provider = OllamaProvider(EndpointSettings(url, "ollama", "llama3.2"))
            chunks = await collect(provider, ask(text))
            await provider.aclose()
            assert len([c for c in chunks if c.text]) == 7
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 5) == 0


async def test_stream_defaults_follow_each_protocol(sim: ModelSimulator) -> None:
    """Ollama streams unless told not to; OpenAI streams only when asked, with usage only on request."""
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sim.url}/api/chat", json=body) as resp:
            assert resp.content_type == "application/x-ndjson"
            lines = [json.loads(line) for line in (await resp.read()).splitlines()]
        assert [line["done"] for line in lines] == [False, False, False, True]
        async with session.post(f"{sim.openai_url}/chat/completions", json=body) as resp:
            assert (await resp.json())["object"] == "chat.completion"
        async with session.post(f"{sim.openai_url}/chat/completions", json={**body, "stream": True}) as resp:
            assert resp.content_type == "text/event-stream"
            events = [line for line in (await resp.read()).decode().split("\n\n") if line]
        assert events[-1] == "data: [DONE]"
        chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
        assert all(c["object"] == "chat.completion.chunk" and c["choices"] and "usage" not in c for c in chunks)
