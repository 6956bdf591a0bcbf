"""The model router against real providers and scripted model servers on real sockets."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import replace

import pytest

from hearth.core.bus import EventBus
from hearth.core.router import CircuitBreaker, ModelRouter
from hearth.errors import ContextTooLong, ModelBusy, ModelTimeout, ModelUnavailable
from hearth.models import make_provider
from hearth.settings import EndpointSettings, RouterSettings
from hearth.testing.modelsim import ModelSimulator, Turn
from hearth.types import ChatRequest, Event, RetryPolicy, UserContent

REQUEST = ChatRequest(messages=(UserContent("hello"),))


@pytest.fixture
async def backup() -> AsyncIterator[ModelSimulator]:
    async with ModelSimulator() as simulator:
        yield simulator


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings(*urls: str, protocol: str = "ollama", **kw: object) -> RouterSettings:
    base = RouterSettings(
        endpoints=tuple(EndpointSettings(u, protocol, "llama3.2") for u in urls),  # type: ignore[arg-type]
        max_concurrency=4, queue_size=4, queue_timeout=5.0, connect_timeout=1.0, first_token_timeout=3.0,
        total_timeout=10.0, retry=RetryPolicy(attempts=3, base=0.01, cap=1.0), breaker_threshold=5,
        breaker_cooldown=30.0)
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def make_router() -> AsyncIterator[object]:
    routers: list[ModelRouter] = []

    def build(config: RouterSettings, events: list[Event] | None = None, clock: Clock | None = None) -> ModelRouter:
        bus = EventBus()
        if events is not None:
            bus.subscribe(events.append)
        providers = [make_provider(e, connect_timeout=config.connect_timeout) for e in config.endpoints]
        router = ModelRouter(providers, config, bus, clock=clock or time.monotonic)
        routers.append(router)
        return router

    yield build
    for router in routers:
        await router.aclose()


async def answer(router: ModelRouter, request: ChatRequest = REQUEST) -> tuple[str, str]:
    parts, endpoint = [], ""
    async with aclosing(router.stream(request)) as chunks:
        async for chunk in chunks:
            parts.append(chunk.text)
            endpoint = chunk.endpoint or endpoint
    return "".join(parts), endpoint


async def test_retryable_errors_are_retried_on_the_same_endpoint(sim: ModelSimulator, backup: ModelSimulator,
                                                                 make_router) -> None:  # type: ignore[no-untyped-def]
    sim.script(Turn(status=503, error="loading"), Turn(status=500, error="oops"))
    router = make_router(settings(sim.url, backup.url))
    text, endpoint = await answer(router)
    assert text == "You said: hello"
    assert len(sim.requests) == 3 and backup.requests == []
    assert endpoint.startswith("ollama:127.0.0.1")


async def test_fail_over_after_retries_are_spent(sim: ModelSimulator, backup: ModelSimulator,
                                                 make_router) -> None:  # type: ignore[no-untyped-def]
    events: list[Event] = []
    sim.script(*[Turn(status=500, error="broken")] * 3)
    backup.script(Turn(text="from the backup"))
    router = make_router(settings(sim.url, backup.url), events)
    text, _ = await answer(router)
    assert text == "from the backup"
    assert len(sim.requests) == 3 and len(backup.requests) == 1
    assert [e.properties["reason"] for e in events if e.name == "model.failover"] == ["model_unavailable"]
    outcomes = [e.properties["outcome"] for e in events if e.name == "model.request"]
    assert outcomes == ["model_unavailable", "ok"]


async def test_non_retryable_errors_fail_over_at_once(sim: ModelSimulator, backup: ModelSimulator,
                                                      make_router) -> None:  # type: ignore[no-untyped-def]
    router = make_router(settings(sim.url, backup.url))
    request = replace(REQUEST, model="not-pulled")  # the simulator answers 404 for unknown models
    backup.models = ("llama3.2", "not-pulled")
    text, _ = await answer(router, request)
    assert text == "You said: hello"
    assert len(sim.requests) == 1 and len(backup.requests) == 1


async def test_a_fallback_may_speak_the_other_protocol(sim: ModelSimulator, backup: ModelSimulator,
                                                       make_router) -> None:  # type: ignore[no-untyped-def]
    config = settings(sim.url)
    config = replace(config, endpoints=(*config.endpoints, EndpointSettings(backup.openai_url, "openai", "llama3.2")))
    await sim.stop()
    text, endpoint = await answer(make_router(config))
    assert text == "You said: hello" and endpoint.startswith("openai:")
    assert backup.requests[0].protocol == "openai"


async def test_rate_limits_honour_retry_after(sim: ModelSimulator, make_router) -> None:  # type: ignore[no-untyped-def]
    sim.script(Turn(status=429, error="slow down", retry_after=0.4))
    started = time.monotonic()
    text, _ = await answer(make_router(settings(sim.url)))
    assert text == "You said: hello"
    assert time.monotonic() - started >= 0.4
    assert len(sim.requests) == 2


async def test_no_fail_over_once_text_has_flowed(sim: ModelSimulator, backup: ModelSimulator,
                                                 make_router) -> None:  # type: ignore[no-untyped-def]
    sim.script(Turn(tokens=["one ", "two ", "three"], drop_after=1))
    router = make_router(settings(sim.url, backup.url))
    received = []
    with pytest.raises(ModelUnavailable):
        async with aclosing(router.stream(REQUEST)) as chunks:
            async for chunk in chunks:
                received.append(chunk.text)
    assert received == ["one "]
    assert backup.requests == [] and len(sim.requests) == 1


async def test_first_token_timeout_fails_over(sim: ModelSimulator, backup: ModelSimulator,
                                              make_router) -> None:  # type: ignore[no-untyped-def]
    sim.script(Turn(text="too late", ttft=3.0))
    backup.script(Turn(text="on time"))
    router = make_router(settings(sim.url, backup.url, first_token_timeout=0.3))
    started = time.monotonic()
    text, _ = await answer(router)
    assert text == "on time"
    assert time.monotonic() - started < 2.0
    assert len(sim.requests) == 1  # a first-token timeout is not retried on the same endpoint


async def test_stall_between_tokens_and_total_timeout(sim: ModelSimulator, make_router) -> None:  # type: ignore[no-untyped-def]
    sim.script(Turn(tokens=["a", "b", "c", "d", "e", "f"], gap=0.25))
    with pytest.raises(ModelTimeout, match="total time"):
        await answer(make_router(settings(sim.url, total_timeout=0.6)))
    sim.script(Turn(tokens=["a", "b"], gap=1.0))
    with pytest.raises(ModelTimeout, match="next token"):
        await answer(make_router(settings(sim.url, first_token_timeout=0.4)))


async def test_connect_timeout(make_router) -> None:  # type: ignore[no-untyped-def]
    # a listener that never accepts, with its backlog filled: further SYNs are dropped, so only the
    # connect timeout ends the attempt
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(server.getsockname())
        fillers.append(filler)
    try:
        port = server.getsockname()[1]
        router = make_router(settings(f"http://127.0.0.1:{port}", connect_timeout=0.3, retry=RetryPolicy(attempts=1)))
        started = time.monotonic()
        with pytest.raises(ModelUnavailable):
            await answer(router)
        assert time.monotonic() - started < 3.0
    finally:
        for sock in (*fillers, server):
            sock.close()


async def test_breaker_opens_skips_and_closes_after_a_good_trial(sim: ModelSimulator, backup: ModelSimulator,
                                                                 make_router) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    events: list[Event] = []
    router = make_router(settings(sim.url, backup.url, breaker_threshold=2, retry=RetryPolicy(attempts=1),
                                  breaker_cooldown=30.0), events, clock)
    sim.script(Turn(status=503), Turn(status=503))
    await answer(router)
    await answer(router)
    assert router.status()[0].breaker == "open"
    assert [e.properties["state"] for e in events if e.name == "model.breaker"] == ["open"]
    await answer(router)
    assert len(sim.requests) == 2  # skipped while open
    clock.now += 31
    assert router.status()[0].breaker == "half_open"
    _, endpoint = await answer(router)  # the trial request goes to the primary and succeeds
    assert len(sim.requests) == 3 and endpoint == router.status()[0].name
    assert router.status()[0].breaker == "closed"
    assert len(backup.requests) == 3


async def test_a_failed_trial_reopens_the_breaker(sim: ModelSimulator, backup: ModelSimulator,
                                                  make_router) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    router = make_router(settings(sim.url, backup.url, breaker_threshold=1, retry=RetryPolicy(attempts=3)), None,
                         clock)
    sim.script(Turn(status=503), Turn(status=503))
    await answer(router)
    assert len(sim.requests) == 1  # the breaker opened at the first failure, so no retries
    clock.now += 31
    await answer(router)
    assert len(sim.requests) == 2 and router.status()[0].breaker == "open"


def test_breaker_lets_one_trial_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=10, clock=clock)
    breaker.record_failure()
    assert not breaker.allow()
    clock.now += 10
    assert breaker.allow() and not breaker.allow()
    breaker.release_trial()
    assert breaker.allow()


async def test_busy_when_slots_and_queue_are_full(sim: ModelSimulator, make_router) -> None:  # type: ignore[no-untyped-def]
    router = make_router(settings(sim.url, max_concurrency=1, queue_size=0))
    sim.script(Turn(text="slow", ttft=0.5))
    first = asyncio.create_task(answer(router))
    await asyncio.sleep(0.2)
    with pytest.raises(ModelBusy) as busy:
        await answer(router)
    assert "busy" in busy.value.user_message
    assert (await first)[0] == "slow"
    assert sim.max_active == 1


async def test_the_queue_waits_for_a_slot(sim: ModelSimulator, make_router) -> None:  # type: ignore[no-untyped-def]
    router = make_router(settings(sim.url, max_concurrency=2, queue_size=10))
    sim.script(*[Turn(text=f"answer {i}", ttft=0.2) for i in range(6)])
    results = await asyncio.gather(*(answer(router) for _ in range(6)))
    assert sorted(r[0] for r in results) == [f"answer {i}" for i in range(6)]
    assert sim.max_active == 2


async def test_queue_timeout_is_busy(sim: ModelSimulator, make_router) -> None:  # type: ignore[no-untyped-def]
    router = make_router(settings(sim.url, max_concurrency=1, queue_size=5, queue_timeout=0.2))
    sim.script(Turn(text="slow", ttft=1.0))
    first = asyncio.create_task(answer(router))
    await asyncio.sleep(0.1)
    with pytest.raises(ModelBusy, match="waited"):
        await answer(router)
    await first


async def test_busy_primary_fails_over(sim: ModelSimulator, backup: ModelSimulator, make_router) -> None:  # type: ignore[no-untyped-def]
    router = make_router(settings(sim.url, backup.url, max_concurrency=1, queue_size=0))
    sim.script(Turn(text="slow", ttft=0.5))
    first = asyncio.create_task(answer(router))
    await asyncio.sleep(0.2)
    text, _ = await answer(router)
    assert text == "You said: hello" and len(backup.requests) == 1
    await first


async def test_everything_down_names_each_endpoint(sim: ModelSimulator, backup: ModelSimulator,
                                                   make_router) -> None:  # type: ignore[no-untyped-def]
    router = make_router(settings(sim.url, backup.url, retry=RetryPolicy(attempts=1)))
    await sim.stop()
    await backup.stop()
    with pytest.raises(ModelUnavailable) as down:
        await answer(router)
    message = str(down.value)
    assert str(sim.port) in message and str(backup.port) in message
    assert "No language model is reachable" in down.value.user_message


async def test_context_too_long_is_not_retried(make_router) -> None:  # type: ignore[no-untyped-def]
    async with ModelSimulator(context_length=20) as small:
        router = make_router(settings(small.openai_url, protocol="openai"))
        with pytest.raises(ContextTooLong):
            await answer(router, ChatRequest(messages=(UserContent("word " * 100),)))
        assert len(small.requests) == 1
