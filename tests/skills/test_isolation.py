"""Third-party skills in real worker processes: handshake, calls, capabilities, confinement, supervision.

Every skill here is a file written into ``tmp_path`` the way an author would write it (``from skill_sdk
import ...``), and every test drives a real ``python -m hearth.skills.worker`` process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable, Collection
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hearth.skills.invoke import invoke
from hearth.skills.isolation import WorkerExecutor, WorkerUnavailable, private_home, sandbox
from hearth.skills.loader import SkillProblemError, WorkerSource
from hearth.skills.services import ContextFactory
from hearth.types import Actor, SkillResult
from tests.support.seed import SEED_TEMPLATE

ECHO = '''\
import asyncio
import os
import resource
import signal
import time
from datetime import timedelta
from pathlib import Path

from skill_sdk import Result, Skill, SkillFailed, intent

if os.environ.get("HOME", "").endswith("stubborn"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class EchoSkill(Skill):
    """Echoes what it is given, and misbehaves on request."""

    name = "echo"

    @intent("sync_echo")
    def sync_echo(self, params):
        return {"got": params.get("text"), "pid": os.getpid()}

    @intent("async_echo")
    async def async_echo(self, params, context):
        await asyncio.sleep(0)
        return Result(text=f"{context.config['greeting']}, {context.user.name}",
                      data={"later": context.now + timedelta(hours=1), "tz": str(context.tz),
                            "channel": context.conversation.channel})

    @intent("refuse")
    def refuse(self, params):
        raise SkillFailed("That slot is taken.", code="slot_taken")

    @intent("boom")
    def boom(self, params):
        return 1 / 0

    @intent("nap", timeout=0.3)
    async def nap(self, params):
        await asyncio.sleep(30)

    @intent("doze", timeout=0.3)
    def doze(self, params):
        time.sleep(1.0)
        return "woke"

    @intent("die")
    def die(self, params):
        os._exit(1)

    @intent("hang")
    async def hang(self, params):
        Path(f"hanging-{params['n']}").touch()
        await asyncio.sleep(30)

    @intent("garble")
    def garble(self, params):
        import gc
        from hearth.skills.worker import Worker

        worker = next(o for o in gc.get_objects() if isinstance(o, Worker))
        worker._out.write(b"this is not json\\n" if params["how"] == "malformed" else b"x" * (17 * 1024 * 1024))
        worker._out.flush()
        time.sleep(10)

    @intent("environment")
    def environment(self, params):
        limits = {name: resource.getrlimit(getattr(resource, name))[0]
                  for name in ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_NOFILE")}
        return {"env": dict(os.environ), "cwd": os.getcwd(), "limits": limits}
'''

NOTES = '''\
import asyncio

from skill_sdk import Skill, intent


class NotesSkill(Skill):
    name = "notes"
    permissions = ("storage",)

    @intent("remember")
    async def remember(self, params, context):
        await context.storage.set("note", params["text"])
        return {"stored": await context.storage.get("note"), "keys": await context.storage.keys()}

    @intent("recall")
    def recall(self, params, context):
        return asyncio.run(context.storage.get("note", "nothing"))  # a sync handler uses a capability too

    @intent("forge")
    async def forge(self, params, context):
        # Code in the worker can bypass its own SDK objects and write any request to the pipe.
        import gc
        from hearth.skills.worker import Worker

        worker = next(o for o in gc.get_objects() if isinstance(o, Worker))
        return await worker.capability(next(iter(worker.calls)), params["capability"], params["method"],
                                       params.get("args", []), {})
'''

NET = '''\
import socket

from skill_sdk import Skill, intent


class NetSkill(Skill):
    name = "net"
    permissions = ("network",)

    @intent("connect")
    def connect(self, params):
        try:
            with socket.create_connection(("127.0.0.1", params["port"]), timeout=2):
                return {"connected": True}
        except OSError as exc:
            return {"connected": False, "error": str(exc)}

    @intent("fetch")
    async def fetch(self, params, context):
        response = await context.http.request("GET", params["url"])
        return {"status": response.status, "body": response.text}
'''


class MemoryStore:
    """The key-value half of ``SkillStore``, in a dict."""

    def __init__(self) -> None:
        self.kv: dict[tuple[str, int, str], Any] = {}

    async def states(self) -> dict[str, Any]:
        return {}

    async def set_state(self, name: str, **changes: Any) -> Any:
        raise NotImplementedError

    async def kv_get(self, skill: str, user_id: int, key: str) -> Any:
        return self.kv.get((skill, user_id, key))

    async def kv_set(self, skill: str, user_id: int, key: str, value: Any) -> None:
        self.kv[(skill, user_id, key)] = value

    async def kv_delete(self, skill: str, user_id: int, key: str) -> None:
        self.kv.pop((skill, user_id, key), None)

    async def kv_keys(self, skill: str, user_id: int, prefix: str = "") -> list[str]:
        return sorted(k for s, u, k in self.kv if (s, u) == (skill, user_id) and k.startswith(prefix))


Make = Callable[..., WorkerExecutor]


@pytest.fixture
def make(tmp_path: Path) -> Make:
    """Writes a skill file and makes its executor; the test stops it."""

    def build(code: str, *, file: str = "skill.py", granted: Collection[str] = (), home: str | None = None,
              **options: Any) -> WorkerExecutor:
        path = tmp_path / "skills" / file
        path.parent.mkdir(exist_ok=True)
        path.write_text(code)
        source = WorkerSource("file", str(path), "folder")
        where = tmp_path / "data" / home if home else private_home(tmp_path / "data", source)
        return WorkerExecutor(source, home=where, granted=lambda: granted, **options)

    return build


@pytest.fixture
async def executors() -> AsyncIterator[list[WorkerExecutor]]:
    """Executors to stop after the test; then no worker process may be left, not even a zombie."""
    started: list[WorkerExecutor] = []
    yield started
    for executor in started:
        await executor.stop()
    left = [p for p in psutil.Process().children(recursive=True) if "hearth.skills.worker" in " ".join(p.cmdline())]
    assert left == []


async def call(executor: WorkerExecutor, intent: str, params: dict[str, Any] | None = None, *,
               capabilities: Collection[str] = (), store: MemoryStore | None = None,
               session: aiohttp.ClientSession | None = None) -> SkillResult:
    """One call through ``invoke`` (timeouts and all), with a context built as the registry builds it."""
    manifest = executor.manifest
    assert manifest is not None
    context = ContextFactory(store or MemoryStore(), None, None, session).build(  # type: ignore[arg-type]
        skill=manifest.name, actor=Actor(7, "Ada", timezone="Europe/Paris"), conversation_id="c1", channel="web",
        config={"greeting": "Hello"}, capabilities=capabilities)
    return await invoke(executor, manifest.name, manifest.intents[intent], "call-1", f"{manifest.name}__{intent}",
                        params or {}, context)


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():
            await asyncio.sleep(0.02)


# --- handshake and calls ---------------------------------------------------------------------------------


async def test_the_seed_template_runs_unchanged(make: Make, executors: list[WorkerExecutor]) -> None:
    executor = make(SEED_TEMPLATE, file="calendar.py")
    executors.append(executor)
    manifest = await executor.handshake()
    assert manifest.name == "calendar"
    assert list(manifest.intents) == ["schedule_meeting"]
    assert manifest.intents["schedule_meeting"].handler_name == "handle_schedule"

    result = await call(executor, "schedule_meeting", {"start": "tomorrow", "duration": 30})
    assert not result.is_error
    assert json.loads(result.content) == {"status": "confirmed", "meeting_id": "12345"}


async def test_sync_and_async_handlers_failures_and_crashes(make: Make, executors: list[WorkerExecutor],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hearth.skills.worker")
    executor = make(ECHO)
    executors.append(executor)
    await executor.handshake()

    synced = await call(executor, "sync_echo", {"text": "hi"})
    assert json.loads(synced.content) == {"got": "hi", "pid": executor.pid}

    awaited = await call(executor, "async_echo")
    assert awaited.display == "Hello, Ada"
    data = json.loads(awaited.content)
    assert data["tz"] == "Europe/Paris"
    assert data["channel"] == "web"
    assert data["later"].endswith(("+01:00", "+02:00"))  # a datetime, both ways over the pipe

    refused = await call(executor, "refuse")
    assert (refused.is_error, refused.error_code, refused.content) == (True, "slot_taken", "That slot is taken.")

    crashed = await call(executor, "boom")
    assert (crashed.is_error, crashed.error_code) == (True, "skill_crashed")
    assert "SkillCrashed" in crashed.content
    # The worker's stderr (here the handler's traceback) is hearth's log, line by line, under the skill's name.
    await eventually(lambda: any(r.name == "hearth.skills.worker" and r.getMessage().startswith("echo[")
                                 and "ZeroDivisionError" in r.getMessage() for r in caplog.records))


async def test_a_handler_past_its_timeout_is_cancelled_and_the_worker_stays(make: Make,
                                                                              executors: list[WorkerExecutor]) -> None:
    executor = make(ECHO)
    executors.append(executor)
    await executor.handshake()
    pid = executor.pid

    for intent in ("nap", "doze"):  # async: cancelled in the worker; sync: its thread finishes on its own
        result = await call(executor, intent)
        assert (result.is_error, result.error_code) == (True, "timeout")
        after = await call(executor, "sync_echo", {"text": intent})
        assert json.loads(after.content) == {"got": intent, "pid": pid}
    assert executor.available


async def test_a_cancelled_call_that_does_not_stop_gets_its_worker_replaced(
        make: Make, executors: list[WorkerExecutor]) -> None:
    executor = make(ECHO, stuck_after=0.2)
    executors.append(executor)
    await executor.handshake()
    stuck = executor.pid

    result = await call(executor, "doze")  # a thread cannot be interrupted: it sleeps for 1 s after its 0.3 s
    assert result.error_code == "timeout"
    await eventually(lambda: executor.pid != stuck)
    again = await call(executor, "sync_echo", {"text": "back"})
    assert json.loads(again.content)["got"] == "back"


async def test_a_worker_that_exits_mid_call_is_restarted(make: Make, executors: list[WorkerExecutor]) -> None:
    executor = make(ECHO)
    executors.append(executor)
    await executor.handshake()
    first = executor.pid

    died = await call(executor, "die")
    assert (died.is_error, died.error_code) == (True, "skill_crashed")
    assert "WorkerDied" in died.content
    assert not executor.available

    again = await call(executor, "sync_echo", {"text": "back"})  # waits for the restart (0.5 s backoff)
    assert json.loads(again.content)["got"] == "back"
    assert executor.pid not in (None, first)


async def test_a_killed_worker_fails_every_call_in_flight_then_restarts(make: Make, tmp_path: Path,
                                                                        executors: list[WorkerExecutor]) -> None:
    executor = make(ECHO, home="killed")
    executors.append(executor)
    await executor.handshake()
    victim = executor.pid
    assert victim is not None

    calls = [asyncio.create_task(call(executor, "hang", {"n": n})) for n in range(2)]
    await eventually(lambda: all((tmp_path / "data" / "killed" / f"hanging-{n}").exists() for n in range(2)))
    os.kill(victim, signal.SIGKILL)
    async with asyncio.timeout(5):
        results = await asyncio.gather(*calls)
    assert [(r.is_error, r.error_code) for r in results] == [(True, "skill_crashed")] * 2
    assert not psutil.pid_exists(victim)

    again = await call(executor, "sync_echo", {"text": "back"})
    assert json.loads(again.content)["got"] == "back"


async def test_a_malformed_or_over_long_line_from_the_worker_replaces_it(
        make: Make, executors: list[WorkerExecutor], caplog: pytest.LogCaptureFixture) -> None:
    executor = make(ECHO)
    executors.append(executor)
    await executor.handshake()

    for how, logged in (("malformed", "malformed message"), ("over-long", "line longer than 16 MiB")):
        before = executor.pid
        garbled = await call(executor, "garble", {"how": how})
        assert (garbled.is_error, garbled.error_code) == (True, "skill_crashed")
        assert logged in caplog.text
        again = await call(executor, "sync_echo", {"text": how})
        assert json.loads(again.content)["got"] == how
        assert executor.pid != before


async def test_stop_leaves_no_process_even_when_sigterm_is_ignored(make: Make) -> None:
    executor = make(ECHO, home="stubborn")
    await executor.handshake()
    pid = executor.pid
    assert pid is not None
    await call(executor, "sync_echo")

    await executor.stop(grace=0.5)
    assert not psutil.pid_exists(pid)
    assert not executor.available
    with pytest.raises(WorkerUnavailable):
        await executor.run(executor.manifest.intents["sync_echo"], {}, None)  # type: ignore[arg-type,union-attr]


# --- problems ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "problem", "fix"), [
    ("from skill_sdk import Skill, intent\n\nclass Broken(Skill)\n    pass\n", "syntax error at line 3",
     "fix the syntax at line 3"),
    ("import os\n", "defines no Skill subclass", "class MySkill(Skill)"),
], ids=["syntax-error", "no-skill-class"])
async def test_a_broken_skill_is_a_problem_naming_the_file_and_the_fix(make: Make, executors: list[WorkerExecutor],
                                                                       code: str, problem: str, fix: str) -> None:
    executor = make(code, file="broken.py")
    executors.append(executor)
    with pytest.raises(SkillProblemError) as raised:
        await executor.handshake()
    assert raised.value.problem.source.endswith("skills/broken.py")
    assert problem in raised.value.problem.problem
    assert fix in raised.value.problem.fix
    assert not executor.available


# --- confinement --------------------------------------------------------------------------------------------


async def test_the_worker_sees_no_secrets_and_lives_in_its_own_directory(
        make: Make, tmp_path: Path, executors: list[WorkerExecutor], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HEARTH_ADMIN_TOKEN", "HEARTH_DATABASE_URL", "ADMIN_TOKEN", "TELEGRAM_BOT_TOKEN", "AI_API_KEY"):
        monkeypatch.setenv(name, "s3cret")
    executor = make(ECHO, home="private")
    executors.append(executor)
    await executor.handshake()

    seen = json.loads((await call(executor, "environment")).content)
    home = tmp_path / "data" / "private"
    assert not [k for k in seen["env"] if k.startswith(("HEARTH_", "AI_", "TELEGRAM_", "ADMIN_"))]
    assert "s3cret" not in json.dumps(seen["env"])
    assert seen["env"]["HOME"] == str(home)
    assert seen["cwd"] == str(home.resolve())
    assert home.stat().st_mode & 0o777 == 0o700
    assert seen["limits"] == {"RLIMIT_AS": 1024**3, "RLIMIT_CORE": 0, "RLIMIT_NOFILE": 256}


async def test_storage_needs_a_declaration_and_a_grant_and_hearth_checks_every_request(
        make: Make, executors: list[WorkerExecutor], caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    store.kv[("notes", 7, "secret")] = "hidden"
    grants = {"storage"}
    executor = make(NOTES, granted=grants)
    executors.append(executor)
    await executor.handshake()

    stored = await call(executor, "remember", {"text": "milk"}, capabilities={"storage"}, store=store)
    assert json.loads(stored.content) == {"stored": "milk", "keys": ["note", "secret"]}
    assert store.kv[("notes", 7, "note")] == "milk"
    recalled = await call(executor, "recall", capabilities={"storage"}, store=store)
    assert recalled.content == "milk"
    # Code in the worker may write any request to the pipe: hearth allows only the capability's own methods.
    private = await call(executor, "forge", {"capability": "storage", "method": "_key", "args": ["secret"]},
                         capabilities={"storage"}, store=store)
    assert (private.is_error, private.error_code) == (True, "capability_denied")

    grants.clear()  # revoked: denied, whether or not the call's context still carries the capability
    for capabilities in ((), {"storage"}):
        denied = await call(executor, "remember", {"text": "eggs"}, capabilities=capabilities, store=store)
        assert (denied.is_error, denied.error_code) == (True, "capability_denied")
        assert "hearth skills grant notes storage" in denied.content
        forged = await call(executor, "forge", {"capability": "storage", "method": "get", "args": ["secret"]},
                            capabilities=capabilities, store=store)
        assert (forged.is_error, forged.error_code) == (True, "capability_denied")
        assert "hidden" not in forged.content
    assert store.kv == {("notes", 7, "note"): "milk", ("notes", 7, "secret"): "hidden"}
    assert "which its call may not use: refused" in caplog.text


@pytest.fixture
async def tcp_server() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP server on 127.0.0.1 that counts its connections."""
    seen: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(1)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], seen
    server.close()
    await server.wait_closed()


