"""``TestAssistant``: a real hearth in a test, for skill authors.

It builds the same runtime as ``hearth serve`` (SQLite in a temporary folder, the real inbox, dialog,
agent, skill registry and model router), adds your skill classes to it in this process, and talks to it
the way a channel does: ``send`` a message, get the reply. The model is a ``ModelSimulator`` on
127.0.0.1 that you script; hearth opens no port of its own.

    from hearth.testing import TestAssistant, Turn
    from weather import WeatherSkill

    async def test_weather(tmp_path):
        async with TestAssistant(skills=[WeatherSkill], tmp_path=tmp_path, timezone="Europe/Oslo") as bot:
            reply = await bot.send("weather greet Ada")          # a template match: no model needed
            assert reply.text == "Hello, Ada!"
            await bot.config("weather", {"greeting": "Hi"})      # checked against config_schema
            await bot.grant("weather", "storage")                # what an admin grants
            asked = await bot.send("weather remember buy milk")  # side effects: hearth asks first
            assert asked.buttons == ("Yes", "No")
            done = await bot.press("Yes")
            bot.model.script(Turn(tool_calls=[("weather__greet", {"who": "Grace"})]), Turn(text="Done!"))
            assert (await bot.send("say hi to Grace for me")).text == "Done!"

Without an async test runner, wrap the test in ``asyncio.run(...)``. Skills are added as if they came from
a package (origin ``"test"``): they get a capability only when they ask for it in ``permissions`` *and*
it was granted with ``bot.grant``, as in production. Built-in skills are there too unless
``builtins=False``.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

from hearth.core.identity import actor_for
from hearth.gateway.base import Outbound
from hearth.runtime import Runtime
from hearth.sdk import Skill
from hearth.settings import Settings
from hearth.skills.invoke import InProcess
from hearth.skills.loader import manifest_of
from hearth.skills.registry import LoadedSkill
from hearth.types import Actor, Envelope
from hearth.types import Reply as ChannelReply
from hearth.web.admin import config_problems

from .modelsim import ModelSimulator

__all__ = ["Reply", "TestAssistant"]


@dataclass(frozen=True)
class Reply:
    """hearth's answer to one message: its text, the labels of the buttons it offered (``("Yes", "No")``
    when it asks for a confirmation) and the error code when the turn failed."""

    text: str
    buttons: tuple[str, ...]
    conversation: str
    error: str | None
    final: ChannelReply


class TestAssistant:
    """hearth with your skills, for tests: ``async with TestAssistant(skills=[...]) as bot``.

    ``skills`` are Skill classes (built with no arguments) or instances; ``tmp_path`` is where the
    database goes (a temporary folder, removed at the end, when not given); ``timezone`` is the test
    user's. ``bot.model`` is the scripted model server, ``bot.runtime`` the whole runtime.
    """

    __test__ = False  # not a test class, whatever its name says to pytest

    def __init__(self, skills: Iterable[type[Skill] | Skill] = (), *, tmp_path: str | Path | None = None,
                 timezone: str = "UTC", user: str = "tester", role: str = "user", builtins: bool = True) -> None:
        ZoneInfo(timezone)  # an unknown zone fails here, not in the middle of a turn
        self._skills = list(skills)
        self._tmp_path = Path(tmp_path) if tmp_path is not None else None
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        self._timezone = timezone
        self._user = user
        self._role = role
        self._builtins = builtins
        self.model = ModelSimulator()
        self.notices: list[str] = []
        """Messages skills sent on their own (``context.messages.send``), in order."""
        self._runtime: Runtime | None = None
        self._actor: Actor | None = None
        self._conversation: str | None = None
        self._last: Reply | None = None

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def __aenter__(self) -> TestAssistant:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        if self._tmp_path is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="hearth-test-")
            self._tmp_path = Path(self._temporary.name)
        await self.model.start()
        try:
            runtime = await Runtime.create(_isolated_settings(self._tmp_path / "hearth", self.model.url))
            self._runtime = runtime
            builtin = [s.manifest.name for s in runtime.skills.skills()]
            for skill in self._skills:
                self._add(runtime, skill)
            runtime.messenger.add_deliverer("test", self)
            # the test user first: then start-up makes no first admin (and writes no admin.key)
            user = await runtime.users.create_user(self._user, self._role, self._timezone)
            self._actor = actor_for(user, channel="test")
            await runtime.start(serving=False)
            if not self._builtins:
                for name in builtin:
                    await runtime.skills.set_enabled(name, False)
        except BaseException:
            await self.close()
            raise

    def _add(self, runtime: Runtime, skill: type[Skill] | Skill) -> None:
        instance = skill() if isinstance(skill, type) else skill
        cls = type(instance)
        source = f"{cls.__module__}.{cls.__qualname__}"
        before = len(runtime.skills.problems)
        runtime.skills.add(LoadedSkill(manifest_of(cls, source), InProcess(instance), "test", source))
        if len(runtime.skills.problems) > before:
            raise ValueError(str(runtime.skills.problems[-1]))

    async def close(self) -> None:
        if self._runtime is not None:
            await self._runtime.aclose()
            self._runtime = None
        await self.model.stop()
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("use TestAssistant in `async with`, or await start() first")
        return self._runtime

    @property
    def actor(self) -> Actor:
        """The test user, as hearth sees them."""
        if self._actor is None:
            raise RuntimeError("use TestAssistant in `async with`, or await start() first")
        return self._actor

    # --- talking --------------------------------------------------------------------------------------------

    async def send(self, text: str) -> Reply:
        """Send ``text`` in the current conversation (the first message starts one) and wait for the answer."""
        return await self._submit(text, None)

    async def press(self, label: str) -> Reply:
        """Press the button labelled ``label`` (e.g. "Yes") of the last reply."""
        last = self._last
        buttons = {b.label: b for b in (last.final.buttons if last else ())}
        if label not in buttons:
            offered = ", ".join(buttons) or "none"
            raise AssertionError(f"the last reply offers no button {label!r} (its buttons: {offered})")
        return await self._submit(label, buttons[label].id)

    def new_conversation(self) -> None:
        """The next message starts a new conversation."""
        self._conversation = None
        self._last = None

    async def _submit(self, text: str, action: str | None) -> Reply:
        envelope = Envelope(id=uuid.uuid4().hex, channel="test", sender=self.actor, text=text,
                            conversation=self._conversation, action=action)
        submission = await self.runtime.inbox.submit(envelope)
        final: ChannelReply | None = None
        async for reply in submission.replies():
            if reply.final:
                final = reply
        if final is None:  # pragma: no cover - the inbox always ends with a final reply
            raise AssertionError(f"no answer to {text!r}")
        self._conversation = submission.conversation
        self._last = Reply(final.text, tuple(b.label for b in final.buttons), submission.conversation,
                           final.error.code if final.error else None, final)
        return self._last

    # --- what an admin does ---------------------------------------------------------------------------------

    async def config(self, skill: str, config: Mapping[str, Any]) -> None:
        """Set a skill's config (as ``hearth skills config`` does); ``ValueError`` if its schema refuses it."""
        manifest = self.runtime.skills.get(skill).manifest
        problems = config_problems(manifest.config_schema, config)
        if problems:
            raise ValueError(f"invalid config for {skill}: " + "; ".join(problems))
        await self.runtime.skills.configure(skill, config)

    async def grant(self, skill: str, *capabilities: str) -> None:
        """Grant capabilities (``"storage"``, ``"network"``, ``"messages"``, ``"files"``) to a skill."""
        await self.runtime.skills.grant(skill, capabilities)

    async def revoke(self, skill: str, *capabilities: str) -> None:
        await self.runtime.skills.grant(skill, capabilities, revoke=True)

    async def enable(self, skill: str, enabled: bool = True) -> None:
        await self.runtime.skills.set_enabled(skill, enabled)

    async def scheduled(self) -> Sequence[Mapping[str, Any]]:
        """Messages skills scheduled for the test user (``context.messages.send_later``): id, text, at."""
        return await self.runtime.messenger.scheduled(self.actor.user_id)

    async def deliver(self, message: Outbound) -> bool:
        """The test channel: what skills send on their own lands in ``notices``."""
        self.notices.append(message.text)
        return True


def _isolated_settings(data_dir: Path, model_url: str) -> Settings:
    """Settings from their defaults and nothing else: no environment variable or ``.env`` file of the
    machine running the tests (a ``HEARTH_DATABASE_URL``, say) can reach into the test."""
    values: dict[str, Any] = {name: field.get_default(call_default_factory=True)
                              for name, field in Settings.model_fields.items()}
    values.update(hearth_data_dir=data_dir, ai_model_endpoint=model_url, ai_model_retries=0,
                  ai_model_connect_timeout=2.0, ai_model_first_token_timeout=10.0, ai_model_total_timeout=30.0,
                  hearth_host="127.0.0.1", hearth_http_port=0, hearth_ws_port=0, hearth_admin_port=0,
                  message_retention_days=0)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
