"""Skills from the skills folder, end to end: the seed's template unchanged, run in a worker by a real
runtime, reached by a command, by the model, and listed by ``hearth skills list``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

from hearth.core.identity import actor_for
from hearth.runtime import Runtime
from hearth.testing.modelsim import ModelSimulator, Turn
from tests.support.hearth import make_settings
from tests.support.runtime import send
from tests.support.seed import SEED_TEMPLATE

BROKEN = "from skill_sdk import Skill\n\nclass Oops(Skill:\n    pass\n"


def skills_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "skills"
    folder.mkdir()
    (folder / "seed_calendar.py").write_text(SEED_TEMPLATE)
    (folder / "broken.py").write_text(BROKEN)
    return folder


async def test_the_seed_template_runs_in_a_worker_and_replaces_the_builtin(tmp_path: Path,
                                                                           sim: ModelSimulator) -> None:
    settings = make_settings(tmp_path / "data", ai_model_endpoint=sim.url, hearth_skills_dir=skills_dir(tmp_path))
    runtime = await Runtime.create(settings)
    try:
        await runtime.start(serving=False)
        calendar = runtime.skills.get("calendar")
        assert calendar.origin == "folder" and calendar.source.endswith("seed_calendar.py")
        assert calendar.manifest.description == "calendar"  # no docstring: not the base class's
        [problem] = [p for p in runtime.skills.problems if "broken.py" in p.source]
        assert "syntax" in problem.problem.lower() or "invalid" in problem.problem.lower()
        workers = [p for p in psutil.Process().children(recursive=True) if "hearth.skills.worker" in " ".join(
            p.cmdline())]
        assert len(workers) == 1

        user = await runtime.users.get_user_by_name("admin")
        assert user is not None
        actor = actor_for(user, channel="test")
        by_command = await send(runtime, actor, "/calendar schedule_meeting")
        assert "confirmed" in by_command.text and "12345" in by_command.text
        assert sim.requests == []  # no model needed

        arguments = {"start": "2026-05-12T15:00", "duration": "PT30M"}
        sim.script(Turn(tool_calls=[("calendar__schedule_meeting", arguments)]), Turn(text="Booked: meeting 12345."))
        by_model = await send(runtime, actor, "please book me a meeting")
        assert by_model.text == "Booked: meeting 12345."
        tool_result = [m for m in sim.requests[-1].body["messages"] if m["role"] == "tool"][-1]
        assert json.loads(tool_result["content"]) == {"status": "confirmed", "meeting_id": "12345"}
    finally:
        await runtime.aclose()
    assert not [p for p in psutil.Process().children(recursive=True)
                if "hearth.skills.worker" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE]


def test_hearth_skills_list_shows_folder_skills_and_problems(tmp_path: Path) -> None:
    env = {**os.environ, "HEARTH_DATA_DIR": str(tmp_path / "data"), "HEARTH_SKILLS_DIR": str(skills_dir(tmp_path)),
           "AI_MODEL_ENDPOINT": "http://127.0.0.1:9", "HEARTH_LOG_LEVEL": "warning"}
    result = subprocess.run([sys.executable, "-m", "hearth.cli", "skills", "list", "--json"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    by_name = {s["name"]: s for s in listed["skills"]}
    assert by_name["calendar"]["origin"] == "folder"
    assert {"time", "reminders", "files"} <= set(by_name)
    assert any("broken.py" in p["source"] for p in listed["problems"])
