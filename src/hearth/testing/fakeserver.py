"""The part every fake platform server shares: an aiohttp server on a local port that stops by itself.

A fake (``fake_telegram``, ``fake_slack``, ``fake_whatsapp``) subclasses ``FakeServer``, adds its routes in
``routes`` and sets ``max_body``; ``async with Fake() as fake:`` serves it on ``fake.host`` and a port the OS
picks, and ``lifetime`` seconds after start it stops even if a test forgot to, so no test leaves a server.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from aiohttp import web


class FakeServer:
    """A bounded local HTTP server; subclasses add routes."""

    max_body = 1024 * 1024

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, lifetime: float = 300.0) -> None:
        self.host = host
        self.port = port
        self.lifetime = lifetime
        self._runner: web.AppRunner | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._expiry: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def routes(self, app: web.Application) -> None:
        """Add the fake's routes to ``app``."""
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application(client_max_size=self.max_body)
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site.port
        self._timer = asyncio.get_running_loop().call_later(self.lifetime, self._expire)

    def _expire(self) -> None:
        self._expiry = asyncio.ensure_future(self.stop())

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
