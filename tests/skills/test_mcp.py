"""McpTools against real MCP servers: mcp-server-time from PyPI over stdio, the same server's tools over
streamable HTTP (served by the MCP SDK's own HTTP transport, behind a bearer token), and a small server
written with the SDK for what mcp-server-time cannot show (a changing tool list, a slow tool, its environment).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from hearth.errors import ConfigError
from hearth.skills.mcp import McpServerConfig, McpTools, load_mcp_config, tool_name
from hearth.skills.registry import ToolSource
from hearth.types import Actor, Event, RetryPolicy, SkillCall

FAST = RetryPolicy(attempts=3, base=0.05, cap=0.2, jitter=False)
TIME = McpServerConfig("time", command=sys.executable, args=("-m", "mcp_server_time", "--local-timezone", "UTC"))
ACTOR = Actor(user_id=1, name="ada")

# A server written with the SDK, for a changing tool list, a slow tool and a look at its environment.
GROW = """
import asyncio, os, sys
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

print("grow: starting up", file=sys.stderr, flush=True)
server = MCPServer("grow")

@server.tool(description="Add a tool that answers `answer`.", annotations=ToolAnnotations(destructive_hint=True))
async def add_tool(name: str, answer: str, ctx: Context) -> str:
    def added() -> str:
        return answer
    server.add_tool(added, name=name, description="An added tool")
    await ctx.notify_tools_changed()
    return "added"

@server.tool(description="The server's environment.")
def environment() -> dict[str, str]:
    return dict(os.environ)

@server.tool(description="Answer after a while.")
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"

server.run()
"""

# mcp-server-time's own server object (create_server) over the SDK's streamable HTTP app, on a socket the test
# made, with a bearer token in front: a real remote MCP endpoint.
HTTP_SERVER = """
import asyncio, socket, sys
import uvicorn
from mcp_server_time.server import create_server

sock = socket.socket(fileno=int(sys.argv[1]))
expected = f"Bearer {sys.argv[2]}".encode()
app = create_server("UTC").streamable_http_app(host="127.0.0.1")

async def guarded(scope, receive, send):
    if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != expected:
        await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"unauthorized"})
        return
    await app(scope, receive, send)

