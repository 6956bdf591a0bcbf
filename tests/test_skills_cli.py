"""``hearth skills``: in this process through typer's runner (fast), and once as users run it, in a process of
its own. Each test has its own data directory, so its own database."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import structlog
from typer.testing import CliRunner, Result

from hearth.cli import app
from hearth.cli import skills as skills_cli
from hearth.runtime import Runtime
from hearth.sdk import Skill, SkillContext, Text, intent
from hearth.settings import Settings
from hearth.skills.invoke import InProcess
from hearth.skills.loader import manifest_of
from hearth.skills.registry import LoadedSkill, SkillProblem
from hearth.web.admin import config_problems


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """The commands configure logging for a process of their own; give the rest of the suite its own back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"HEARTH_DATA_DIR": str(tmp_path / "data"), "AI_MODEL_ENDPOINT": "http://127.0.0.1:9", "COLUMNS": "200"}


@pytest.fixture
def hearth(env: dict[str, str]) -> Any:
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, ["skills", *args], env=env)

    return run


class NotesSkill(Skill):
    """Keeps notes."""

    name = "notes"
    permissions = ("storage",)
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"limit": {"type": "integer"}, "verbose": {"type": "boolean"}, "prefix": {"type": "string"},
                       "token": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "additionalProperties": False,
    }

    @intent("note", slots={"text": Text()}, examples=["note {text}"], side_effects=True)
    def note(self, params: dict[str, Any], context: SkillContext) -> str:
        return "noted"


