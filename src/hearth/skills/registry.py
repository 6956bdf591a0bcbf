"""The skill registry: what skills are loaded, which are enabled, and how their intents are reached.

It is the control plane's tool registry (``tools_for``/``call``: every enabled intent and every
available MCP tool, offered to the model with a JSON schema built from the intent's slots) and its
deterministic router (``match``: commands and templates, no model needed). Enabling or disabling a skill
takes effect at once and is kept in the database; so are each skill's config and granted capabilities.

Tool names are ``<skill>__<intent>`` for skills and ``mcp_<server>__<tool>`` for MCP tools.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Protocol

from hearth.errors import InvalidRequest, NotFound
from hearth.sdk import CAPABILITIES, IntentSpec
from hearth.sdk.slots import parse_slots
from hearth.types import Actor, IntentMatch, SkillCall, SkillResult, ToolSpec, utcnow

from .invoke import Executor, invoke, jsonable
from .matcher import Candidate, Matcher, describe_skill, is_help, slot_prompt, tool_name
from .services import ContextFactory, SkillStateLike, SkillStore, zone

_log = logging.getLogger("hearth.skills")


@dataclass(frozen=True)
class Manifest:
    """What a skill declares about itself (class attributes, or its worker's handshake)."""

    name: str
    version: str
    description: str
    permissions: tuple[str, ...]
    config_schema: Mapping[str, Any]
    intents: Mapping[str, IntentSpec]


@dataclass
class LoadedSkill:
    manifest: Manifest
    executor: Executor
    origin: str  # "builtin" | "package" | "folder"
    source: str
    enabled: bool = True
    config: dict[str, Any] = field(default_factory=dict)
    granted: frozenset[str] = frozenset()

    @property
    def trusted(self) -> bool:
        return self.origin == "builtin"

    @property
    def capabilities(self) -> frozenset[str]:
        """Built-ins get what they ask for; others what they ask for *and* were granted."""
        asked = frozenset(self.manifest.permissions)
        return asked if self.trusted else asked & self.granted


class ToolSource(Protocol):
    """Tools that do not come from skills (MCP servers)."""

    def tools(self) -> Sequence[ToolSpec]: ...
    def handles(self, name: str) -> bool: ...
    async def call(self, call: SkillCall) -> SkillResult: ...


@dataclass(frozen=True)
class SkillProblem:
    """A skill that could not be loaded: where, what is wrong, and how to fix it."""

    source: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.source}: {self.problem} — {self.fix}"