asyncio.run(uvicorn.Server(uvicorn.Config(guarded, log_level="warning")).serve(sockets=[sock]))
"""


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [dict(e.properties) for e in self.events if e.name == name]


def call(tool: str, /, **arguments: Any) -> SkillCall:
    return SkillCall(id="c1", name=tool, arguments=arguments, actor=ACTOR, conversation="conv")


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def state(tools: McpTools, server: str) -> dict[str, Any]:
    return next(row for row in tools.status() if row["server"] == server)


Start = Callable[..., Awaitable[McpTools]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    running: list[McpTools] = []

    async def run(*servers: McpServerConfig, **options: Any) -> McpTools:
        tools = McpTools(servers, **{"retry": FAST, **options})
        running.append(tools)
        await tools.start()
        return tools

    yield run
    for tools in running:
        await tools.stop()


def time_server_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if "mcp_server_time" in p.cmdline() and "--local-timezone" in p.cmdline()]


# --- stdio: mcp-server-time ----------------------------------------------------------------------------------


async def test_time_server_tools_are_offered_with_namespaced_names_and_schemas(start: Start) -> None:
    tools: ToolSource = await start(TIME)
    offered = {spec.name: spec for spec in tools.tools()}
    assert set(offered) == {"mcp_time__get_current_time", "mcp_time__convert_time"}
    current = offered["mcp_time__get_current_time"]
    assert current.description == "Get current time in a specific timezone"
    assert current.parameters["type"] == "object"
    assert current.parameters["required"] == ["timezone"]
    assert current.parameters["properties"]["timezone"]["type"] == "string"
    assert set(offered["mcp_time__convert_time"].parameters["required"]) == {"source_timezone", "time",
                                                                               "target_timezone"}
    assert current.permission == "tool.mcp.time"
    assert not current.confirm  # readOnlyHint, destructiveHint false
    assert tools.handles("mcp_time__get_current_time") and not tools.handles("weather__forecast")
    assert isinstance(tools, McpTools)
    assert tools.status() == [{"server": "time", "transport": "stdio", "state": "ready", "tools": 2,
                               "last_error": None, "restarts": 0}]


async def test_time_server_answers_real_times(start: Start) -> None:
    events = Recorder()
    tools = await start(TIME, events=events)

    now = await tools.call(call("mcp_time__get_current_time", timezone="Asia/Tokyo"))
    assert not now.is_error, now.content
    answer = json.loads(now.content)
    moment = datetime.fromisoformat(answer["datetime"])
    assert moment.utcoffset() == timedelta(hours=9)
    assert abs(moment - datetime.now(UTC)) < timedelta(minutes=1)
    assert now.call_id == "c1" and now.name == "mcp_time__get_current_time"

    # Tokyo (UTC+9) and Kolkata (UTC+5:30) keep no daylight saving time, so the answer is fixed.
    converted = await tools.call(call("mcp_time__convert_time", source_timezone="Asia/Tokyo", time="12:30",
                                      target_timezone="Asia/Kolkata"))
    assert not converted.is_error, converted.content
    conversion = json.loads(converted.content)
    assert conversion["source"]["datetime"].endswith("T12:30:00+09:00")
    assert conversion["target"]["datetime"].endswith("T09:00:00+05:30")
    assert conversion["time_difference"] == "-3.5h"

    assert events.named("mcp.server_up") == [{"server": "time", "tools": 2, "transport": "stdio"}]
    called = events.named("mcp.tool_called")
    assert [(e["server"], e["tool"], e["ok"]) for e in called] == [("time", "get_current_time", True),
                                                                    ("time", "convert_time", True)]
    assert next(e for e in events.events if e.name == "mcp.tool_called").actor == ACTOR


async def test_errors_from_the_server_become_error_results(start: Start) -> None:
    events = Recorder()
    tools = await start(TIME, events=events)

    bad_zone = await tools.call(call("mcp_time__get_current_time", timezone="Mars/Olympus_Mons"))
    assert bad_zone.is_error and bad_zone.error_code == "tool_error"
    assert "Invalid timezone" in bad_zone.content and "Mars/Olympus_Mons" in bad_zone.content

    bad_time = await tools.call(call("mcp_time__convert_time", source_timezone="UTC", time="25:99",
                                     target_timezone="Asia/Tokyo"))
    assert bad_time.is_error and "HH:MM" in bad_time.content

    unknown = await tools.call(call("mcp_time__no_such_tool"))
    assert unknown.is_error and unknown.error_code == "unknown_tool"
    elsewhere = await tools.call(call("mcp_other__tool"))
    assert elsewhere.is_error and elsewhere.error_code == "unknown_tool"
    assert [e["ok"] for e in events.named("mcp.tool_called")] == [False, False, False]
    assert state(tools, "time")["state"] == "ready"  # a tool's error is not the server's


async def test_a_killed_server_disappears_and_comes_back(start: Start) -> None:
    events = Recorder()
    tools = await start(TIME, events=events)
    [process] = time_server_processes()

    process.kill()
    await until(lambda: not tools.tools(), "the tools to be withdrawn")
    assert tools.handles("mcp_time__get_current_time")
    result = await tools.call(call("mcp_time__get_current_time", timezone="UTC"))
    if not result.is_error:  # the restart was quicker than this call: watch a second death instead
        [process] = time_server_processes()
        process.kill()
        await until(lambda: not tools.tools(), "the tools to be withdrawn again")
        result = await tools.call(call("mcp_time__get_current_time", timezone="UTC"))
    assert result.is_error and result.error_code == "unavailable"
    assert "'time' is unavailable" in result.content

    await until(lambda: len(tools.tools()) == 2, "the server to restart")
    row = state(tools, "time")
    assert row["state"] == "ready" and row["restarts"] >= 1
    [restarted] = time_server_processes()
    assert restarted.pid != process.pid
    again = await tools.call(call("mcp_time__get_current_time", timezone="UTC"))
    assert not again.is_error and json.loads(again.content)["timezone"] == "UTC"
    down = events.named("mcp.server_down")
    assert down and down[0]["server"] == "time" and "closed the connection" in down[0]["error"]
    assert len(events.named("mcp.server_up")) >= 2


async def test_a_server_that_cannot_start_does_not_affect_another(start: Start) -> None:
    events = Recorder()
    broken = McpServerConfig("broken", command="/nonexistent/mcp-server")
    tools = await start(broken, TIME, events=events)

    assert {spec.name for spec in tools.tools()} == {"mcp_time__get_current_time", "mcp_time__convert_time"}
    row = state(tools, "broken")
    assert row["state"] in ("restarting", "failed") and row["tools"] == 0
    assert "cannot run '/nonexistent/mcp-server'" in row["last_error"]
    await until(lambda: state(tools, "broken")["state"] == "failed", "the failure streak to reach 'failed'")
    assert state(tools, "broken")["restarts"] >= FAST.attempts - 1

    result = await tools.call(call("mcp_broken__anything"))
    assert result.is_error and result.error_code == "unavailable" and "cannot run" in result.content
    fine = await tools.call(call("mcp_time__get_current_time", timezone="UTC"))
    assert not fine.is_error
    assert state(tools, "time")["state"] == "ready"
    assert events.named("mcp.server_down")[0]["server"] == "broken"


async def test_a_server_that_exits_at_once_reports_why(start: Start) -> None:
    wrong = McpServerConfig("wrong", command=sys.executable,
                            args=("-m", "mcp_server_time", "--local-timezone", "Mars/Base"))
    tools = await start(wrong)
    row = state(tools, "wrong")
    assert row["state"] in ("restarting", "failed")
    assert "invalid --local-timezone 'Mars/Base'" in row["last_error"]  # from its stderr


async def test_disabled_servers_are_not_started(start: Start) -> None:
    off = McpServerConfig("off", command="/nonexistent/mcp-server", enabled=False)
    tools = await start(off)
    assert state(tools, "off")["state"] == "disabled" and tools.tools() == ()
    result = await tools.call(call("mcp_off__tool"))
    assert result.is_error and "disabled" in result.content


async def test_stop_ends_the_server_processes(start: Start) -> None:
    tools = await start(TIME)
    [process] = time_server_processes()
    await tools.stop()
    assert not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    assert tools.tools() == ()


# --- stdio: a server written with the SDK --------------------------------------------------------------------


def grow(**options: Any) -> McpServerConfig:
    return McpServerConfig("grow", command=sys.executable, args=("-c", GROW), **options)


async def test_a_changed_tool_list_is_picked_up(start: Start) -> None:
    tools = await start(grow(), check_interval=60.0)  # no polling: the server's notification does it
    offered = {spec.name: spec for spec in tools.tools()}
    assert offered["mcp_grow__add_tool"].confirm  # destructiveHint: true
    assert not offered["mcp_grow__slow"].confirm

    added = await tools.call(call("mcp_grow__add_tool", name="lookup.by-id", answer="forty-two"))
    assert not added.is_error, added.content
    await until(lambda: tools.handles("mcp_grow__lookup_by-id") and len(tools.tools()) == 4, "the new tool")
    result = await tools.call(call("mcp_grow__lookup_by-id"))
    assert result.content == "forty-two"

    long_name = "a" * 80
    await tools.call(call("mcp_grow__add_tool", name=long_name, answer="long"))
    await until(lambda: len(tools.tools()) == 5, "the long-named tool")
    [long_tool] = [spec.name for spec in tools.tools() if spec.name.startswith("mcp_grow__aaa")]
    assert len(long_tool) == 64 and long_tool == tool_name("grow", long_name)
    assert (await tools.call(call(long_tool))).content == "long"


async def test_stdio_servers_get_a_minimal_environment_and_their_stderr_is_logged(
        start: Start, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("HEARTH_TEST_SECRET", "do-not-leak")
    caplog.set_level(logging.INFO, logger="hearth.mcp")
    tools = await start(grow(env={"GREETING": "hello"}))
    result = await tools.call(call("mcp_grow__environment"))
    environment = json.loads(result.content)
    assert environment["GREETING"] == "hello"
    assert "PATH" in environment and "LANG" in environment
    assert "HEARTH_TEST_SECRET" not in environment
    await until(lambda: "grow: starting up" in caplog.text, "the server's stderr in the log")
    assert any(r.name == "hearth.mcp" and "grow: starting up" in r.getMessage() for r in caplog.records)


async def test_a_slow_tool_times_out_as_an_error_result(start: Start) -> None:
    tools = await start(grow(timeout=0.3))
    result = await tools.call(call("mcp_grow__slow", seconds=5))
    assert result.is_error and result.error_code == "timeout"
    assert "did not answer within 0.3 s" in result.content
    quick = await tools.call(call("mcp_grow__slow", seconds=0))
    assert quick.content == "done" and state(tools, "grow")["state"] == "ready"


# --- streamable HTTP ---------------------------------------------------------------------------------------------


class HttpServer:
    """mcp-server-time's tools over streamable HTTP in a child process, on 127.0.0.1."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(16)
        self.port = sock.getsockname()[1]
        with sock:
            self.process = subprocess.Popen([sys.executable, "-c", HTTP_SERVER, str(sock.fileno()), self.token],
                                            pass_fds=[sock.fileno()])

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    server = HttpServer("t0ken-for-tests")
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.kill()


