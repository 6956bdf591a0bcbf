"""A real hearth for tests: the composition root serving on 127.0.0.1 ports chosen by the OS.

``running_hearth`` builds the runtime from ``Settings`` (so the same wiring as ``hearth serve``), serves
it in a background task and stops it when the block ends. ``sim`` is a scripted model server on a real
socket. Fixtures here are registered for the whole suite by ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearth.runtime import Listeners, Runtime, bind
from hearth.settings import Settings
from hearth.testing.modelsim import ModelSimulator

ADMIN_TOKEN = "test-admin-token-0123456789"


@dataclass
class RunningHearth:
    runtime: Runtime
    listeners: Listeners
    admin_key: str
    scheme: str = "http"

    @property
    def http_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.listeners.ports['http']}"

    @property
    def admin_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.listeners.ports['admin']}"

    @property
    def ws_port_url(self) -> str:
        ws = "wss" if self.scheme == "https" else "ws"
        return f"{ws}://127.0.0.1:{self.listeners.ports['ws']}/ws"

    @property
    def http_ws_url(self) -> str:
        ws = "wss" if self.scheme == "https" else "ws"
        return f"{ws}://127.0.0.1:{self.listeners.ports['http']}/ws"

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "hearth_data_dir": data_dir, "hearth_host": "127.0.0.1", "hearth_http_port": 0,
        "hearth_ws_port": 0, "hearth_admin_port": 0, "message_retention_days": 0,
        "ai_model_first_token_timeout": 5.0, "ai_model_total_timeout": 20.0, "ai_model_connect_timeout": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_hearth(data_dir: Path, **overrides: Any) -> AsyncIterator[RunningHearth]:
    settings = make_settings(data_dir, **overrides)
    runtime = await Runtime.create(settings)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        await runtime.start()
        listeners = bind(settings.server)
        task = asyncio.create_task(runtime.serve(listeners=listeners, stop=stop))
        admin_key = (data_dir / "admin.key").read_text().strip()
        running = RunningHearth(runtime, listeners, admin_key, "https" if settings.hearth_tls_cert else "http")
        await _wait_until_up(running, task)
        yield running
    finally:
        stop.set()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 20)
        await runtime.aclose()


async def _wait_until_up(running: RunningHearth, task: asyncio.Task[None]) -> None:
    async with httpx.AsyncClient(verify=False) as client:
        for _ in range(200):
            if task.done():
                task.result()
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(running.http_url + "/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.02)
    raise RuntimeError("hearth did not come up")


@pytest.fixture
async def sim() -> AsyncIterator[ModelSimulator]:
    async with ModelSimulator() as simulator:
        yield simulator


@pytest.fixture
async def hearth(sim: ModelSimulator, tmp_path: Path) -> AsyncIterator[RunningHearth]:
    """hearth on SQLite, talking Ollama's protocol to ``sim``, management API open with ADMIN_TOKEN."""
    async with running_hearth(tmp_path / "data", ai_model_endpoint=sim.url, admin_token=ADMIN_TOKEN) as running:
        yield running
