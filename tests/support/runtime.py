"""A composed runtime (real SQLite store, real router and providers) without the HTTP server, and
``send``: submit a message through the inbox and collect its answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hearth.core.identity import actor_for
from hearth.runtime import Runtime
from hearth.store import Database, upgrade
from hearth.testing.modelsim import ModelSimulator
from hearth.types import Actor, Envelope, Reply, SkillCall, SkillResult, ToolSpec
from tests.support.hearth import make_settings


@dataclass
class Outcome:
    conversation: str
    message_id: int
    deltas: list[str]
    final: Reply

    @property
    def text(self) -> str:
        return self.final.text


async def send(runtime: Runtime, actor: Actor, text: str, *, conversation: str | None = None,
               envelope_id: str | None = None) -> Outcome:
    envelope = Envelope(id=envelope_id or uuid.uuid4().hex, channel="test", sender=actor,
                        text=text, conversation=conversation)
    submission = await runtime.inbox.submit(envelope)
    deltas: list[str] = []
    final = None
    async for reply in submission.replies():
        if reply.final:
            final = reply
        else:
            deltas.append(reply.text)
    assert final is not None
    return Outcome(submission.conversation, submission.message_id, deltas, final)


@dataclass
class ScriptedTools:
    """A tool registry for tests: tools are plain async functions of the arguments."""

    tools: dict[str, tuple[ToolSpec, Callable[..., Any]]] = field(default_factory=dict)
    calls: list[SkillCall] = field(default_factory=list)

    def add(self, name: str, handler: Callable[..., Any], **properties: Any) -> None:
        schema = {"type": "object", "properties": properties, "required": list(properties)}
        self.tools[name] = (ToolSpec(name, f"test tool {name}", schema), handler)

    def tools_for(self, actor: Actor) -> Sequence[ToolSpec]:
        return [spec for spec, _ in self.tools.values()]

    # the ToolSource side: registered with the runtime's skill registry, next to the skills
    def tools_list(self) -> Sequence[ToolSpec]:
        return self.tools_for(Actor(0, "any"))

    def handles(self, name: str) -> bool:
        return name in self.tools

    async def call(self, call: SkillCall) -> SkillResult:
        self.calls.append(call)
        _, handler = self.tools[call.name]
        return SkillResult(call.id, call.name, str(await handler(**call.arguments)))


class _Source:
    """Adapts ScriptedTools to the registry's ToolSource protocol."""

    def __init__(self, scripted: ScriptedTools) -> None:
        self._scripted = scripted

    def tools(self) -> Sequence[ToolSpec]:
        return self._scripted.tools_list()

    def handles(self, name: str) -> bool:
        return self._scripted.handles(name)

    async def call(self, call: SkillCall) -> SkillResult:
        return await self._scripted.call(call)


@pytest.fixture
def tools() -> ScriptedTools:
    return ScriptedTools()


@pytest.fixture
async def runtime_factory(sim: ModelSimulator, tmp_path: Path, tools: ScriptedTools):  # type: ignore[no-untyped-def]
    """Builds runtimes on one data directory (so a 'restart' is a second build); closes them all."""
    made: list[Runtime] = []

    async def build(**overrides: Any) -> Runtime:
        values: dict[str, Any] = {"ai_model_endpoint": sim.url, "ai_model_retries": 0}
        values.update(overrides)
        runtime = await Runtime.create(make_settings(tmp_path / "data", **values))
        runtime.skills.add_source(_Source(tools))
        made.append(runtime)
        return runtime

    yield build
    for runtime in made:
        await runtime.aclose()


@pytest.fixture
async def runtime(runtime_factory) -> Runtime:  # type: ignore[no-untyped-def]
    runtime = await runtime_factory()
    await runtime.start(serving=False)
    return runtime


@pytest.fixture
async def admin(runtime: Runtime) -> Actor:
    user = await runtime.users.get_user_by_name("admin")
    assert user is not None
    return actor_for(user, channel="test")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated SQLite database in the test's folder (``tests/store`` overrides it to run on PostgreSQL too)."""
    database = Database(f"sqlite:///{tmp_path / 'hearth.db'}")
    await upgrade(database)
    yield database
    await database.aclose()