@pytest.fixture
async def web_server() -> AsyncIterator[str]:
    async def greeting(request: web.Request) -> web.Response:
        return web.Response(text="hello from 127.0.0.1")

    app = web.Application()
    app.router.add_get("/greeting", greeting)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/greeting"))
    await server.close()


async def test_without_network_the_worker_cannot_open_a_socket(make: Make, executors: list[WorkerExecutor],
                                                               tcp_server: tuple[int, list[int]]) -> None:
    port, seen = tcp_server
    with socket.create_connection(("127.0.0.1", port)):  # reachable from hearth's own process
        pass
    await eventually(lambda: len(seen) == 1)
    executor = make(NET)
    executors.append(executor)
    await executor.handshake()

    tried = json.loads((await call(executor, "connect", {"port": port})).content)
    assert tried["connected"] is False
    assert "unreachable" in tried["error"].lower()
    assert len(seen) == 1
    fetched = await call(executor, "fetch", {"url": f"http://127.0.0.1:{port}/"})
    assert fetched.error_code == "capability_denied"


async def test_with_network_granted_hearth_performs_its_http(make: Make, executors: list[WorkerExecutor],
                                                             web_server: str,
                                                             tcp_server: tuple[int, list[int]]) -> None:
    port, _ = tcp_server
    grants: set[str] = {"network"}
    executor = make(NET, granted=grants)
    executors.append(executor)
    await executor.handshake()
    async with aiohttp.ClientSession() as session:
        fetched = await call(executor, "fetch", {"url": web_server}, capabilities={"network"}, session=session)
    assert json.loads(fetched.content) == {"status": 200, "body": "hello from 127.0.0.1"}
    assert json.loads((await call(executor, "connect", {"port": port}, capabilities={"network"})).content) == {
        "connected": True}

    grants.clear()  # revoked: the worker that had the network is replaced by a confined one before the next call
    networked = executor.pid
    assert json.loads((await call(executor, "connect", {"port": port})).content)["connected"] is False
    assert executor.pid != networked


