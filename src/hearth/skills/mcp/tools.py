"""``McpTools``: every configured MCP server supervised, and its tools offered as a ``ToolSource``.

Why a supervisor and not a plain client: an MCP server is another program (a local process over stdio, or
a remote endpoint over streamable HTTP) that crashes, restarts and changes its tool list while hearth runs.
``McpTools`` keeps one task per server that owns its session: it connects, fetches the tool list, watches the
connection (end of the process's output, a failing request, the server's ``tools/list_changed``, a periodic
``tools/list`` as a health check) and reconnects with the one ``RetryPolicy``. While a server is down its
tools are not offered, and a call to one of them is an error result that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from typing import Any, Protocol

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.session import MessageHandlerFnT
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from hearth import __version__
from hearth.types import Event, RetryPolicy, SkillCall, SkillResult, ToolSpec

from .config import McpServerConfig, tool_name
from .connection import Server, Session, StderrPipe, can_listen, describe, list_tools, open_transport, stderr_hint
from .convert import failure, render, tool_spec

__all__ = ["DEFAULT_RETRY", "EventSink", "McpTools"]

_log = logging.getLogger("hearth.mcp")

_HEALTHY_AFTER = 60.0  # seconds up after which a server's failure streak is forgotten
DEFAULT_RETRY = RetryPolicy(attempts=5, base=0.5, cap=30.0)


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class McpTools:
    """Every configured MCP server's tools, as a ``ToolSource`` for the ``SkillRegistry``.

    ``start()`` connects all servers concurrently and returns once each has either connected or failed a first
    time; servers that fail keep being retried in the background (``retry``: the delay grows from ``base`` to
    ``cap``; after ``attempts`` failures in a row the state reads ``failed`` while retries go on every ``cap``
    seconds; a minute of health forgets the streak). ``tools()`` lists only servers that are up. ``call()`` never
    raises. ``events`` receives ``mcp.server_up``, ``mcp.server_down`` and ``mcp.tool_called``.
    ``connect_timeout`` bounds a connection's handshake and each tool listing; ``check_interval`` is how often
    an idle server's tool list is fetched again, which notices both a dead server and a changed list.
    """

    def __init__(self, servers: Sequence[McpServerConfig], *, retry: RetryPolicy = DEFAULT_RETRY,
                 events: EventSink | None = None, connect_timeout: float = 30.0, check_interval: float = 30.0) -> None:
        self._servers = [Server(config, state="starting" if config.enabled else "disabled") for config in servers]
        self._retry = retry
        self._events = events
        self._connect_timeout = connect_timeout
        self._check_interval = check_interval
        self._routes: dict[str, tuple[Server, str]] = {}  # every name ever offered -> (server, MCP name)
        self._offered: tuple[ToolSpec, ...] = ()
        self._stopping = asyncio.Event()

    # --- ToolSource -----------------------------------------------------------------------------------------

    def tools(self) -> Sequence[ToolSpec]:
        """The tools of the servers that are up, at this moment."""
        return self._offered

    def handles(self, name: str) -> bool:
        """Whether ``name`` is (or was, or would be) one of these servers' tools, so that a call to a tool of a
        server that is down is answered as unavailable rather than unknown."""
        return name in self._routes or self._server_by_prefix(name) is not None

    async def call(self, call: SkillCall) -> SkillResult:
        """Run the MCP tool ``call.name``; every failure is an error result for the model."""
        route = self._routes.get(call.name)
        server = route[0] if route else self._server_by_prefix(call.name)
        if server is None:
            return failure(call, f"There is no MCP tool named {call.name!r}.", "unknown_tool")
        started = anyio.current_time()
        outcome = await self._call(server, call)
        self._emit("mcp.tool_called", call=call, server=server.name, tool=route[1] if route else call.name,
                   ok=not outcome.is_error, error_code=outcome.error_code,
                   seconds=round(anyio.current_time() - started, 3))
        return outcome

    async def _call(self, server: Server, call: SkillCall) -> SkillResult:
        session = server.session
        client = session.client if session is not None else None
        if server.state == "disabled":
            return failure(call, f"The MCP server {server.name!r} is disabled in the configuration.", "unavailable")
        if server.state != "ready" or session is None or client is None:
            why = f" ({server.last_error})" if server.last_error else ""
            return failure(call, f"The MCP server {server.name!r} is unavailable right now{why}; "
                                  "try again later.", "unavailable")
        entry = server.tools.get(call.name)
        if entry is None:
            return failure(call, f"The MCP server {server.name!r} no longer offers {call.name!r}.", "unknown_tool")
        remote, timeout = entry[1], server.config.timeout
        late = f"The MCP tool {remote!r} of {server.name!r} did not answer within {timeout:g} s."
        try:
            with anyio.fail_after(timeout + 5):  # the SDK's own timeout comes first; this bounds a stuck write
                result = await client.call_tool(remote, dict(call.arguments), read_timeout_seconds=timeout)
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                session.signal(broken="the connection closed during a call")
                return failure(call, f"The MCP server {server.name!r} is unavailable: it closed the connection "
                                      "during the call; try again later.", "unavailable")
            if exc.code == types.REQUEST_TIMEOUT:
                session.signal(check=True)
                return failure(call, late, "timeout")
            return failure(call, f"The MCP tool {remote!r} of {server.name!r} failed: {exc.message} "
                                  f"(MCP error {exc.code}).", "tool_error")
        except TimeoutError:
            session.signal(check=True)
            return failure(call, late, "timeout")
        except ValidationError as exc:
            return failure(call, f"The MCP tool {remote!r} of {server.name!r} returned a malformed result "
                                  f"({exc.error_count()} problems).", "bad_result")
        except Exception as exc:  # the transport failed under the call: have the supervisor check at once
            _log.warning("mcp %s: call to %s failed: %s", server.name, remote, describe(exc, server))
            session.signal(check=True)
            return failure(call, f"The MCP server {server.name!r} is unavailable: {describe(exc, server)}.",
                            "unavailable")
        content = render(result)
        if result.is_error:
            return failure(call, content or f"The MCP tool {remote!r} reported an error.", "tool_error")
        return SkillResult(call.id, call.name, content)

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect every enabled server concurrently; return when each has connected or failed once."""
        self._stopping.clear()
        for server in self._servers:
            if server.config.enabled and server.task is None:
                server.settled.clear()
                server.task = asyncio.create_task(self._supervise(server), name=f"mcp:{server.name}")
        await asyncio.gather(*(s.settled.wait() for s in self._servers if s.task is not None))

    async def stop(self, *, grace: float = 10.0) -> None:
        """Close every session and stop every server process, within about ``grace`` seconds.

        A stdio server gets its stdin closed, then SIGTERM, then SIGKILL (the SDK's shutdown, a few seconds at
        worst); a supervisor that still has not finished by then is cancelled.
        """
        self._stopping.set()
        tasks = [s.task for s in self._servers if s.task is not None]
        for server in self._servers:
            if server.session is not None and server.state == "ready":
                server.session.signal()  # a clean close: an HTTP session is ended with DELETE
            elif server.scope is not None:
                server.scope.cancel()  # still connecting
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        for server in self._servers:
            server.task = None

    def status(self) -> list[dict[str, Any]]:
        """One row per server: server, transport, state, tools, last_error, restarts."""
        return [{"server": s.name, "transport": s.config.transport, "state": s.state,
                 "tools": len(s.tools) if s.state == "ready" else 0,
                 "last_error": s.last_error, "restarts": s.restarts} for s in self._servers]

    # --- supervision ----------------------------------------------------------------------------------------

    async def _supervise(self, server: Server) -> None:
        while not self._stopping.is_set():
            error = await self._run_session(server)
            was_ready = server.ready_since is not None
            healthy = was_ready and anyio.current_time() - (server.ready_since or 0.0) >= _HEALTHY_AFTER
            self._set_down(server)
            if self._stopping.is_set():
                break
            server.failures = 1 if healthy else server.failures + 1
            server.last_error = error
            server.state = "failed" if server.failures >= self._retry.attempts else "restarting"
            _log.warning("mcp %s: %s %s (failure %d in a row)", server.name, "down:" if was_ready else
                         "cannot connect:", error, server.failures)
            if was_ready or server.failures == 1:
                self._emit("mcp.server_down", server=server.name, error=error, failures=server.failures)
            server.settled.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._retry.delay(server.failures))
            if not self._stopping.is_set():
                server.restarts += 1
        server.settled.set()

    async def _run_session(self, server: Server) -> str:
        """Hold one connection until it ends; what ended it, in words (never raises, except cancellation)."""
        session = Session()
        server.session = session
        server.stderr.clear()
        pipe = StderrPipe(server) if server.config.transport == "stdio" else None
        failure: Exception | None = None
        reason = "stopped"
        try:
            reason = await self._hold(server, session, pipe)
        except Exception as exc:
            failure = exc
        finally:
            server.scope = None
            session.client = None
            if pipe is not None:
                await pipe.close()  # first, so that the server's last words are in the tail
        if failure is not None:
            return describe(failure, server)
        if session.closed and not self._stopping.is_set():
            return "the server closed the connection" + stderr_hint(server)
        return reason

    async def _hold(self, server: Server, session: Session, pipe: StderrPipe | None) -> str:
        with anyio.CancelScope(deadline=anyio.current_time() + self._connect_timeout) as scope:
            server.scope = scope
            client = Client(open_transport(server.config, session, pipe), mode="auto", cache=None,
                            message_handler=self._on_message(server, session),
                            client_info=types.Implementation(name="hearth", version=__version__))
            async with client:
                if pipe is not None:
                    pipe.spawned()
                self._publish(server, await list_tools(client))
                scope.deadline = math.inf
                session.client = client
                self._set_up(server, client)
                async with anyio.create_task_group() as group:
                    if can_listen(client):
                        group.start_soon(self._listen, server, session, client)
                    reason = await self._watch(server, session, client)
                    group.cancel_scope.cancel()
                return reason
        if self._stopping.is_set():
            return "stopped"
        return f"no answer to the MCP handshake within {self._connect_timeout:g} s"

    async def _watch(self, server: Server, session: Session, client: Client) -> str:
        while True:
            with anyio.move_on_after(self._check_interval) as idle:
                await session.wake.wait()
            session.wake.clear()
            if self._stopping.is_set():
                return "stopped"
            if session.closed:
                return "the server closed the connection"
            if session.broken:
                return session.broken
            if session.stale or session.check or idle.cancelled_caught:
                session.stale = session.check = False
                with anyio.fail_after(self._connect_timeout):
                    self._publish(server, await list_tools(client))

    async def _listen(self, server: Server, session: Session, client: Client) -> None:
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _ in subscription:
                    session.signal(stale=True)
        except Exception as exc:  # no change notifications: the periodic listing still catches changes
            _log.debug("mcp %s: tools/list_changed subscription ended: %s", server.name, exc)

    def _on_message(self, server: Server, session: Session) -> MessageHandlerFnT:
        async def handle(message: types.ServerNotification | Exception) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                session.signal(stale=True)
            elif isinstance(message, Exception):
                _log.warning("mcp %s: transport error: %s", server.name, describe(message, server))

        return handle

    # --- the tool list --------------------------------------------------------------------------------------

    def _publish(self, server: Server, listed: Sequence[types.Tool]) -> None:
        taken = {name for name, (owner, _) in self._routes.items() if owner is not server}
        tools: dict[str, tuple[ToolSpec, str]] = {}
        for tool in listed:
            name = tool_name(server.config.slug, tool.name)
            if name in taken or name in tools:
                name = tool_name(server.config.slug, tool.name, hashed=True)
                if name in taken or name in tools:
                    _log.warning("mcp %s: tool %r skipped, its name clashes with another tool", server.name, tool.name)
                    continue
            tools[name] = (tool_spec(server.config, tool, name), tool.name)
        if server.state == "ready" and tools.keys() != server.tools.keys():
            _log.info("mcp %s: tool list changed: %s", server.name, ", ".join(t[1] for t in tools.values()))
        for name in [n for n, (owner, _) in self._routes.items() if owner is server and n not in tools]:
            del self._routes[name]
        self._routes.update({name: (server, remote) for name, (_, remote) in tools.items()})
        server.tools = tools
        self._rebuild()

    def _set_up(self, server: Server, client: Client) -> None:
        server.state = "ready"
        server.last_error = None
        server.ready_since = anyio.current_time()
        info = client.server_info
        _log.info("mcp %s: connected (%s, protocol %s), %d tools", server.name,
                  f"{info.name} {info.version}" if info else "unnamed server", client.protocol_version,
                  len(server.tools))
        self._emit("mcp.server_up", server=server.name, tools=len(server.tools), transport=server.config.transport)
        server.settled.set()
        self._rebuild()

    def _set_down(self, server: Server) -> None:
        server.session = None
        server.ready_since = None
        if server.state == "ready":
            server.state = "restarting"
        self._rebuild()

    def _rebuild(self) -> None:
        self._offered = tuple(spec for s in self._servers if s.state == "ready" for spec, _ in s.tools.values())

    def _server_by_prefix(self, name: str) -> Server | None:
        return next((s for s in self._servers if name.startswith(f"mcp_{s.config.slug}__")), None)

    def _emit(self, name: str, *, call: SkillCall | None = None, **properties: Any) -> None:
        if self._events is None:
            return
        try:
            self._events.emit(Event(name, actor=call.actor if call else None, properties=properties))
        except Exception:
            _log.exception("mcp: emitting %s failed", name)