def http_config(tmp_path: Path, http_server: HttpServer, token_variable: str = "TIME_TOKEN") -> McpServerConfig:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"remote-time": {
        "url": http_server.url, "headers": {"Authorization": f"Bearer $env:{token_variable}"}, "timeout": 10}}}))
    [config] = load_mcp_config(path, environ={"TIME_TOKEN": http_server.token, "WRONG_TOKEN": "nope"})
    return config


async def test_streamable_http_server_with_a_token_from_the_environment(
        start: Start, tmp_path: Path, http_server: HttpServer) -> None:
    tools = await start(http_config(tmp_path, http_server), connect_timeout=10.0)
    assert state(tools, "remote-time") == {"server": "remote-time", "transport": "http", "state": "ready",
                                           "tools": 2, "last_error": None, "restarts": 0}
    offered = {spec.name for spec in tools.tools()}
    assert offered == {"mcp_remote-time__get_current_time", "mcp_remote-time__convert_time"}
    converted = await tools.call(call("mcp_remote-time__convert_time", source_timezone="Asia/Kolkata",
                                      time="09:00", target_timezone="Asia/Tokyo"))
    assert not converted.is_error, converted.content
    assert json.loads(converted.content)["target"]["datetime"].endswith("T12:30:00+09:00")
    bad = await tools.call(call("mcp_remote-time__get_current_time", timezone="Nowhere/Land"))
    assert bad.is_error and "Invalid timezone" in bad.content


