"""Fixtures for the provider tests: a simulator on a real socket, providers of both kinds, a dead port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from hearth.models import make_provider
from hearth.models.base import ChatProvider
from hearth.settings import EndpointSettings
from hearth.testing.modelsim import ModelSimulator

from .streams import SECRET


@pytest.fixture
async def sim() -> AsyncIterator[ModelSimulator]:
    async with ModelSimulator() as simulator:
        yield simulator


@pytest.fixture(params=["ollama", "openai"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def provider(sim: ModelSimulator, protocol: str) -> AsyncIterator[ChatProvider]:
    """A provider with an API key, so that every test also checks the key never leaks."""
    chat = make_provider(EndpointSettings(sim.url, protocol, "llama3.2", api_key=SECRET),  # type: ignore[arg-type]
                         connect_timeout=2.0)
    yield chat
    await chat.aclose()


@pytest.fixture
def dead_url() -> str:
    """A port nothing listens on: bound, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Serve fixed bytes on one path, for what the simulator will not say (malformed lines, ...)."""
    runners: list[web.AppRunner] = []

    async def serve(path: str, body: bytes, content_type: str, status: int = 200) -> str:
        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(status=status)
            response.content_type = content_type
            await response.prepare(request)
            await response.write(body)
            await response.write_eof()
            return response

        app = web.Application()
        app.router.add_route("*", path, handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{site.port}"

    yield serve
    for runner in runners:
        await runner.cleanup()
