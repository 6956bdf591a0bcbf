"""Routes served the way hearth serves them: Starlette on Hypercorn through ``hearth.runtime.server``, on
127.0.0.1 ports the OS picks, stopped when the block ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from hearth.runtime.server import bind, run_server, server_config
from hearth.settings import ServerSettings


@asynccontextmanager
async def serving(routes: Sequence[BaseRoute], settings: ServerSettings) -> AsyncIterator[str]:
    """Serve ``routes``; yields the base URL of the HTTP port (``settings``' host must be 127.0.0.1 and its
    ports 0, as ``tests.support.hearth.make_settings`` makes them)."""
    listeners = bind(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(run_server(Starlette(routes=list(routes)), server_config(settings, listeners),
                                          stop.wait))
    try:
        yield f"http://127.0.0.1:{listeners.ports['http']}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        listeners.close()