async def test_no_network_namespace_means_no_start_unless_network_is_granted(
        make: Make, executors: list[WorkerExecutor], monkeypatch: pytest.MonkeyPatch) -> None:
    real = sandbox._libc
    failing: Callable[..., int] = lambda *args: -1  # noqa: E731
    monkeypatch.setattr(sandbox, "_libc", lambda name: failing if name == "unshare" else real(name))

    confined = make(NET)
    executors.append(confined)
    with pytest.raises(SkillProblemError) as raised:
        await confined.handshake()
    assert "network namespace" in raised.value.problem.problem
    assert "user namespaces" in raised.value.problem.fix
    assert raised.value.problem.source.endswith("skill.py")

    granted = make(NET, file="net2.py", granted={"network"})
    executors.append(granted)
    assert (await granted.handshake()).name == "net"


def test_private_homes_differ_per_source(tmp_path: Path) -> None:
    one = private_home(tmp_path, WorkerSource("file", str(tmp_path / "a.py"), "folder"))
    two = private_home(tmp_path, WorkerSource("package", str(tmp_path / "a"), "folder"))
    three = private_home(tmp_path, WorkerSource("entry_point", "acme.skills:Weather", "package"))
    assert len({one, two, three}) == 3
    assert one.parent == tmp_path / "skill-homes"
    assert three.name.startswith("skills-")
