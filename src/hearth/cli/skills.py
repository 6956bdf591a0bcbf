"""``hearth skills``: list, inspect, scaffold, enable, disable, grant and configure skills.

Changes go to the database through the skill registry, so a running ``hearth serve`` applies them within
a few seconds without a restart. ``new`` only writes files: a package with a working skill and its test.
"""

from __future__ import annotations

import asyncio
import json
import keyword
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hearth.errors import ConfigError, HearthError, InvalidRequest
from hearth.ops import logging as hearth_logging
from hearth.runtime import Runtime, load_settings
from hearth.sdk import CAPABILITIES
from hearth.settings import Settings
from hearth.skills.loader import builtin_classes
from hearth.types import Event
from hearth.web.admin import (
    MASK,
    ManagedSkill,
    SkillAdmin,
    check_capabilities,
    config_problems,
    describe_problem,
    describe_skill,
    find_skill,
    is_secret,
    masked_config,
)

skills_app = typer.Typer(help="Skills: list, inspect, create, enable or disable, grant capabilities, configure.",
                         no_args_is_help=True)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")  # the loader's rule for skill names
APPLIES = "a running hearth applies it within a few seconds"


# --- plumbing -------------------------------------------------------------------------------------------------


def _settings() -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:
        err.print(f"[bold red]hearth: configuration error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    hearth_logging.configure_in(settings.hearth_data_dir, "error", settings.hearth_log_format)
    return settings


def _with_registry(work: Callable[[SkillAdmin, Runtime], Awaitable[T]]) -> T:
    """Run ``work`` on the registry of a runtime that does not serve (skills' state read from the database)."""
    settings = _settings()

    async def main() -> T:
        runtime = await Runtime.create(settings)
        try:
            # not runtime.start(): a management command makes no first admin, probes no model, starts no MCP server
            await runtime.load_external_skills()  # folder and package skills report their manifests
            return await work(runtime.skills, runtime)
        finally:
            await runtime.aclose()

    try:
        return asyncio.run(main())
    except HearthError as exc:
        err.print(f"[bold red]hearth:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None


def _audit(runtime: Runtime, name: str, **properties: Any) -> None:
    runtime.bus.emit(Event(name, None, {**properties, "by": "cli"}))


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str), flush=True)


def _joined(values: Any, empty: str = "—") -> str:
    return ", ".join(values) or empty


# --- reading --------------------------------------------------------------------------------------------------


