"""Intent cases kept as data: every ``tests/skills/intents/*.yaml`` case runs through the skill registry's
deterministic matcher at a fixed "now", with the built-in skills loaded as hearth loads them.

A file has ``defaults`` (``timezone``, ``now``) and ``cases``; each case has ``text`` and ``expect``:

* ``{skill, intent, params, missing}``: hearth takes the message as this intent on its own. ``params``
  are all the slot values found, exactly (omitted: none); dates as ISO 8601 with their offset, durations as
  ISO 8601 (``PT1H30M``). With ``missing``, hearth asks for those slots before it runs the intent.
* ``ask``: hearth asks before acting ("Did you mean ...?", or for a missing slot).
* ``none``: no skill takes the message; it goes to the model.

``timezone`` and ``now`` may be set per case. A case with ``known_issue`` describes a phrasing the
matcher gets wrong today: it is expected to fail, and the suite fails when it starts to pass, so that the
note is removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from hearth.core.dialog import CONFIDENT, PLAUSIBLE
from hearth.sdk.parsing import parse_duration
from hearth.skills.loader import builtin_classes, manifest_of
from hearth.skills.registry import LoadedSkill, SkillRegistry
from hearth.types import Actor, IntentMatch

CASES_DIR = Path(__file__).parent / "intents"


class _NotRun:
    """Matching never runs a skill."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def run(self, *args: Any) -> Any:
        raise AssertionError("the matcher ran a skill")


def _registry() -> SkillRegistry:
    registry = SkillRegistry(repository=None, contexts=None)  # type: ignore[arg-type]  # match() uses neither
    for source, cls in builtin_classes():
        assert isinstance(cls, type), cls
        registry.add(LoadedSkill(manifest_of(cls, source), _NotRun(), "builtin", source))
    return registry


REGISTRY = _registry()


def _cases() -> list[Any]:
    params = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        defaults = data.get("defaults") or {}
        for index, case in enumerate(data["cases"], 1):
            case = {**defaults, **case}
            marks = []
            if case.get("known_issue"):
                marks.append(pytest.mark.xfail(reason=f"known issue: {case['known_issue']}", strict=True))
            params.append(pytest.param(case, id=f"{path.stem}-{index}: {case['text']}", marks=marks))
    return params


def _moment(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    assert moment.tzinfo is not None, f"'now' needs an offset: {value!r}"
    return moment


def _comparable(value: Any) -> Any:
    """Dates by instant and offset, durations by length, so that 'PT30M' equals 'PT1800S'."""
    if isinstance(value, datetime | date):
        value = value.isoformat()
    if isinstance(value, timedelta):
        return ("duration", value.total_seconds())
    if isinstance(value, str):
        if value.startswith("P") and (span := parse_duration(value)) is not None:
            return ("duration", span.total_seconds())
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        if moment.tzinfo is not None:
            return ("datetime", moment.isoformat())
    return value


def _outcome(found: IntentMatch | None) -> str:
    """What hearth does with a message, as ``Dialog.before_model`` decides it."""
    if found is None or found.problems or found.confidence < PLAUSIBLE:
        return "none"
    if found.reply is not None:
        return "answer"
    if found.missing or found.confidence < CONFIDENT:
        return "ask"
    return "act"


def _actual(found: IntentMatch | None) -> str:
    if found is None:
        return "no match (goes to the model)"
    skill, _, intent = found.tool.partition("__")
    return (f"{_outcome(found)}: skill={skill} intent={intent} params={dict(found.params)} "
            f"missing={list(found.missing)} confidence={found.confidence} problems={dict(found.problems)}")


@pytest.mark.parametrize("case", _cases())
def test_intent_case(case: Mapping[str, Any]) -> None:
    actor = Actor(1, "tester", frozenset({"user"}), channel="test", timezone=case["timezone"])
    found = REGISTRY.match(case["text"], actor, now=_moment(case["now"]))
    expect = case["expect"]
    report = f"\n  text:     {case['text']!r}\n  expected: {expect}\n  actual:   {_actual(found)}"
    if expect in ("none", "ask"):
        assert _outcome(found) == expect, report
        return
    assert found is not None, report
    missing = list(expect.get("missing") or [])
    wanted = {k: _comparable(v) for k, v in (expect.get("params") or {}).items()}
    got = {k: _comparable(v) for k, v in found.params.items()}
    outcome = "answer" if expect["intent"] == "help" else "ask" if missing else "act"
    assert (_outcome(found), found.tool, got, list(found.missing)) == (
        outcome, f"{expect['skill']}__{expect['intent']}", wanted, missing), report


def test_there_are_enough_cases() -> None:
    cases = [p.values[0] for p in _cases()]
    assert len(cases) >= 40
    skills = {c["expect"]["skill"] for c in cases if isinstance(c["expect"], dict)}
    assert skills == {"time", "reminders", "calendar", "files"}
