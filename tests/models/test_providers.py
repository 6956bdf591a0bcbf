"""What both providers promise the router, checked over real sockets against the simulator."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp import web

from hearth.errors import ConfigError, ContextTooLong, ModelError, ModelUnavailable, RateLimited
from hearth.models import OllamaProvider, OpenAIProvider, make_provider
from hearth.models.base import ChatProvider
from hearth.settings import EndpointSettings
from hearth.testing.modelsim import ModelSimulator, Turn
from hearth.types import Usage

from .streams import SECRET, ask, collect, drain


async def test_streams_text_in_order_then_done(sim: ModelSimulator, provider: ChatProvider) -> None:
    sim.script(Turn(tokens=["Hel", "lo", "", " world"], usage=(11, 3)))
    chunks = await collect(provider)
    assert [c.text for c in chunks[:-1]] == ["Hel", "lo", " world"]  # the empty delta is skipped
    final = chunks[-1]
    assert final.done
    assert final.finish_reason == "stop"
    assert final.usage == Usage(11, 3)
    assert {c.endpoint for c in chunks} == {provider.endpoint.name}
    assert not any(c.done for c in chunks[:-1])


async def test_default_echo_and_length_finish(sim: ModelSimulator, provider: ChatProvider) -> None:
    chunks = await collect(provider, ask("ping pong"))
    assert "".join(c.text for c in chunks) == "You said: ping pong"
    sim.script(Turn(text="cut short", finish_reason="length"))
    assert (await collect(provider))[-1].finish_reason == "length"


async def test_nothing_is_yielded_before_the_first_byte(sim: ModelSimulator, provider: ChatProvider) -> None:
    sim.script(Turn(text="late", ttft=0.3))
    started = time.monotonic()
    stream = aiter(provider.stream(ask()))
    first = await anext(stream)
    assert time.monotonic() - started >= 0.3
    assert first.text == "late"
    await stream.aclose()  # type: ignore[attr-defined]


async def test_abandoning_a_stream_releases_it(sim: ModelSimulator, provider: ChatProvider) -> None:
    sim.script(Turn(text="one two three four five", gap=0.05))
    stream = provider.stream(ask())
    assert (await anext(aiter(stream))).text == "one"
    await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(50):
        if sim.active == 0:
            break
        await asyncio.sleep(0.02)
    assert sim.active == 0
    assert (await collect(provider))[-1].done  # the provider still works afterwards


async def test_api_key_is_sent_as_bearer(sim: ModelSimulator, provider: ChatProvider, protocol: str) -> None:
    await collect(provider)
    assert sim.requests[-1].headers["authorization"] == f"Bearer {SECRET}"
    keyless = make_provider(EndpointSettings(sim.url, protocol, "llama3.2"))  # type: ignore[arg-type]
    try:
        await collect(keyless)
    finally:
        await keyless.aclose()
    assert "Authorization" not in sim.requests[-1].headers


HTTP_DATE = "HTTP-date"


@pytest.mark.parametrize(("turn", "expected", "words"), [
    (Turn(status=500, error="CUDA out of memory"), ModelUnavailable, "CUDA out of memory"),
    (Turn(status=503, error="server is loading the model"), ModelUnavailable, "HTTP 503"),
    (Turn(status=408), ModelUnavailable, "HTTP 408"),
    (Turn(status=429, error="slow down", retry_after=7), RateLimited, "slow down"),
    (Turn(status=429, retry_after=HTTP_DATE), RateLimited, "HTTP 429"),
    (Turn(status=429), RateLimited, "HTTP 429"),
    (Turn(status=400, error="This model's maximum context length is 8192 tokens"), ContextTooLong, "context"),
    (Turn(status=400, error="prompt exceeds the context window"), ContextTooLong, "HTTP 400"),
    (Turn(status=400, error="temperature must be at most 2"), ModelError, "temperature must be"),
    (Turn(status=401, error="invalid api key"), ModelError, "refused the API key (HTTP 401)"),
    (Turn(status=403), ModelError, "refused the API key (HTTP 403)"),
    (Turn(status=422, error="unprocessable"), ModelError, "HTTP 422"),
    (Turn(text="a b c d", drop_after=2), ModelUnavailable, "stream ended early"),
    (Turn(text="a b c d", stream_error_after=2, error="runner crashed"), ModelUnavailable, "runner crashed"),
], ids=lambda v: "" if not isinstance(v, Turn) else f"{v.status}-{v.drop_after}-{v.stream_error_after}")
async def test_error_mapping(
    sim: ModelSimulator, provider: ChatProvider, turn: Turn, expected: type[ModelError], words: str,
) -> None:
    if turn.retry_after == HTTP_DATE:
        when = datetime.now(UTC) + timedelta(seconds=30)
        turn = Turn(status=429, retry_after=format_datetime(when, usegmt=True))
    sim.script(turn)
    texts: list[str] = []
    with pytest.raises(ModelError) as caught:
        await drain(provider, texts)
    error = caught.value
    assert type(error) is expected
    assert words in str(error)
    assert provider.endpoint.name in str(error)
    assert SECRET not in str(error)
    assert SECRET not in repr(error.__cause__)
    if turn.drop_after is not None or turn.stream_error_after is not None:
        assert texts == ["a", " b"]  # what arrived before the failure was delivered
    if isinstance(error, RateLimited):
        if turn.retry_after == 7:
            assert error.retry_after == 7.0
        elif turn.retry_after is not None:
            assert error.retry_after is not None
            assert 25 <= error.retry_after <= 31
        else:
            assert error.retry_after is None


async def test_unknown_model_names_the_model(sim: ModelSimulator, provider: ChatProvider) -> None:
    with pytest.raises(ModelError) as caught:
        await collect(provider, ask(model="mistral-nemo"))
    assert type(caught.value) is ModelError
    assert "'mistral-nemo'" in str(caught.value)
    assert "HTTP 404" in str(caught.value)
    if isinstance(provider, OllamaProvider):
        assert "ollama pull mistral-nemo" in str(caught.value)


async def test_refused_connection_is_unavailable(dead_url: str, protocol: str) -> None:
    chat = make_provider(EndpointSettings(dead_url, protocol, "llama3.2", api_key=SECRET))  # type: ignore[arg-type]
    with pytest.raises(ModelUnavailable) as caught:
        await collect(chat)
    await chat.aclose()
    assert "connection refused" in str(caught.value)
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(("protocol", "body", "expected", "words"), [
    ("ollama", b'{"message":{"role":"assistant","content":"hi"},"done":false}\nnot json\n', ModelError,
     "undecodable"),
    ("ollama", b'{"message":{"role":"assistant","content":"hi"},"done":false}\n', ModelUnavailable,
     "stream ended early"),
    ("openai", b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\ndata: {oops\n\n', ModelError,
     "undecodable"),
    ("ollama", b'{"message":{"role":"assistant","content":"hi"},"done":false}\n{"message":"oops"}\n', ModelError,
     "unexpected line"),
    ("openai", b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\ndata: {"choices":[5]}\n\n', ModelError,
     "unexpected event"),
    ("openai", b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n',
     ModelUnavailable, "stream ended early"),
])
async def test_malformed_or_unfinished_streams(raw_server, protocol: str, body: bytes,  # type: ignore[no-untyped-def]
                                               expected: type[ModelError], words: str) -> None:
    path = "/api/chat" if protocol == "ollama" else "/v1/chat/completions"
    url = await raw_server(path, body, "application/x-ndjson" if protocol == "ollama" else "text/event-stream")
    chat = make_provider(EndpointSettings(url, protocol, "m"))  # type: ignore[arg-type]
    texts: list[str] = []
    with pytest.raises(ModelError) as caught:
        await drain(chat, texts)
    await chat.aclose()
    assert type(caught.value) is expected
    assert words in str(caught.value)
    assert texts == ["hi"]


FINISHED = {
    "ollama": ("/api/chat", b'{"message":{"role":"assistant","content":"hi"},"done":false}\n'
                            b'{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}\n'),
    "openai": ("/v1/chat/completions",
               b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
               b"data: [DONE]\n\n"),
}


async def test_connection_is_reused_when_the_body_ends_late(protocol: str) -> None:
    """Real servers send the end of the chunked body after the last line: the connection must survive."""
    path, body = FINISHED[protocol]
    peers: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        peers.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        response = web.StreamResponse()
        response.content_type = "application/x-ndjson" if protocol == "ollama" else "text/event-stream"
        await response.prepare(request)
        await response.write(body)
        await asyncio.sleep(0.03)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    chat = make_provider(EndpointSettings(f"http://127.0.0.1:{site.port}", protocol, "m"))  # type: ignore[arg-type]
    try:
        for _ in range(3):
            assert "".join(c.text for c in await collect(chat)) == "hi"
    finally:
        await chat.aclose()
        await runner.cleanup()
    assert len(set(peers)) == 1


async def test_probe_finds_the_model(sim: ModelSimulator, provider: ChatProvider) -> None:
    result = await provider.probe()
    assert result.ok, result.detail
    assert "llama3.2" in result.detail
    assert result.latency_ms > 0
    assert any(m.startswith("llama3.2") for m in result.models)


async def test_probe_reports_a_missing_model(sim: ModelSimulator, protocol: str) -> None:
    chat = make_provider(EndpointSettings(sim.url, protocol, "qwen2.5:7b"))  # type: ignore[arg-type]
    result = await chat.probe()
    await chat.aclose()
    assert not result.ok
    assert "reachable" in result.detail
    assert "'qwen2.5:7b'" in result.detail
    if protocol == "ollama":
        assert "run `ollama pull qwen2.5:7b`" in result.detail


async def test_probe_of_a_dead_port_does_not_raise(dead_url: str, protocol: str) -> None:
    chat = make_provider(EndpointSettings(dead_url, protocol, "llama3.2"))  # type: ignore[arg-type]
    result = await chat.probe()
    await chat.aclose()
    assert not result.ok
    assert result.detail == "connection refused"


@pytest.mark.parametrize(("status", "body", "words"), [
    (401, b'{"error":"bad key"}', "refused the API key (HTTP 401)"),
    (502, b'{"error":"upstream down"}', "answered HTTP 502: upstream down"),
    (200, b"<html>welcome</html>", "did not answer a model list"),
])
async def test_probe_explains_other_answers(raw_server, protocol: str, status: int,  # type: ignore[no-untyped-def]
                                            body: bytes, words: str) -> None:
    url = await raw_server("/api/tags" if protocol == "ollama" else "/v1/models", body, "application/json", status)
    chat = make_provider(EndpointSettings(url, protocol, "llama3.2"))  # type: ignore[arg-type]
    result = await chat.probe()
    await chat.aclose()
    assert not result.ok
    assert words in result.detail


def test_make_provider_picks_the_wire_protocol() -> None:
    ollama = make_provider(EndpointSettings("http://h:11434", "ollama", "m"), connect_timeout=1, context_tokens=4096)
    openai = make_provider(EndpointSettings("http://h:8000", "openai", "m"), connect_timeout=1, context_tokens=4096)
    assert isinstance(ollama, OllamaProvider)
    assert ollama.context_tokens == 4096
    assert isinstance(openai, OpenAIProvider)
    with pytest.raises(ConfigError):
        make_provider(EndpointSettings("http://h", "bard", "m"))  # type: ignore[arg-type]