async def test_streamable_http_server_refusing_the_token(
        start: Start, tmp_path: Path, http_server: HttpServer) -> None:
    tools = await start(http_config(tmp_path, http_server, "WRONG_TOKEN"), connect_timeout=10.0)
    row = state(tools, "remote-time")
    assert row["state"] in ("restarting", "failed") and row["last_error"]
    assert tools.tools() == ()


async def test_streamable_http_server_that_goes_away_and_comes_back(
        start: Start, tmp_path: Path, http_server: HttpServer) -> None:
    events = Recorder()
    tools = await start(http_config(tmp_path, http_server), events=events, connect_timeout=5.0)
    assert len(tools.tools()) == 2

    http_server.kill()
    result = await tools.call(call("mcp_remote-time__get_current_time", timezone="UTC"))
    assert result.is_error and result.error_code == "unavailable"
    await until(lambda: not tools.tools(), "the tools to be withdrawn")
    await until(lambda: state(tools, "remote-time")["last_error"] is not None, "the failure to be recorded")
    assert "127.0.0.1" in state(tools, "remote-time")["last_error"]

    http_server.start()
    await until(lambda: len(tools.tools()) == 2, "the server to be reconnected")
    again = await tools.call(call("mcp_remote-time__get_current_time", timezone="UTC"))
    assert not again.is_error and json.loads(again.content)["timezone"] == "UTC"
    assert events.named("mcp.server_down")[0]["server"] == "remote-time"


async def test_an_idle_http_server_that_went_away_is_noticed(
        start: Start, tmp_path: Path, http_server: HttpServer) -> None:
    tools = await start(http_config(tmp_path, http_server), connect_timeout=5.0, check_interval=0.2)
    http_server.kill()
    await until(lambda: not tools.tools(), "the periodic check to notice")
    result = await tools.call(call("mcp_remote-time__get_current_time", timezone="UTC"))
    assert result.is_error and "unavailable" in result.content


# --- configuration -------------------------------------------------------------------------------------------


def write(tmp_path: Path, servers: Any) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return path


def test_config_loads_stdio_and_http_servers_with_environment_references(tmp_path: Path) -> None:
    path = write(tmp_path, {
        "files": {"command": "$env:NODE", "args": ["--root", "$env:ROOT"], "env": {"TOKEN": "$env:FILES_TOKEN"},
                  "cwd": str(tmp_path), "timeout": 5},
        "issues": {"url": "https://mcp.example.com/$env:TENANT/mcp",
                   "headers": {"Authorization": "Bearer $env:ISSUES_TOKEN"}, "type": "http"},
        "later": {"command": "later-server", "env": {"KEY": "$env:NOT_SET_HERE"}, "enabled": False},
    })
    environ = {"NODE": "/usr/bin/node", "ROOT": "/srv", "FILES_TOKEN": "f-secret", "TENANT": "acme",
               "ISSUES_TOKEN": "i-secret"}
    files, issues, later = load_mcp_config(path, environ=environ)

    assert files == McpServerConfig("files", command="/usr/bin/node", args=("--root", "/srv"),
                                    env={"TOKEN": "f-secret"}, cwd=str(tmp_path), timeout=5.0)
    assert files.transport == "stdio"
    assert issues.transport == "http" and issues.timeout == 60.0 and issues.enabled
    assert issues.url == "https://mcp.example.com/acme/mcp"
    assert issues.headers == {"Authorization": "Bearer i-secret"}
    assert not later.enabled  # its unset variable does not matter while it is disabled
    assert "secret" not in repr(files) + repr(issues)


