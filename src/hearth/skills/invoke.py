"""Running an intent handler and turning whatever it returned (or raised) into a ``SkillResult``.

In-process handlers (built-in skills) run here under their intent's timeout: an async handler directly,
a sync one in a thread so it cannot block the event loop. A handler's exception never escapes: a
``SkillFailed`` becomes an error result with the skill's own words, a timeout or a crash an error
result that says so. The same normalisation serves out-of-process skills, whose worker reports the
handler's return value or failure over its pipe.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from hearth.sdk import CapabilityDenied, IntentSpec, Result, Skill, SkillContext, SkillFailed
from hearth.types import SkillResult

_log = logging.getLogger("hearth.skills")


class Executor(Protocol):
    """Runs one skill's intents: in this process, or in a worker process."""

    async def run(self, spec: IntentSpec, params: Mapping[str, Any], context: SkillContext) -> Any:
        """The handler's return value; raises ``SkillFailed``/``CapabilityDenied``/``TimeoutError``/other."""
        ...

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class InProcess:
    """Runs a trusted (built-in) skill's handlers in hearth's own process."""

    def __init__(self, skill: Skill) -> None:
        self.skill = skill

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def run(self, spec: IntentSpec, params: Mapping[str, Any], context: SkillContext) -> Any:
        handler = self.skill.handler(spec.name)
        args: tuple[Any, ...] = (dict(params), context) if spec.wants_context else (dict(params),)
        if inspect.iscoroutinefunction(handler):
            return await handler(*args)
        result = await asyncio.to_thread(handler, *args)
        if inspect.isawaitable(result):  # a sync function that returned a coroutine
            return await result
        return result


async def invoke(executor: Executor, skill: str, spec: IntentSpec, call_id: str, tool: str,
                 params: Mapping[str, Any], context: SkillContext) -> SkillResult:
    """Run one intent under its timeout; every outcome is a ``SkillResult``."""
    try:
        async with asyncio.timeout(spec.timeout):
            value = await executor.run(spec, params, context)
    except SkillFailed as exc:
        return SkillResult(call_id, tool, exc.message, is_error=True, error_code=exc.code)
    except CapabilityDenied as exc:
        return SkillResult(call_id, tool, str(exc), is_error=True, error_code="capability_denied")
    except TimeoutError:
        return SkillResult(call_id, tool, f"The {skill} skill did not finish within {spec.timeout:g} seconds.",
                           is_error=True, error_code="timeout")
    except Exception as exc:
        _log.exception("skill %s intent %s crashed", skill, spec.name)
        return SkillResult(call_id, tool, f"The {skill} skill failed ({type(exc).__name__}).", is_error=True,
                           error_code="skill_crashed")
    return to_result(call_id, tool, value)


def to_result(call_id: str, tool: str, value: Any) -> SkillResult:
    """A handler's return value as model content and display text."""
    if isinstance(value, Result):
        data = dict(value.data) if value.data is not None else None
        content = json.dumps(jsonable(data), ensure_ascii=False) if data is not None else value.text
        display = value.text or (render(data) if data is not None else "")
        return SkillResult(call_id, tool, content or display, display=display)
    if isinstance(value, str):
        return SkillResult(call_id, tool, value, display=value)
    if value is None:
        return SkillResult(call_id, tool, "Done.", display="Done.")
    if isinstance(value, Mapping):
        data = jsonable(dict(value))
        return SkillResult(call_id, tool, json.dumps(data, ensure_ascii=False), display=render(data))
    data = jsonable(value)
    return SkillResult(call_id, tool, json.dumps(data, ensure_ascii=False), display=render(data))


def jsonable(value: Any) -> Any:
    """Dates, times and durations as ISO 8601; anything else JSON does not know as text."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return iso_duration(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def iso_duration(span: timedelta) -> str:
    return f"PT{int(span.total_seconds())}S"


def render(data: Any) -> str:
    """A dict result in words: its message if it has one, else its fields."""
    if isinstance(data, Mapping):
        for key in ("message", "text", "summary"):
            if isinstance(data.get(key), str) and data[key]:
                return str(data[key])
        parts = [f"{str(k).replace('_', ' ')}: {render(v) if isinstance(v, Mapping | list) else v}"
                 for k, v in data.items()]
        return "Done — " + "; ".join(parts) if parts else "Done."
    if isinstance(data, list):
        return "\n".join(f"• {render(item) if isinstance(item, Mapping) else item}" for item in data) or "Nothing."
    return str(data)
