"""One MCP server's connection as its supervisor sees it: the state it is in, the signals its session sends,
and the transports that report their own end.

A stdio server gets the configured ``env`` over a minimal environment (``PATH``, ``HOME``, ``LANG`` and the
SDK's few harmless defaults such as ``USER``), never hearth's own, which holds secrets; its stderr goes to the
``hearth.mcp`` log, and its last line explains a crash (``stderr_hint``). ``describe`` turns any failure into
one line for an operator and the model, without the URL's secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client._transport import ReadStream, Transport, TransportStreams
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from hearth.types import ToolSpec

from .config import McpServerConfig

_log = logging.getLogger("hearth.mcp")

_STDERR_TAIL = 20

State = Literal["starting", "ready", "restarting", "failed", "disabled"]


@dataclass
class Session:
    """One connection's signals to its supervisor (a fresh object per connection, so nothing stale leaks)."""

    client: Client | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    broken: str | None = None
    stale: bool = False
    check: bool = False

    def signal(self, **flags: Any) -> None:
        for name, value in flags.items():
            setattr(self, name, value)
        self.wake.set()


@dataclass(eq=False)
class Server:
    """One configured server as its supervisor tracks it: its state, the tools it offers, its current session,
    its failure streak and the tail of its stderr."""

    config: McpServerConfig
    state: State = "starting"
    tools: dict[str, tuple[ToolSpec, str]] = field(default_factory=dict)  # offered name -> (spec, MCP name)
    session: Session | None = None
    scope: anyio.CancelScope | None = None
    task: asyncio.Task[None] | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    last_error: str | None = None
    restarts: int = 0
    failures: int = 0
    ready_since: float | None = None
    stderr: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=_STDERR_TAIL))  # (when, line)

    @property
    def name(self) -> str:
        return self.config.name


# --- the session -------------------------------------------------------------------------------------------


async def list_tools(client: Client) -> list[types.Tool]:
    """Every tool the server lists, page by page."""
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(100):  # a server whose cursor never ends cannot hang the connection
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def can_listen(client: Client) -> bool:
    """Whether the server announces changes of its tool list (else only the periodic listing notices them)."""
    tools = client.server_capabilities.tools
    return client.protocol_version in MODERN_PROTOCOL_VERSIONS and bool(tools and tools.list_changed)


# --- failures in words ---------------------------------------------------------------------------------------


def describe(exc: BaseException, server: Server) -> str:
    """One line for an operator (and the model): the innermost cause, without the URL's secrets."""
    while isinstance(exc, BaseExceptionGroup):
        leaves = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        exc = leaves[0] if leaves else exc.exceptions[0]
    config = server.config
    if isinstance(exc, OSError) and config.command is not None and exc.filename is not None:
        text = f"cannot run {config.command!r}: {exc.strerror}; check the command and PATH"
    elif isinstance(exc, MCPError):
        text = f"{exc.message} (MCP error {exc.code})"
        if exc.code == types.CONNECTION_CLOSED:
            text = "the server closed the connection" + stderr_hint(server)
    elif isinstance(exc, OSError | httpx2.HTTPError):
        text = f"cannot reach {config.where}: {exc or type(exc).__name__}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    if config.url:
        text = text.replace(config.url, config.where)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def stderr_hint(server: Server) -> str:
    """The server's last stderr line, when it wrote one just before the end (a crash's reason)."""
    if not server.stderr:
        return ""
    when, line = server.stderr[-1]
    if anyio.current_time() - when > 2.0:
        return ""
    return f" (its last words: {' '.join(line.split())[:200]})"


# --- transports ---------------------------------------------------------------------------------------------


class WatchedStream:
    """The transport's read stream, telling the supervisor when it ends (the process exited)."""

    def __init__(self, inner: ReadStream[SessionMessage | Exception], session: Session) -> None:
        self._inner = inner
        self._session = session

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._session.signal(closed=True)
            raise

    def __aiter__(self) -> WatchedStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> WatchedStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        await self.aclose()
        return None


def open_transport(config: McpServerConfig, session: Session, pipe: StderrPipe | None) -> Transport:
    """The transport to ``config``'s server (stdio over ``pipe`` for stderr, or streamable HTTP), watched for its
    end by ``session``."""
    if config.command is not None:
        assert pipe is not None
        env = {"LANG": os.environ.get("LANG", "C.UTF-8"), **config.env}
        params = StdioServerParameters(command=config.command, args=list(config.args), env=env, cwd=config.cwd)
        return watched(stdio_client(params, errlog=pipe.writer), session)
    assert config.url is not None
    http = create_mcp_http_client(headers=dict(config.headers))
    return watched(streamable_http_client(config.url, http_client=http), session, http)


@contextlib.asynccontextmanager
async def watched(inner: Transport, session: Session,
                   http: httpx2.AsyncClient | None = None) -> AsyncIterator[TransportStreams]:
    async with contextlib.AsyncExitStack() as stack:
        if http is not None:
            await stack.enter_async_context(http)
        read, write = await stack.enter_async_context(inner)
        yield WatchedStream(read, session), write


class StderrPipe:
    """A stdio server's stderr, read line by line into the ``hearth.mcp`` log (never hearth's own stderr)."""

    def __init__(self, server: Server) -> None:
        self._server = server
        read_fd, write_fd = os.pipe()
        self.writer = os.fdopen(write_fd, "w")
        self._reader = os.fdopen(read_fd, "rb", buffering=0)
        self._task = asyncio.create_task(self._pump(), name=f"mcp:{server.name}:stderr")

    def spawned(self) -> None:
        """The process has its copy of the pipe: drop ours, so that the pipe ends when the process does."""
        if not self.writer.closed:
            self.writer.close()

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        try:
            transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), self._reader)
        except OSError as exc:
            _log.warning("mcp %s: cannot read the server's stderr: %s", self._server.name, exc)
            return
        buffer = b""
        try:
            while chunk := await reader.read(4096):
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    self._line(line)
                buffer = buffer[-4096:]  # a line without an end cannot grow without bound
            if buffer:
                self._line(buffer)
        finally:
            transport.close()

    def _line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip()
        if line.strip():
            self._server.stderr.append((anyio.current_time(), line))
            _log.info("mcp %s stderr: %s", self._server.name, line)

    async def close(self) -> None:
        """Read to the end (bounded: a child of the server may hold the pipe open), then release the pipe."""
        self.spawned()
        await asyncio.wait([self._task], timeout=1.0)
        if not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task], timeout=1.0)
        if not self._reader.closed:
            self._reader.close()
