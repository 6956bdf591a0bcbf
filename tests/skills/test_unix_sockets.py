"""A worker without ``network`` cannot reach the host's Unix-domain sockets; one granted ``network`` can.

The sockets are real listeners made by the test, one in a directory of its own under ``/tmp`` and one in
hearth's data directory (beside the skill's private home), and every worker is a real
``python -m hearth.skills.worker`` process confined as hearth confines it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import pytest

from hearth.skills.invoke import invoke
from hearth.skills.isolation import WorkerExecutor, private_home, sandbox
from hearth.skills.loader import SkillProblemError, WorkerSource
from hearth.skills.services import ContextFactory
from hearth.types import Actor, SkillResult

SOCKETS = '''
import asyncio
import socket

from skill_sdk import Skill, SkillFailed, intent


class SocketSkill(Skill):
    name = "sockets"
    permissions = ("network",)

    @intent("connect")
    def connect(self, params):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.settimeout(2)
                client.connect(params["path"])
                return {"connected": True}
        except OSError as exc:
            raise SkillFailed(f"{type(exc).__name__}: {exc}", code="unreachable") from exc

    @intent("send")
    def send(self, params):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
                client.sendto(b"hello", params["path"])
                return {"sent": True}
        except OSError as exc:
            raise SkillFailed(f"{type(exc).__name__}: {exc}", code="unreachable") from exc

    @intent("pairs")
    async def pairs(self, params):
        reader, writer = await asyncio.open_connection(sock=socket.socketpair()[0])  # asyncio's own kind
        writer.close()
        try:
            socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)  # could send to any path
            return {"stream": True, "datagram": True}
        except OSError as exc:
            return {"stream": True, "datagram": False, "error": str(exc)}
'''

Make = Callable[..., WorkerExecutor]


class Listener:
    """A Unix stream socket that counts the connections it accepts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.accepted = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Listener:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            writer.close()

        self._server = await asyncio.start_unix_server(accept, path=str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory right under /tmp: a socket's path must stay under 108 bytes, which ``tmp_path`` may not."""
    where = Path(tempfile.mkdtemp(prefix="hearth-unix-", dir="/tmp"))
    yield where
    shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
async def make(short_tmp: Path) -> AsyncIterator[Make]:
    """Writes the skill and makes an executor whose data directory is ``short_tmp/data``; stops them after."""
    made: list[WorkerExecutor] = []

    def build(*, granted: Collection[str] = (), file: str = "sockets.py") -> WorkerExecutor:
        path = short_tmp / "skills" / file
        path.parent.mkdir(exist_ok=True)
        path.write_text(SOCKETS)
        source = WorkerSource("file", str(path), "folder")
        executor = WorkerExecutor(source, home=private_home(short_tmp / "data", source), granted=lambda: granted)
        made.append(executor)
        return executor

    yield build
    for executor in made:
        await executor.stop()


async def call(executor: WorkerExecutor, intent: str, params: dict[str, Any], *,
               capabilities: Collection[str] = ()) -> SkillResult:
    manifest = executor.manifest
    assert manifest is not None
    context = ContextFactory(None, None, None, None).build(  # type: ignore[arg-type]
        skill=manifest.name, actor=Actor(7, "Ada"), conversation_id="c1", channel="web", config={},
        capabilities=capabilities)
    return await invoke(executor, manifest.name, manifest.intents[intent], "call-1", f"{manifest.name}__{intent}",
                        params, context)


async def test_without_network_no_unix_socket_is_reachable(make: Make, short_tmp: Path) -> None:
    data = short_tmp / "data"
    data.mkdir()
    executor = make()
    await executor.handshake()
    assert executor.home.parent.parent == data  # the socket below sits beside the skill's own directory
    elsewhere = short_tmp / "run"
    elsewhere.mkdir()
    async with Listener(elsewhere / "db.sock") as in_tmp, Listener(data / "hearth.sock") as in_data:
        for listener in (in_tmp, in_data):
            for intent in ("connect", "send"):
                refused = await call(executor, intent, {"path": str(listener.path)})
                assert (refused.is_error, refused.error_code) == (True, "unreachable")
                assert refused.content == "PermissionError: [Errno 1] Operation not permitted"
        assert (in_tmp.accepted, in_data.accepted) == (0, 0)

    pairs = json.loads((await call(executor, "pairs", {})).content)
    assert pairs["stream"] is True
    assert pairs["datagram"] is False
    assert "Operation not permitted" in pairs["error"]


async def test_with_network_unix_sockets_are_reachable(make: Make, short_tmp: Path) -> None:
    executor = make(granted={"network"})
    await executor.handshake()
    async with Listener(short_tmp / "db.sock") as listener:
        reached = await call(executor, "connect", {"path": str(listener.path)}, capabilities={"network"})
        assert json.loads(reached.content) == {"connected": True}
        await asyncio.sleep(0.1)
        assert listener.accepted == 1
    pairs = json.loads((await call(executor, "pairs", {}, capabilities={"network"})).content)
    assert pairs == {"stream": True, "datagram": True}


async def test_without_the_filter_a_skill_without_network_does_not_start(
        make: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    real = sandbox._libc
    refused: Callable[..., int] = lambda *args: -1  # noqa: E731
    monkeypatch.setattr(sandbox, "_libc", lambda name: refused if name == "prctl" else real(name))

    with pytest.raises(SkillProblemError) as raised:
        await make().handshake()
    assert "seccomp filter" in raised.value.problem.problem
    assert "seccomp" in raised.value.problem.fix

    assert (await make(granted={"network"}, file="granted.py").handshake()).name == "sockets"