@pytest.mark.parametrize(("servers", "problem"), [
    ({"x": "npx server"}, 'x: expected an object with "command"'),
    ({"x": {}}, 'x: needs "command"'),
    ({"x": {"command": "a", "url": "https://a.example"}}, 'x: has both "command" and "url"'),
    ({"x": {"command": "a", "evn": {}}}, "x: unknown key 'evn'"),
    ({"x": {"command": ""}}, 'x: "command" must be a non-empty string'),
    ({"x": {"command": "a", "args": "--port 1"}}, 'x: "args" must be a list of strings'),
    ({"x": {"command": "a", "env": {"A": 1}}}, 'x: "env" must be an object of strings'),
    ({"x": {"command": "a", "cwd": "/nonexistent/dir"}}, "x: \"cwd\" '/nonexistent/dir' is not a directory"),
    ({"x": {"command": "a", "headers": {}}}, 'x: "headers" is for "url" servers'),
    ({"x": {"command": "a", "timeout": 0}}, 'x: "timeout" must be a positive number'),
    ({"x": {"command": "a", "timeout": True}}, 'x: "timeout" must be a positive number'),
    ({"x": {"command": "a", "enabled": "no"}}, 'x: "enabled" must be true or false'),
    ({"x": {"command": "a", "type": "http"}}, "x: \"type\" is 'http' but \"command\" is set"),
    ({"x": {"url": "https://a.example", "type": "sse"}}, "x: \"type\" 'sse' is not supported"),
    ({"x": {"url": "ftp://a.example"}}, 'x: "url" must be an http:// or https:// address'),
    ({"x": {"url": "https://a.example", "args": []}}, 'x: "args" is for local (stdio) servers'),
    ({"x": {"url": "https://a.example", "headers": {"Authorization": "Bearer $env:MISSING"}}},
     'x: "headers.Authorization" refers to $env:MISSING, which is not set'),
    ({"x": {"command": "$env:MISSING"}}, 'x: "command" refers to $env:MISSING, which is not set'),
    ({"": {"command": "a"}}, "(empty name): a server needs a name"),
    ({"my tools": {"command": "a"}, "my_tools": {"command": "b"}}, "my_tools: its tool names would clash"),
])
def test_config_errors_name_the_server_and_the_fix(tmp_path: Path, servers: Any, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_mcp_config(write(tmp_path, servers), environ={})
    assert caught.value.variable == "HEARTH_MCP_CONFIG"
    assert str(caught.value).startswith(f"HEARTH_MCP_CONFIG: {problem}")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("content", "problem"), [
    (None, "no such file"),
    ("{not json", "not valid JSON (line 1, column 2"),
    ('{"servers": {}}', 'expected an object {"mcpServers"'),
    ('{"mcpServers": []}', 'expected an object {"mcpServers"'),
])
def test_config_file_errors(tmp_path: Path, content: str | None, problem: str) -> None:
    path = tmp_path / "mcp.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match="HEARTH_MCP_CONFIG") as caught:
        load_mcp_config(path, environ={})
    assert f"{path}: {problem}" in str(caught.value)


def test_tool_names_are_safe_short_and_distinct() -> None:
    assert tool_name("time", "get_current_time") == "mcp_time__get_current_time"
    assert tool_name("my server", "do.it/now") == "mcp_my_server__do_it_now"
    first, second = tool_name("s", "x" * 100 + "1"), tool_name("s", "x" * 100 + "2")
    assert len(first) == len(second) == 64 and first != second
    assert first[:55] == second[:55]
    assert tool_name("s", "a.b") != tool_name("s", "a.b", hashed=True)


async def test_results_render_text_and_summarise_other_content() -> None:
    import mcp_types as types

    from hearth.skills.mcp import render

    image = types.ImageContent(data="A" * 16384, mime_type="image/png")
    result = types.CallToolResult(content=[types.TextContent(text="a chart:"), image,
                                           types.ResourceLink(name="report", uri="file:///r.pdf",
                                                              mime_type="application/pdf")])
    assert render(result) == "a chart:\n[image/png, 12 KB]\n[application/pdf: report file:///r.pdf]"
    structured = types.CallToolResult(content=[], structured_content={"answer": 42})
    assert render(structured) == '{"answer": 42}'