@skills_app.command("list")
def list_skills(as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """The loaded skills, and the ones that could not be loaded with the reason and the fix."""

    async def work(registry: SkillAdmin, _: Runtime) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        return [describe_skill(s) for s in registry.skills()], [describe_problem(p) for p in registry.problems]

    skills, problems = _with_registry(work)
    if as_json:
        _print_json({"skills": skills, "problems": problems})
        return
    table = Table("name", "version", "from", "enabled", "intents", "permissions", "granted", title="Skills")
    for skill in skills:
        granted = "all (built-in)" if skill["origin"] == "builtin" else _joined(skill["granted"], "none")
        table.add_row(skill["name"], skill["version"], skill["origin"], "yes" if skill["enabled"] else "[dim]no[/]",
                      str(skill["intents"]), _joined(skill["permissions"]), granted)
    console.print(table)
    if problems:
        failed = Table("file", "problem", "fix", title="Not loaded", style="red", title_style="bold red")
        for problem in problems:
            failed.add_row(escape(problem["source"]), escape(problem["problem"]), escape(problem["fix"]),
                           style="red")
        console.print(failed)


@skills_app.command("info")
def info(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")) -> None:
    """Everything about one skill: manifest, intents and their slots, permissions, config."""

    async def work(registry: SkillAdmin, _: Runtime) -> dict[str, Any]:
        return describe_skill(find_skill(registry, name), detail=True)

    skill = _with_registry(work)
    if as_json:
        _print_json(skill)
        return
    state = "enabled" if skill["enabled"] else "[yellow]disabled[/]"
    console.print(f"[bold]{skill['name']}[/] {skill['version']} — {skill['origin']} ({escape(skill['source'])}), "
                  f"{state}")
    console.print(escape(skill["description"]))
    granted = "all it asks for (built-in)" if skill["origin"] == "builtin" else _joined(skill["granted"], "none")
    console.print(f"permissions: asks for {_joined(skill['permissions'], 'nothing')}; granted {granted}")
    _print_config(skill["config_schema"], skill["config"])
    for intent in skill["intents"]:
        console.print()
        console.print(f"[bold]{intent['name']}[/] (tool {intent['tool']}): {escape(intent['description'])}")
        effects = "yes: hearth asks the user before it runs" if intent["side_effects"] else "no"
        console.print(f"  permission {intent['permission']}; side effects: {effects}")
        if intent["slots"]:
            slots = Table("slot", "type", "required", "description", box=None, padding=(0, 2, 0, 2))
            for slot in intent["slots"]:
                slots.add_row(slot["name"], slot["type"], "yes" if slot["required"] else "no",
                              escape(slot["description"]))
            console.print(slots)
        for example in intent["examples"]:
            console.print(f"  e.g. “{escape(example)}”", highlight=False)


def _print_config(schema: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    if not properties:
        console.print("config: none (the skill declares no config_schema)")
        return
    table = Table("setting", "type", "value", "default", "description", title="config", title_justify="left")
    required = set(schema.get("required") or ())
    for key, prop in properties.items():
        kind = str(prop.get("type", "any")) + (", secret" if is_secret(schema, key) else "") + \
            (", required" if key in required else "")
        if "enum" in prop:
            kind += f" ({' | '.join(map(str, prop['enum']))})"
        value = "[dim]not set[/]" if key not in config else MASK if config[key] == MASK else \
            escape(json.dumps(config[key], ensure_ascii=False))
        default = json.dumps(prop["default"]) if "default" in prop else ""
        table.add_row(key, kind, value, default, escape(str(prop.get("description", ""))))
    console.print(table)
    extra = {k: v for k, v in config.items() if k not in properties}
    if extra:
        console.print(f"[yellow]set but not in the schema:[/] {escape(json.dumps(extra))}")


# --- scaffolding ----------------------------------------------------------------------------------------------


@skills_app.command("new")
def new(
    name: str,
    directory: Annotated[Path | None, typer.Option("--dir", help="Where to create it (default: HEARTH_SKILLS_DIR, "
                                                   "else $HEARTH_DATA_DIR/skills).")] = None,
) -> None:
    """Create a working skill package NAME/ (with its test) in the skills folder."""
    problem = _name_problem(name)
    if problem:
        err.print(f"[bold red]hearth skills new:[/] {problem}", highlight=False)
        raise typer.Exit(2)
    if directory is None:
        settings = _settings()
        directory = settings.hearth_skills_dir or settings.hearth_data_dir / "skills"
    target = directory / name
    for taken in (target, directory / f"{name}.py"):
        if taken.exists():
            err.print(f"[bold red]hearth skills new:[/] {escape(str(taken))} already exists; choose another name or "
                      "remove it", highlight=False)
            raise typer.Exit(2)
    files = skill_files(name)
    target.mkdir(parents=True)
    for filename, text in files.items():
        (target / filename).write_text(text, encoding="utf-8")
    console.print(f"created the skill [bold]{name}[/] in {escape(str(target))}:", highlight=False)
    for filename in files:
        console.print(f"  {escape(str(target / filename))}", highlight=False)
    console.print("next:", highlight=False)
    console.print(f"  run its tests: {sys.executable} -m pytest {escape(str(target))}", highlight=False)
    console.print(f"  see it loaded: hearth skills list (hearth loads skills from {escape(str(directory))} when it "
                  "is HEARTH_SKILLS_DIR or $HEARTH_DATA_DIR/skills)", highlight=False)
    console.print(f"  let it keep notes: hearth skills grant {name} storage", highlight=False)


def skill_files(name: str) -> dict[str, str]:
    """The files of a new skill package ``name``: a skill with two intents, and its passing test."""
    cls = "".join(part.capitalize() for part in name.split("_")) + "Skill"
    words = name.replace("_", " ")
    return {"__init__.py": _SKILL.format(name=name, cls=cls, words=words),
            f"test_{name}.py": _TEST.format(name=name, cls=cls, words=words)}


_SKILL = '''"""The {name} skill for hearth.

hearth runs it in a worker process of its own, with only the capabilities an admin granted. See
`hearth skills info {name}` for what hearth made of it, and README "Skills" for the SDK.
"""

from __future__ import annotations

from typing import Any

from skill_sdk import DateTime, Result, Skill, SkillContext, Text, intent


class {cls}(Skill):
    """Greets people and remembers notes. (Say here what your skill does: users and the model read it.)"""

    name = "{name}"
    version = "0.1.0"
    # Capabilities it needs: network, storage, messages, files. An admin grants them:
    #   hearth skills grant {name} storage
    permissions = ("storage",)
    # Its settings, as a JSON schema: hearth skills config {name} greeting=Hi
    config_schema = {{
        "type": "object",
        "properties": {{
            "greeting": {{"type": "string", "default": "Hello", "description": "how to greet people"}},
        }},
        "additionalProperties": False,
    }}

    @intent(
        "greet",
        slots={{"who": Text(description="who to greet", max_length=100)}},
        examples=["{words} greet {{who}}", "{words} say hello to {{who}}"],
    )
    def greet(self, params: dict[str, Any], context: SkillContext) -> Result:
        """Greet someone by name."""
        greeting = context.config.get("greeting", "Hello")
        return Result(text=f"{{greeting}}, {{params['who']}}!", data={{"greeted": params["who"]}})

    @intent(
        "remember",
        slots={{
            "note": Text(description="what to remember", max_length=500),
            "due": DateTime(description="when it is due", required=False),
        }},
        examples=["{words} remember {{note}} by {{due}}", "{words} remember {{note}}"],
        side_effects=True,  # it changes something, so hearth asks the user "Shall I ...?" first
    )
    async def remember(self, params: dict[str, Any], context: SkillContext) -> Result:
        """Keep a note, with an optional due date."""
        notes = await context.storage.get("notes", [])
        due = params.get("due")
        notes.append({{"note": params["note"], "due": due.isoformat() if due else None}})
        await context.storage.set("notes", notes)
        when = f" (due {{due:%a %d %b %H:%M}})" if due else ""
        return Result(text=f"Noted: {{params['note']}}{{when}}.", data={{"notes": len(notes)}})
'''

_TEST = '''"""Tests of the {name} skill, in a real hearth: `python -m pytest` in this folder or its parent."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hearth.testing import TestAssistant, Turn

from {name} import {cls}


def test_it_greets_without_a_model(tmp_path: Path) -> None:
    async def main() -> None:
        async with TestAssistant(skills=[{cls}], tmp_path=tmp_path) as bot:
            assert (await bot.send("{words} greet Ada")).text == "Hello, Ada!"
            await bot.config("{name}", {{"greeting": "Hi"}})
            assert (await bot.send("{words} say hello to Grace")).text == "Hi, Grace!"

    asyncio.run(main())


def test_remember_asks_first_and_needs_storage(tmp_path: Path) -> None:
    async def main() -> None:
        async with TestAssistant(skills=[{cls}], tmp_path=tmp_path, timezone="Europe/Oslo") as bot:
            asked = await bot.send("{words} remember buy milk")
            assert asked.buttons == ("Yes", "No")
            refused = await bot.press("Yes")
            assert "hearth skills grant {name} storage" in refused.text  # not granted yet
            await bot.grant("{name}", "storage")
            await bot.send("{words} remember buy milk by tomorrow at 9am")
            done = await bot.press("Yes")
            assert done.text.startswith("Noted: buy milk (due ")

    asyncio.run(main())


def test_the_model_can_call_it(tmp_path: Path) -> None:
    async def main() -> None:
        async with TestAssistant(skills=[{cls}], tmp_path=tmp_path) as bot:
            bot.model.script(Turn(tool_calls=[("{name}__greet", {{"who": "Linus"}})]), Turn(text="I said hello."))
            reply = await bot.send("could you please say hi to Linus for me")
            assert reply.text == "I said hello."
            tool_result = bot.model.requests[-1].body["messages"][-1]
            assert "Linus" in str(tool_result["content"])

    asyncio.run(main())
'''


def _name_problem(name: str) -> str | None:
    if not NAME.match(name):
        return (f"{name!r} is not a valid skill name: use lower-case letters, digits and _, starting with a letter "
                "(at most 48 characters)")
    builtins = {cls.name for _, cls in builtin_classes() if isinstance(cls, type)}
    if name in builtins:
        return f"a built-in skill is already called {name!r}; choose another name"
    if keyword.iskeyword(name) or name in sys.stdlib_module_names or name in ("hearth", "skill_sdk", "test", "tests"):
        return f"{name!r} is a Python keyword or module name; the skill's package could not be imported as {name}"
    return None


# --- changing -------------------------------------------------------------------------------------------------


@skills_app.command("enable")
def enable(name: str) -> None:
    """Enable a skill: its intents are matched and offered to the model again."""
    _set_enabled(name, True)


@skills_app.command("disable")
def disable(name: str) -> None:
    """Disable a skill: hearth neither matches its intents nor offers them to the model."""
    _set_enabled(name, False)


def _set_enabled(name: str, enabled: bool) -> None:
    async def work(registry: SkillAdmin, runtime: Runtime) -> ManagedSkill:
        found = find_skill(registry, name).manifest.name
        skill = await registry.set_enabled(found, enabled)
        _audit(runtime, "admin.skill_enabled" if enabled else "admin.skill_disabled", skill=found)
        return skill

    skill = _with_registry(work)
    console.print(f"{skill.manifest.name} is {'enabled' if enabled else 'disabled'} ({APPLIES})")


@skills_app.command("grant")
def grant(
    name: str,
    capabilities: Annotated[list[str], typer.Argument(help=f"One or more of: {', '.join(CAPABILITIES)}.")],
    revoke: bool = typer.Option(False, "--revoke", help="Take the capabilities away instead."),
) -> None:
    """Grant a skill capabilities it asks for (network, storage, messages, files), or revoke them."""

    async def work(registry: SkillAdmin, runtime: Runtime) -> ManagedSkill:
        found = find_skill(registry, name).manifest.name
        check_capabilities(capabilities)
        skill = await registry.grant(found, capabilities, revoke=revoke)
        _audit(runtime, "admin.skill_granted", skill=found, granted=[] if revoke else sorted(capabilities),
               revoked=sorted(capabilities) if revoke else [])
        return skill

    skill = _with_registry(work)
    manifest = skill.manifest
    if skill.origin == "builtin":
        console.print(f"note: {manifest.name} is built in: it always has what it asks for "
                      f"({_joined(manifest.permissions, 'nothing')})")
    unasked = sorted(set(capabilities) - set(manifest.permissions))
    if unasked and not revoke and skill.origin != "builtin":
        console.print(f"[yellow]note:[/] {manifest.name} does not ask for {', '.join(unasked)} (it asks for "
                      f"{_joined(manifest.permissions, 'nothing')}); that grant has no effect until it does")
    console.print(f"{manifest.name}: granted {_joined(sorted(skill.granted), 'nothing')}; it can use "
                  f"{_joined(sorted(skill.capabilities), 'nothing')} ({APPLIES})")


@skills_app.command("config")
def config(
    name: str,
    settings: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY=VALUE]...", help="Values are read as JSON when they parse (42, true, [1,2]), else as text; "
                                       "a setting the schema types as a string is always text.")] = None,
    unset: Annotated[list[str] | None, typer.Option("--unset", help="Remove this setting (repeatable).")] = None,
) -> None:
    """Show a skill's config, or change it: checked against the skill's config_schema before anything is
    written."""
    pairs: dict[str, str] = {}
    for item in settings or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            err.print(f"[bold red]hearth skills config:[/] {escape(item)!r} is not KEY=VALUE", highlight=False)
            raise typer.Exit(2)
        pairs[key.strip()] = value

    async def work(registry: SkillAdmin, runtime: Runtime) -> tuple[ManagedSkill, list[str]]:
        skill = find_skill(registry, name)
        found, schema = skill.manifest.name, skill.manifest.config_schema
        if not pairs and not unset:
            return skill, []
        unset_keys = unset or []
        updated = dict(skill.config)
        missing = [key for key in unset_keys if key not in updated]
        if missing:
            raise InvalidRequest(f"{found} has no setting {', '.join(missing)} to unset "
                              f"(set: {_joined(sorted(updated), 'none')})")
        for key in unset_keys:
            del updated[key]
        updated.update({key: _value(schema, key, text) for key, text in pairs.items()})
        problems = config_problems(schema, updated)
        if problems:
            raise InvalidRequest(f"invalid config for {found}, nothing changed: " + "; ".join(problems))
        changed = sorted(k for k in set(updated) | set(skill.config) if updated.get(k) != skill.config.get(k))
        skill = await registry.configure(found, updated)
        _audit(runtime, "admin.skill_configured", skill=found, keys=changed)
        return skill, changed

    skill, changed = _with_registry(work)
    shown = masked_config(skill.manifest.config_schema, skill.config)
    if pairs or unset:
        console.print(f"{skill.manifest.name}: changed {_joined(changed, 'nothing')} ({APPLIES})")
    _print_config(skill.manifest.config_schema, shown)


def _value(schema: Mapping[str, Any], key: str, text: str) -> Any:
    prop = (schema.get("properties") or {}).get(key)
    if isinstance(prop, Mapping) and prop.get("type") == "string":
        return text  # password=123456 is text, not a number
    try:
        return json.loads(text)
    except ValueError:
        return text