class SkillRegistry:
    def __init__(self, repository: SkillStore, contexts: ContextFactory) -> None:
        self._repository = repository
        self._contexts = contexts
        self._skills: dict[str, LoadedSkill] = {}
        self._sources: list[ToolSource] = []
        self._matcher = Matcher()
        self._built = False
        self.problems: list[SkillProblem] = []

    # --- loading and state ----------------------------------------------------------------------

    def add(self, skill: LoadedSkill) -> None:
        name = skill.manifest.name
        if name in self._skills:
            existing = self._skills[name]
            self.problems.append(SkillProblem(skill.source, f"a skill named {name!r} is already loaded from "
                                              f"{existing.source}", "rename one of them (the name class attribute)"))
            return
        self._skills[name] = skill
        self._rebuild()

    def replace(self, skill: LoadedSkill) -> LoadedSkill | None:
        """Add ``skill``; a built-in of the same name is replaced (and returned, to be stopped). A skill of
        the same name from anywhere else stays, and ``skill`` is refused with a problem, as ``add`` does."""
        existing = self._skills.get(skill.manifest.name)
        if existing is not None and existing.trusted:
            self._skills[skill.manifest.name] = skill
            self._rebuild()
            return existing
        self.add(skill)
        return None

    def add_source(self, source: ToolSource) -> None:
        self._sources.append(source)

    async def apply_state(self) -> None:
        """Enabled flags, config and grants from the database (at start-up, then every few seconds so that
        a change made by another process applies without a restart). The matcher is rebuilt only when a
        skill was enabled or disabled."""
        states = await self._repository.states()
        before = {name: skill.enabled for name, skill in self._skills.items()}
        for name, skill in self._skills.items():
            state = states.get(name)
            if state is not None:
                self._apply(skill, state)
        if before != {name: skill.enabled for name, skill in self._skills.items()} or not self._built:
            self._rebuild()

    def _apply(self, skill: LoadedSkill, state: SkillStateLike) -> None:
        skill.enabled = state.enabled
        skill.config = dict(state.config)
        skill.granted = frozenset(state.granted)

    async def set_enabled(self, name: str, enabled: bool) -> LoadedSkill:
        skill = self.get(name)
        self._apply(skill, await self._repository.set_state(name, enabled=enabled))
        self._rebuild()
        return skill

    async def grant(self, name: str, capabilities: Sequence[str], *, revoke: bool = False) -> LoadedSkill:
        skill = self.get(name)
        unknown = [c for c in capabilities if c not in CAPABILITIES]
        if unknown:
            raise InvalidRequest(f"unknown capabilities {unknown}; known: {', '.join(CAPABILITIES)}", code="invalid")
        granted = skill.granted - set(capabilities) if revoke else skill.granted | set(capabilities)
        self._apply(skill, await self._repository.set_state(name, granted=sorted(granted)))
        return skill

    async def configure(self, name: str, config: Mapping[str, Any]) -> LoadedSkill:
        skill = self.get(name)
        self._apply(skill, await self._repository.set_state(name, config=config))
        return skill

    def get(self, name: str) -> LoadedSkill:
        if name not in self._skills:
            raise NotFound(f"no skill named {name!r}")
        return self._skills[name]

    def skills(self) -> list[LoadedSkill]:
        return sorted(self._skills.values(), key=lambda s: s.manifest.name)

    async def start(self) -> None:
        for skill in self._skills.values():
            await skill.executor.start()

    async def stop(self) -> None:
        for skill in self._skills.values():
            await skill.executor.stop()

    def _rebuild(self) -> None:
        self._built = True
        self._matcher.load({n: s.manifest.intents for n, s in self._skills.items() if s.enabled})

    # --- the model's tools ----------------------------------------------------------------------------

    def tools_for(self, actor: Actor) -> Sequence[ToolSpec]:
        """Every enabled intent and available MCP tool (permissions are checked by the control plane)."""
        tools = [self._spec(name, spec) for name, skill in self._skills.items() if skill.enabled
                 for spec in skill.manifest.intents.values()]
        for source in self._sources:
            tools.extend(source.tools())
        return tools

    def _spec(self, skill: str, spec: IntentSpec) -> ToolSpec:
        return ToolSpec(name=tool_name(skill, spec.name), description=spec.description,
                        parameters=spec.json_schema(), permission=spec.permission or f"tool.{skill}.{spec.name}",
                        confirm=spec.side_effects)

    def describe(self, tool: str) -> ToolSpec | None:
        found = self._find(tool)
        if found is not None:
            return self._spec(found[0].manifest.name, found[1])
        for source in self._sources:
            if source.handles(tool):
                return next((t for t in source.tools() if t.name == tool), None)
        return None

    def _find(self, tool: str) -> tuple[LoadedSkill, IntentSpec] | None:
        skill_name, _, intent_name = tool.partition("__")
        skill = self._skills.get(skill_name)
        if skill is None or not skill.enabled:
            return None
        spec = skill.manifest.intents.get(intent_name)
        return None if spec is None else (skill, spec)

    async def call(self, call: SkillCall) -> SkillResult:
        """Run a tool for ``call.actor``; failures come back as error results, never as exceptions."""
        found = self._find(call.name)
        if found is None:
            for source in self._sources:
                if source.handles(call.name):
                    return await source.call(call)
            return SkillResult(call.id, call.name, f"There is no enabled tool named {call.name!r}.", is_error=True,
                               error_code="unknown_tool")
        skill, spec = found
        now = utcnow()
        tz = zone(call.actor.timezone)
        params, problems = parse_params(spec, call.arguments, tz=tz, now=now)
        if problems:
            detail = "; ".join(f"{k}: {v}" for k, v in problems.items())
            return SkillResult(call.id, call.name, f"Invalid arguments for {call.name}: {detail}", is_error=True,
                               error_code="bad_arguments")
        context = self._contexts.build(skill=skill.manifest.name, actor=call.actor, conversation_id=call.conversation,
                                       channel=call.actor.channel, config=skill.config, capabilities=skill.capabilities,
                                       now=now)
        return await invoke(skill.executor, skill.manifest.name, spec, call.id, call.name, params, context)

    # --- deterministic routing --------------------------------------------------------------------------

    def match(self, text: str, actor: Actor, *, now: datetime | None = None) -> IntentMatch | None:
        moment = now or utcnow()
        candidate = self._matcher.match(text, tz=zone(actor.timezone), now=moment)
        if candidate is None:
            return None
        return self._as_match(candidate)

    def _as_match(self, candidate: Candidate) -> IntentMatch:
        if is_help(candidate):
            skill = self._skills[candidate.skill]
            text = describe_skill(candidate.skill, skill.manifest.intents)
            problem = candidate.problems.get("_")
            return IntentMatch(tool=candidate.tool, params={}, confidence=candidate.confidence,
                               reply=f"{problem}.\n{text}" if problem else text)
        spec = candidate.intent
        params = jsonable(dict(candidate.params))
        return IntentMatch(
            tool=candidate.tool, params=params, confidence=candidate.confidence, missing=candidate.missing,
            questions={name: slot_prompt(spec, name) for name in candidate.missing},
            problems=dict(candidate.problems), summary=summarise(spec, candidate.params),
            confirm=spec.side_effects, permission=spec.permission or f"tool.{candidate.skill}.{spec.name}",
        )

    def fill(self, tool: str, params: Mapping[str, Any], slot: str, answer: str, actor: Actor) -> IntentMatch:
        """A pending intent with ``slot`` filled from the user's ``answer`` (re-asked if it does not parse)."""
        found = self._find(tool)
        if found is None:
            raise NotFound(f"{tool} is no longer available")
        skill, spec = found
        tz, now = zone(actor.timezone), utcnow()
        values, problems = parse_params(spec, params, tz=tz, now=now)
        problems = {name: problem for name, problem in problems.items() if problem != "required"}  # see missing
        answered, trouble = parse_slots(spec.slots, {slot: answer}, tz=tz, now=now, known=values)
        values.update(answered)
        problems.update(trouble)
        missing = tuple(n for n, s in spec.slots.items() if s.required and n not in values)
        candidate = Candidate(skill.manifest.name, spec, values, 1.0, missing, problems, "answer")
        return self._as_match(candidate)


