"""MCP servers as a tool source: their tools are offered to the model next to the skills' intents.

Why a supervisor and not a plain client: an MCP server is another program (a local process over stdio, or
a remote endpoint over streamable HTTP) that crashes, restarts and changes its tool list while hearth runs.
``McpTools`` keeps one task per server that owns its session: it connects, fetches the tool list, watches the
connection (end of the process's output, a failing request, the server's ``tools/list_changed``, a periodic
``tools/list`` as a health check) and reconnects with the one ``RetryPolicy``. While a server is down its
tools are not offered, and a call to one of them is an error result that says so: the model sees every
failure as a result, never an exception.

The configuration is the JSON format that MCP clients share::

    {"mcpServers": {
        "time":  {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}, "cwd": "/srv"},
        "issues": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer $env:ISSUES_TOKEN"},
                   "timeout": 30, "enabled": false}}}

``command`` means stdio, ``url`` means streamable HTTP. ``$env:NAME`` in a string is replaced by that
environment variable, so secrets need not be in the file. A stdio server gets the configured ``env`` over a
minimal environment (``PATH``, ``HOME``, ``LANG`` and the SDK's few harmless defaults such as ``USER``), never
hearth's own, which holds secrets; its stderr goes to the ``hearth.mcp`` log.

Tool names are ``mcp_<server>__<tool>`` (``[a-zA-Z0-9_-]``, at most 64 characters), the permission is
``tool.mcp.<server>``, and a tool whose annotations say ``destructiveHint: true`` needs the user's yes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import re
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client._transport import ReadStream, Transport, TransportStreams
from mcp.client.session import MessageHandlerFnT
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from hearth import __version__
from hearth.errors import ConfigError
from hearth.types import Event, RetryPolicy, SkillCall, SkillResult, ToolSpec

__all__ = ["McpServerConfig", "McpTools", "load_mcp_config", "tool_name"]

_log = logging.getLogger("hearth.mcp")

SETTING = "HEARTH_MCP_CONFIG"
MAX_NAME = 64
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
_ENV_REF = re.compile(r"\$env:([A-Za-z_][A-Za-z0-9_]*)")
_KEYS = ("command", "args", "env", "cwd", "url", "headers", "enabled", "timeout", "type")
_STDIO_KEYS = ("command", "args", "env", "cwd")
_TYPES = {"stdio": "stdio", "http": "http", "streamable-http": "http", "streamableHttp": "http"}
_HEALTHY_AFTER = 60.0  # seconds up after which a server's failure streak is forgotten
_STDERR_TAIL = 20
DEFAULT_RETRY = RetryPolicy(attempts=5, base=0.5, cap=30.0)

State = Literal["starting", "ready", "restarting", "failed", "disabled"]


# --- configuration ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class McpServerConfig:
    """One entry of ``mcpServers``, with ``$env:`` references already resolved.

    Exactly one of ``command`` (stdio) and ``url`` (streamable HTTP) is set. ``timeout`` bounds each tool call,
    in seconds. Values that may hold secrets are kept out of ``repr``.
    """

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    enabled: bool = True
    timeout: float = 60.0

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command is not None else "http"

    @property
    def slug(self) -> str:
        """The name as it appears in tool names and permissions."""
        return _UNSAFE.sub("_", self.name)

    @property
    def where(self) -> str:
        """The endpoint without credentials or query, for logs and errors."""
        if self.command is not None:
            return self.command
        parts = urlsplit(self.url or "")
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


def load_mcp_config(path: Path, *, environ: Mapping[str, str] | None = None) -> list[McpServerConfig]:
    """The servers of an ``mcpServers`` JSON file (see the module docstring for the format).

    ``environ`` resolves ``$env:NAME`` references (default: the process environment). Raises ``ConfigError``
    for ``HEARTH_MCP_CONFIG`` with one line that names the server (or the file), what is wrong and the fix.
    A missing file is an error: the caller decides whether the file is optional.
    """
    env = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(SETTING, f"{path}: no such file; create it or point {SETTING} at the right file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(SETTING, f"{path}: cannot be read ({exc}); check its permissions and encoding") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(SETTING, f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
                          ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers"), dict):
        raise ConfigError(SETTING, f'{path}: expected an object {{"mcpServers": {{"<name>": {{...}}}}}}')
    servers = [_parse_server(str(name), raw, env) for name, raw in data["mcpServers"].items()]
    seen: dict[str, str] = {}
    for server in servers:
        other = seen.setdefault(server.slug, server.name)
        if other != server.name:
            raise ConfigError(SETTING, f"{server.name}: its tool names would clash with server {other!r} "
                                       "(names are reduced to letters, digits, _ and -); rename one of them")
    return servers


def _parse_server(name: str, raw: object, environ: Mapping[str, str]) -> McpServerConfig:
    def bad(problem: str) -> ConfigError:
        return ConfigError(SETTING, f"{name or '(empty name)'}: {problem}")

    if not name.strip():
        raise bad("a server needs a name; use a short word such as \"files\" as its key in mcpServers")
    if not isinstance(raw, dict):
        raise bad('expected an object with "command" (a local process, stdio) or "url" (streamable HTTP)')
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise bad(f"unknown key {unknown[0]!r}; the keys are {', '.join(_KEYS)}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise bad('"enabled" must be true or false')
    timeout = raw.get("timeout", 60.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
        raise bad('"timeout" must be a positive number of seconds, e.g. 60')

    def text(key: str, value: object) -> str:
        if not isinstance(value, str) or not value:
            raise bad(f'"{key}" must be a non-empty string')
        if not enabled:  # a disabled server may name variables that are not set here
            return value

        def resolve(match: re.Match[str]) -> str:
            variable = match.group(1)
            if variable not in environ:
                raise bad(f'"{key}" refers to $env:{variable}, which is not set; set it in the environment or .env')
            return environ[variable]

        return _ENV_REF.sub(resolve, value)

    def table(key: str) -> dict[str, str]:
        value = raw.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise bad(f'"{key}" must be an object of strings, e.g. {{"NAME": "value"}}')
        return {str(k): text(f"{key}.{k}", v) if v else v for k, v in value.items()}

    kind = raw.get("type")
    if kind is not None and kind not in _TYPES:
        raise bad(f'"type" {kind!r} is not supported; use "stdio" with "command" or "http" (streamable HTTP) '
                  'with "url" (the older SSE transport is not supported)')
    if "command" in raw and "url" in raw:
        raise bad('has both "command" and "url"; keep "command" for a local process or "url" for a remote server')
    if "url" in raw:
        if kind is not None and _TYPES[kind] != "http":
            raise bad(f'"type" is {kind!r} but "url" is set; use "type": "http" or remove "type"')
        stray = [key for key in _STDIO_KEYS if key in raw]
        if stray:
            raise bad(f'"{stray[0]}" is for local (stdio) servers; a "url" server takes "headers"')
        url = text("url", raw["url"])
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad('"url" must be an http:// or https:// address, e.g. "https://mcp.example.com/mcp"')
        return McpServerConfig(name=name, url=url, headers=table("headers"), enabled=enabled, timeout=float(timeout))
    if "command" not in raw:
        raise bad('needs "command" (a local process, stdio) or "url" (a streamable HTTP endpoint)')
    if kind is not None and _TYPES[kind] != "stdio":
        raise bad(f'"type" is {kind!r} but "command" is set; use "type": "stdio" or remove "type"')
    if "headers" in raw:
        raise bad('"headers" is for "url" servers; pass a local server its settings in "env"')
    args = raw.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise bad('"args" must be a list of strings, e.g. ["--port", "0"]')
    cwd = text("cwd", raw["cwd"]) if "cwd" in raw else None
    if cwd is not None and enabled and not Path(cwd).is_dir():
        raise bad(f'"cwd" {cwd!r} is not a directory; create it or fix the path')
    return McpServerConfig(name=name, command=text("command", raw["command"]),
                           args=tuple(text("args", a) if a else a for a in args), env=table("env"), cwd=cwd,
                           enabled=enabled, timeout=float(timeout))


def tool_name(server: str, tool: str, *, hashed: bool = False) -> str:
    """``mcp_<server>__<tool>`` reduced to ``[a-zA-Z0-9_-]`` and at most 64 characters.

    A longer name (or, with ``hashed``, any name) ends with a digest of the original pair, which keeps
    distinct tools apart after truncation.
    """
    name = _UNSAFE.sub("_", f"mcp_{server}__{tool}")
    if len(name) <= MAX_NAME and not hashed:
        return name
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:8]
    return f"{name[:MAX_NAME - 9]}_{digest}"


# --- runtime state ------------------------------------------------------------------------------------------


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


@dataclass
class _Session:
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
class _Server:
    config: McpServerConfig
    state: State = "starting"
    tools: dict[str, tuple[ToolSpec, str]] = field(default_factory=dict)  # offered name -> (spec, MCP name)
    session: _Session | None = None
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
        self._servers = [_Server(config, state="starting" if config.enabled else "disabled") for config in servers]
        self._retry = retry
        self._events = events
        self._connect_timeout = connect_timeout
        self._check_interval = check_interval
        self._routes: dict[str, tuple[_Server, str]] = {}  # every name ever offered -> (server, MCP name)
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
            return _failure(call, f"There is no MCP tool named {call.name!r}.", "unknown_tool")
        started = anyio.current_time()
        outcome = await self._call(server, call)
        self._emit("mcp.tool_called", call=call, server=server.name, tool=route[1] if route else call.name,
                   ok=not outcome.is_error, error_code=outcome.error_code,
                   seconds=round(anyio.current_time() - started, 3))
        return outcome

    async def _call(self, server: _Server, call: SkillCall) -> SkillResult:
        session = server.session
        client = session.client if session is not None else None
        if server.state == "disabled":
            return _failure(call, f"The MCP server {server.name!r} is disabled in the configuration.", "unavailable")
        if server.state != "ready" or session is None or client is None:
            why = f" ({server.last_error})" if server.last_error else ""
            return _failure(call, f"The MCP server {server.name!r} is unavailable right now{why}; "
                                  "try again later.", "unavailable")
        entry = server.tools.get(call.name)
        if entry is None:
            return _failure(call, f"The MCP server {server.name!r} no longer offers {call.name!r}.", "unknown_tool")
        remote, timeout = entry[1], server.config.timeout
        late = f"The MCP tool {remote!r} of {server.name!r} did not answer within {timeout:g} s."
        try:
            with anyio.fail_after(timeout + 5):  # the SDK's own timeout comes first; this bounds a stuck write
                result = await client.call_tool(remote, dict(call.arguments), read_timeout_seconds=timeout)
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                session.signal(broken="the connection closed during a call")
                return _failure(call, f"The MCP server {server.name!r} is unavailable: it closed the connection "
                                      "during the call; try again later.", "unavailable")
            if exc.code == types.REQUEST_TIMEOUT:
                session.signal(check=True)
                return _failure(call, late, "timeout")
            return _failure(call, f"The MCP tool {remote!r} of {server.name!r} failed: {exc.message} "
                                  f"(MCP error {exc.code}).", "tool_error")
        except TimeoutError:
            session.signal(check=True)
            return _failure(call, late, "timeout")
        except ValidationError as exc:
            return _failure(call, f"The MCP tool {remote!r} of {server.name!r} returned a malformed result "
                                  f"({exc.error_count()} problems).", "bad_result")
        except Exception as exc:  # the transport failed under the call: have the supervisor check at once
            _log.warning("mcp %s: call to %s failed: %s", server.name, remote, _describe(exc, server))
            session.signal(check=True)
            return _failure(call, f"The MCP server {server.name!r} is unavailable: {_describe(exc, server)}.",
                            "unavailable")
        content = render(result)
        if result.is_error:
            return _failure(call, content or f"The MCP tool {remote!r} reported an error.", "tool_error")
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

    async def _supervise(self, server: _Server) -> None:
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

    async def _run_session(self, server: _Server) -> str:
        """Hold one connection until it ends; what ended it, in words (never raises, except cancellation)."""
        session = _Session()
        server.session = session
        server.stderr.clear()
        pipe = _StderrPipe(server) if server.config.transport == "stdio" else None
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
            return _describe(failure, server)
        if session.closed and not self._stopping.is_set():
            return "the server closed the connection" + _stderr_hint(server)
        return reason

    async def _hold(self, server: _Server, session: _Session, pipe: _StderrPipe | None) -> str:
        with anyio.CancelScope(deadline=anyio.current_time() + self._connect_timeout) as scope:
            server.scope = scope
            client = Client(self._transport(server.config, session, pipe), mode="auto", cache=None,
                            message_handler=self._on_message(server, session),
                            client_info=types.Implementation(name="hearth", version=__version__))
            async with client:
                if pipe is not None:
                    pipe.spawned()
                self._publish(server, await _list_tools(client))
                scope.deadline = math.inf
                session.client = client
                self._set_up(server, client)
                async with anyio.create_task_group() as group:
                    if _can_listen(client):
                        group.start_soon(self._listen, server, session, client)
                    reason = await self._watch(server, session, client)
                    group.cancel_scope.cancel()
                return reason
        if self._stopping.is_set():
            return "stopped"
        return f"no answer to the MCP handshake within {self._connect_timeout:g} s"

    async def _watch(self, server: _Server, session: _Session, client: Client) -> str:
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
                    self._publish(server, await _list_tools(client))

    async def _listen(self, server: _Server, session: _Session, client: Client) -> None:
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                async for _ in subscription:
                    session.signal(stale=True)
        except Exception as exc:  # no change notifications: the periodic listing still catches changes
            _log.debug("mcp %s: tools/list_changed subscription ended: %s", server.name, exc)

    def _on_message(self, server: _Server, session: _Session) -> MessageHandlerFnT:
        async def handle(message: types.ServerNotification | Exception) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                session.signal(stale=True)
            elif isinstance(message, Exception):
                _log.warning("mcp %s: transport error: %s", server.name, _describe(message, server))

        return handle

    def _transport(self, config: McpServerConfig, session: _Session, pipe: _StderrPipe | None) -> Transport:
        if config.command is not None:
            assert pipe is not None
            env = {"LANG": os.environ.get("LANG", "C.UTF-8"), **config.env}
            params = StdioServerParameters(command=config.command, args=list(config.args), env=env, cwd=config.cwd)
            return _watched(stdio_client(params, errlog=pipe.writer), session)
        assert config.url is not None
        http = create_mcp_http_client(headers=dict(config.headers))
        return _watched(streamable_http_client(config.url, http_client=http), session, http)

    # --- the tool list --------------------------------------------------------------------------------------

    def _publish(self, server: _Server, listed: Sequence[types.Tool]) -> None:
        taken = {name for name, (owner, _) in self._routes.items() if owner is not server}
        tools: dict[str, tuple[ToolSpec, str]] = {}
        for tool in listed:
            name = tool_name(server.config.slug, tool.name)
            if name in taken or name in tools:
                name = tool_name(server.config.slug, tool.name, hashed=True)
                if name in taken or name in tools:
                    _log.warning("mcp %s: tool %r skipped, its name clashes with another tool", server.name, tool.name)
                    continue
            tools[name] = (_spec(server.config, tool, name), tool.name)
        if server.state == "ready" and tools.keys() != server.tools.keys():
            _log.info("mcp %s: tool list changed: %s", server.name, ", ".join(t[1] for t in tools.values()))
        for name in [n for n, (owner, _) in self._routes.items() if owner is server and n not in tools]:
            del self._routes[name]
        self._routes.update({name: (server, remote) for name, (_, remote) in tools.items()})
        server.tools = tools
        self._rebuild()

    def _set_up(self, server: _Server, client: Client) -> None:
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

    def _set_down(self, server: _Server) -> None:
        server.session = None
        server.ready_since = None
        if server.state == "ready":
            server.state = "restarting"
        self._rebuild()

    def _rebuild(self) -> None:
        self._offered = tuple(spec for s in self._servers if s.state == "ready" for spec, _ in s.tools.values())

    def _server_by_prefix(self, name: str) -> _Server | None:
        return next((s for s in self._servers if name.startswith(f"mcp_{s.config.slug}__")), None)

    def _emit(self, name: str, *, call: SkillCall | None = None, **properties: Any) -> None:
        if self._events is None:
            return
        try:
            self._events.emit(Event(name, actor=call.actor if call else None, properties=properties))
        except Exception:
            _log.exception("mcp: emitting %s failed", name)


# --- helpers ------------------------------------------------------------------------------------------------


def _spec(config: McpServerConfig, tool: types.Tool, name: str) -> ToolSpec:
    schema: dict[str, Any] = dict(tool.input_schema) if isinstance(tool.input_schema, dict) else {}
    schema.setdefault("type", "object")
    if schema["type"] != "object":
        schema = {"type": "object"}
    schema.setdefault("properties", {})
    annotations = tool.annotations
    description = tool.description or tool.title or (annotations.title if annotations else None) or tool.name
    return ToolSpec(name=name, description=description, parameters=schema, permission=f"tool.mcp.{config.slug}",
                    confirm=bool(annotations is not None and annotations.destructive_hint is True))


async def _list_tools(client: Client) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(100):  # a server whose cursor never ends cannot hang the connection
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _can_listen(client: Client) -> bool:
    tools = client.server_capabilities.tools
    return client.protocol_version in MODERN_PROTOCOL_VERSIONS and bool(tools and tools.list_changed)


def render(result: types.CallToolResult) -> str:
    """A tool result as text for the model: text blocks joined; other blocks summarised (``[image/png, 12 KB]``);
    the structured content when there are no blocks."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent | types.AudioContent):
            parts.append(f"[{block.mime_type}, {_size(block.data)}]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[{resource.mime_type or 'binary'}, {_size(resource.blob)}, {resource.uri}]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[{block.mime_type or 'resource'}: {block.name} {block.uri}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


def _size(data: str) -> str:
    size = len(data) * 3 // 4 - data[-2:].count("=")
    return f"{size} B" if size < 1024 else f"{max(1, round(size / 1024))} KB" if size < 1024**2 else \
        f"{size / 1024**2:.1f} MB"


def _failure(call: SkillCall, message: str, code: str) -> SkillResult:
    return SkillResult(call.id, call.name, message, is_error=True, error_code=code)


def _describe(exc: BaseException, server: _Server) -> str:
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
            text = "the server closed the connection" + _stderr_hint(server)
    elif isinstance(exc, OSError | httpx2.HTTPError):
        text = f"cannot reach {config.where}: {exc or type(exc).__name__}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    if config.url:
        text = text.replace(config.url, config.where)
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _stderr_hint(server: _Server) -> str:
    """The server's last stderr line, when it wrote one just before the end (a crash's reason)."""
    if not server.stderr:
        return ""
    when, line = server.stderr[-1]
    if anyio.current_time() - when > 2.0:
        return ""
    return f" (its last words: {' '.join(line.split())[:200]})"


# --- transports ---------------------------------------------------------------------------------------------


class _WatchedStream:
    """The transport's read stream, telling the supervisor when it ends (the process exited)."""

    def __init__(self, inner: ReadStream[SessionMessage | Exception], session: _Session) -> None:
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

    def __aiter__(self) -> _WatchedStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        await self.aclose()
        return None


@contextlib.asynccontextmanager
async def _watched(inner: Transport, session: _Session,
                   http: httpx2.AsyncClient | None = None) -> AsyncIterator[TransportStreams]:
    async with contextlib.AsyncExitStack() as stack:
        if http is not None:
            await stack.enter_async_context(http)
        read, write = await stack.enter_async_context(inner)
        yield _WatchedStream(read, session), write


class _StderrPipe:
    """A stdio server's stderr, read line by line into the ``hearth.mcp`` log (never hearth's own stderr)."""

    def __init__(self, server: _Server) -> None:
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