@pytest.fixture
def with_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime that also has a skill from the skills folder, and one that failed to load."""

    class WithNotes:
        @staticmethod
        async def create(settings: Settings) -> Runtime:
            runtime = await Runtime.create(settings)
            runtime.skills.add(LoadedSkill(manifest_of(NotesSkill, "/srv/skills/notes.py"), InProcess(NotesSkill()),
                                           "folder", "/srv/skills/notes.py"))
            runtime.skills.problems.append(SkillProblem("/srv/skills/broken", "a folder without __init__.py",
                                                        "add an __init__.py that imports the Skill class"))
            return runtime

    monkeypatch.setattr(skills_cli, "Runtime", WithNotes)


def test_list(hearth: Any) -> None:
    listed = hearth("list", "--json")
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    assert [s["name"] for s in data["skills"]] == ["calendar", "files", "reminders", "time"]
    assert data["problems"] == []
    reminders = data["skills"][2]
    assert (reminders["origin"], reminders["enabled"], reminders["intents"], reminders["permissions"]) == (
        "builtin", True, 3, ["messages"])
    table = hearth("list")
    assert table.exit_code == 0
    assert "reminders" in table.output and "builtin" in table.output and "messages" in table.output
    assert "Not loaded" not in table.output


def test_list_shows_folder_skills_and_load_problems(hearth: Any, with_notes: None) -> None:
    data = json.loads(hearth("list", "--json").output)
    notes = next(s for s in data["skills"] if s["name"] == "notes")
    assert (notes["origin"], notes["permissions"], notes["granted"]) == ("folder", ["storage"], [])
    assert data["problems"] == [{"source": "/srv/skills/broken", "problem": "a folder without __init__.py",
                                 "fix": "add an __init__.py that imports the Skill class"}]
    table = hearth("list").output
    assert "Not loaded" in table and "/srv/skills/broken" in table and "add an __init__.py" in table


def test_info(hearth: Any) -> None:
    assert hearth("config", "calendar", "backend=caldav", "url=https://dav.example", "password=hunter2").exit_code == 0
    shown = hearth("info", "calendar")
    assert shown.exit_code == 0, shown.output
    for words in ("calendar 1.0.0", "schedule_meeting", "calendar__schedule_meeting", "duration", "side effects: yes",
                  "schedule a meeting {start} for {duration}", "https://dav.example", "***"):
        assert words in shown.output, words
    assert "hunter2" not in shown.output
    data = json.loads(hearth("info", "calendar", "--json").output)
    assert data["config"] == {"backend": "caldav", "url": "https://dav.example", "password": "***"}
    move = next(i for i in data["intents"] if i["name"] == "move_event")
    assert [(s["name"], s["type"], s["required"]) for s in move["slots"]] == [
        ("event", "text", True), ("start", "datetime", True), ("duration", "duration", False)]
    missing = hearth("info", "weather")
    assert missing.exit_code == 1
    assert "no skill named 'weather'; known skills: calendar, files, reminders, time" in missing.output


def test_enable_and_disable_are_kept(hearth: Any) -> None:
    disabled = hearth("disable", "time")
    assert disabled.exit_code == 0 and "time is disabled" in disabled.output
    assert [s["enabled"] for s in json.loads(hearth("list", "--json").output)["skills"]] == [True, True, True, False]
    assert hearth("enable", "time").exit_code == 0
    assert all(s["enabled"] for s in json.loads(hearth("list", "--json").output)["skills"])
    assert hearth("disable", "nope").exit_code == 1


def test_grant_and_revoke(hearth: Any, with_notes: None) -> None:
    granted = hearth("grant", "notes", "storage", "network")
    assert granted.exit_code == 0, granted.output
    assert "does not ask for network" in granted.output
    data = json.loads(hearth("info", "notes", "--json").output)
    assert (data["granted"], data["capabilities"]) == (["network", "storage"], ["storage"])
    assert hearth("grant", "notes", "network", "--revoke").exit_code == 0
    assert json.loads(hearth("info", "notes", "--json").output)["granted"] == ["storage"]
    wrong = hearth("grant", "notes", "teleport")
    assert wrong.exit_code == 1 and "known: network, storage, messages, files" in wrong.output
    assert json.loads(hearth("info", "notes", "--json").output)["granted"] == ["storage"]


def test_config_values_and_checks(hearth: Any, with_notes: None) -> None:
    saved = hearth("config", "notes", "limit=5", "verbose=true", "prefix=007", "token=12345678", 'tags=["a","b"]')
    assert saved.exit_code == 0, saved.output
    assert "12345678" not in saved.output
    data = json.loads(hearth("info", "notes", "--json").output)
    # JSON where it parses; a string setting stays text even when it looks like a number
    assert data["config"] == {"limit": 5, "verbose": True, "prefix": "007", "token": "***", "tags": ["a", "b"]}
    for bad in (["limit=five"], ["colour=red"], ["verbose=maybe"]):
        refused = hearth("config", "notes", *bad)
        assert refused.exit_code == 1, bad
        assert "nothing changed" in refused.output
    assert hearth("config", "notes", "no-equals-sign").exit_code == 2
    assert hearth("config", "notes", "--unset", "colour").exit_code == 1
    assert hearth("config", "notes", "--unset", "tags", "--unset", "verbose").exit_code == 0
    data = json.loads(hearth("info", "notes", "--json").output)
    assert data["config"] == {"limit": 5, "prefix": "007", "token": "***"}
    shown = hearth("config", "notes")
    assert shown.exit_code == 0 and "***" in shown.output and "12345678" not in shown.output


def test_config_checks_without_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = NotesSkill.config_schema
    with_library = config_problems(schema, {"limit": "x", "colour": 1})
    monkeypatch.setitem(sys.modules, "jsonschema", None)  # import fails as if it were not installed
    basic = config_problems(schema, {"limit": "x", "colour": 1, "verbose": 1, "prefix": "ok"})
    assert len(with_library) == 2
    assert basic == ["limit: expected integer", "colour: not a setting of this skill (known: limit, verbose, "
                     "prefix, token, tags)", "verbose: expected boolean"]
    assert config_problems(schema, {"limit": 3, "verbose": False}) == []


def test_new_refuses_bad_names_and_existing_folders(hearth: Any, tmp_path: Path) -> None:
    skills = tmp_path / "skills"
    for name in ("Weather", "1weather", "my-skill", "x" * 49, "class", "json", "calendar"):
        refused = hearth("new", name, "--dir", str(skills))
        assert refused.exit_code == 2, name
        assert not skills.exists(), name
    assert "not a valid skill name" in hearth("new", "Weather", "--dir", str(skills)).output
    assert "built-in skill is already called 'calendar'" in hearth("new", "calendar", "--dir", str(skills)).output
    skills.mkdir()
    (skills / "weather.py").write_text("# somebody's skill\n")
    taken = hearth("new", "weather", "--dir", str(skills))
    assert taken.exit_code == 2 and "already exists" in taken.output
    assert sorted(p.name for p in skills.iterdir()) == ["weather.py"]


def test_new_makes_a_skill_whose_test_passes(hearth: Any, env: dict[str, str]) -> None:
    made = hearth("new", "weather")  # into $HEARTH_DATA_DIR/skills
    assert made.exit_code == 0, made.output
    package = Path(env["HEARTH_DATA_DIR"]) / "skills" / "weather"
    assert sorted(p.name for p in package.iterdir()) == ["__init__.py", "test_weather.py"]
    code = (package / "__init__.py").read_text()
    assert "from skill_sdk import" in code and "class WeatherSkill(Skill):" in code
    again = hearth("new", "weather")
    assert again.exit_code == 2
    # the generated test passes as generated, run the way its author would run it
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package)],
                            cwd=package.parent, capture_output=True, text=True, timeout=120, check=False,
                            env={k: v for k, v in os.environ.items() if not k.startswith(("HEARTH_", "PYTEST_"))})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_skills_list_as_a_process(env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "hearth.cli", "skills", "list", "--json"],
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert [s["name"] for s in json.loads(result.stdout)["skills"]] == ["calendar", "files", "reminders", "time"]
    # listing made no user and no key behind the operator's back
    assert not (Path(env["HEARTH_DATA_DIR"]) / "admin.key").exists()