def parse_params(spec: IntentSpec, arguments: Mapping[str, Any], *, tz: tzinfo,
                 now: datetime) -> tuple[dict[str, Any], dict[str, str]]:
    """Slot values from JSON arguments (a model's, or stored ones); intents without slots take them as given."""
    if not spec.slots:
        return dict(arguments), {}
    given = {name: value for name, value in arguments.items() if value is not None}
    params, problems = parse_slots(spec.slots, given, tz=tz, now=now - timedelta(minutes=5))
    problems.update({name: "not a parameter of this tool" for name in given if name not in spec.slots})
    for name, slot in spec.slots.items():
        if slot.required and name not in params and name not in problems:
            problems[name] = "required"
    return params, problems


def summarise(spec: IntentSpec, params: Mapping[str, Any]) -> str:
    """The intent and its values in words, for a confirmation question."""
    parts = []
    for name, value in params.items():
        if isinstance(value, datetime):
            shown = f"{value:%a %d %b %Y, %H:%M} ({value.tzname()})"
        elif isinstance(value, timedelta):
            minutes = int(value.total_seconds() // 60)
            shown = f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"
        else:
            shown = str(value)
        parts.append(f"{name.replace('_', ' ')}: {shown}")
    # the description's first clause: "Schedule a meeting (refused, with the next free slot, ...)." asks
    # "Shall I schedule a meeting — start: ...?"
    first = re.split(r"\s*[(.;:]", spec.description or "", maxsplit=1)[0].strip()
    what = first[:1].lower() + first[1:] if first else spec.name.replace("_", " ")
    return f"{what} — {', '.join(parts)}" if parts else what
