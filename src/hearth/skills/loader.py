"""Finding skills: built-ins, installed packages (entry points ``hearth.skills``) and the skills folder.

Built-in skills are hearth's own code and run in its process. A skill from a package or from the
skills folder is somebody else's code: the loader never imports it into hearth. It only names it (a
``WorkerSource``), and the worker process that will run it reports its manifest in its handshake.

Every skill is validated when it loads. One that fails is refused with a ``SkillProblem`` naming the
file and the fix, and the others still load.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from hearth.sdk import CAPABILITIES, Skill

from .registry import Manifest, SkillProblem

ENTRY_POINT_GROUP = "hearth.skills"
BUILTINS = (
    "hearth.skills.builtin.time:TimeSkill",
    "hearth.skills.builtin.reminders:RemindersSkill",
    "hearth.skills.builtin.calendar:CalendarSkill",
    "hearth.skills.builtin.files:FilesSkill",
)
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_VERSION = re.compile(r"^\d+(\.\d+){0,3}([.-]?[A-Za-z0-9.]+)?$")


@dataclass(frozen=True)
class WorkerSource:
    """Somebody else's skill, to be run in a worker: a file, a package folder, or an entry point."""

    kind: str  # "file" | "package" | "entry_point"
    target: str  # a path, or "module:attribute"
    origin: str  # "folder" | "package"

    def __str__(self) -> str:
        return self.target


def manifest_of(skill: type[Skill], source: str) -> Manifest:
    """Validate a skill class; ``SkillProblemError`` says what is wrong and how to fix it."""
    where = source
    if not isinstance(skill, type) or not issubclass(skill, Skill):
        raise SkillProblemError(where, f"{skill!r} is not a Skill subclass", "subclass skill_sdk.Skill")
    if not _NAME.match(skill.name):
        raise SkillProblemError(where, f"skill name {skill.name!r} is not valid",
                                "set name = 'lower_case_letters' (letters, digits, _; at most 48)")
    if not isinstance(skill.version, str) or not _VERSION.match(skill.version):
        raise SkillProblemError(where, f"version {skill.version!r} is not a version", "set version = '1.0.0'")
    permissions = tuple(skill.permissions)
    unknown = [p for p in permissions if p not in CAPABILITIES]
    if unknown:
        raise SkillProblemError(where, f"unknown permissions {unknown}",
                                f"use only {', '.join(CAPABILITIES)} in permissions")
    if not isinstance(skill.config_schema, dict) or (skill.config_schema and
                                                     skill.config_schema.get("type") != "object"):
        raise SkillProblemError(where, "config_schema is not a JSON schema of an object",
                                "use {'type': 'object', 'properties': {...}} or leave it empty")
    intents = skill.intents()
    if not intents:
        raise SkillProblemError(where, f"skill {skill.name!r} has no intents",
                                "mark at least one method with @intent('name')")
    return Manifest(name=skill.name, version=skill.version, description=skill.description or skill.name,
                    permissions=permissions, config_schema=dict(skill.config_schema), intents=intents)


class SkillProblemError(Exception):
    def __init__(self, source: str, problem: str, fix: str) -> None:
        super().__init__(f"{source}: {problem} — {fix}")
        self.problem = SkillProblem(source, problem, fix)


def builtin_classes(names: Iterable[str] = BUILTINS) -> Iterator[tuple[str, type[Skill] | SkillProblem]]:
    """The built-in skill classes (a problem instead, for one that fails to import)."""
    for target in names:
        module_name, _, attribute = target.partition(":")
        try:
            yield target, getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            yield target, SkillProblem(target, f"cannot be imported ({exc})", "reinstall hearth")


def installed() -> list[WorkerSource]:
    """Skills that packages declare in the ``hearth.skills`` entry-point group (not imported here)."""
    return [WorkerSource("entry_point", ep.value, "package") for ep in entry_points(group=ENTRY_POINT_GROUP)]


def folder(path: Path | None) -> tuple[list[WorkerSource], list[SkillProblem]]:
    """``*.py`` files and packages (folders with ``__init__.py``) in the skills folder."""
    if path is None:
        return [], []
    if not path.is_dir():
        return [], [SkillProblem(str(path), "the skills folder does not exist",
                                 "create it, or point HEARTH_SKILLS_DIR at an existing folder")]
    sources: list[WorkerSource] = []
    problems: list[SkillProblem] = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_file() and entry.suffix == ".py":
            sources.append(WorkerSource("file", str(entry), "folder"))
        elif entry.is_dir() and (entry / "__init__.py").is_file():
            sources.append(WorkerSource("package", str(entry), "folder"))
        elif entry.is_dir() and not entry.name.endswith(("__pycache__", ".egg-info")):
            problems.append(SkillProblem(str(entry), "a folder without __init__.py",
                                         "add an __init__.py that imports the Skill class, or remove the folder"))
    return sources, problems
