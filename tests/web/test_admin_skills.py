"""Skills over the management API, through real HTTP on the admin port: list, inspect, enable and disable,
grant capabilities, configure. Every change is audited and kept in the database; bad input changes nothing."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import pytest

from hearth.sdk import Number, Skill, SkillContext, Text, intent
from hearth.skills.invoke import InProcess
from hearth.skills.loader import manifest_of
from hearth.skills.registry import LoadedSkill
from hearth.types import Event
from tests.support.hearth import ADMIN_TOKEN, RunningHearth

TOKEN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class ForecastSkill(Skill):
    """Weather forecasts."""

    name = "forecast"
    version = "2.1.0"
    permissions = ("network", "storage")
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "the default city"},
            "days": {"type": "integer", "minimum": 1, "maximum": 14},
            "api_key": {"type": "string", "writeOnly": True},
        },
        "required": ["city"],
        "additionalProperties": False,
    }

    @intent("forecast", slots={"city": Text(required=False), "days": Number(integer=True, required=False)},
            examples=["weather forecast for {city}"])
    def forecast(self, params: dict[str, Any], context: SkillContext) -> str:
        return f"Sunny in {params.get('city') or context.config['city']}."


@pytest.fixture
def audited(hearth: RunningHearth) -> list[Event]:
    events: list[Event] = []
    hearth.runtime.bus.subscribe(events.append, "admin.skill")
    return events


@pytest.fixture
def forecast(hearth: RunningHearth) -> None:
    hearth.runtime.skills.add(LoadedSkill(manifest_of(ForecastSkill, "/skills/forecast"),
                                          InProcess(ForecastSkill()), "folder", "/skills/forecast"))


async def test_list_and_inspect_skills(hearth: RunningHearth, forecast: None) -> None:
    async with httpx.AsyncClient(base_url=hearth.admin_url) as client:
        assert (await client.get("/admin/skills")).status_code == 401
        listed = await client.get("/admin/skills", headers=TOKEN)
        assert listed.status_code == 200
        skills = {s["name"]: s for s in listed.json()["skills"]}
        assert set(skills) == {"calendar", "files", "forecast", "reminders", "time"}
        assert listed.json()["problems"] == []
        assert skills["forecast"] == {
            "name": "forecast", "version": "2.1.0", "description": "Weather forecasts.", "origin": "folder",
            "source": "/skills/forecast", "enabled": True, "intents": 1, "permissions": ["network", "storage"],
            "granted": [], "capabilities": []}
        assert skills["files"]["origin"] == "builtin" and skills["files"]["capabilities"] == ["files"]

        detail = (await client.get("/admin/skills/calendar", headers=TOKEN)).json()
        schedule = next(i for i in detail["intents"] if i["name"] == "schedule_meeting")
        assert schedule["tool"] == "calendar__schedule_meeting"
        assert schedule["side_effects"] is True and schedule["permission"] == "tool.calendar.schedule_meeting"
        assert {"name": "duration", "type": "duration", "required": False,
                "description": "how long it lasts (default 30 minutes)"} in schedule["slots"]
        assert "schedule a meeting {start} for {duration}" in schedule["examples"]
        assert detail["config_schema"]["properties"]["password"]["writeOnly"] is True

        missing = await client.get("/admin/skills/weather", headers=TOKEN)
        assert missing.status_code == 404
        assert "calendar, files, forecast, reminders, time" in missing.json()["error"]["message"]


async def test_disable_and_enable_take_effect_at_once(hearth: RunningHearth, audited: list[Event]) -> None:
    chat = {"model": "hearth", "messages": [{"role": "user", "content": "what time is it"}]}
    async with httpx.AsyncClient() as client:
        disabled = await client.post(hearth.admin_url + "/admin/skills/time/disable", headers=TOKEN)
        assert disabled.status_code == 200 and disabled.json()["enabled"] is False
        # the model answers now (the simulator echoes), not the time skill
        answer = await client.post(hearth.http_url + "/v1/chat/completions", headers=hearth.auth(), json=chat)
        assert answer.json()["choices"][0]["message"]["content"] == "You said: what time is it"
        enabled = await client.post(hearth.admin_url + "/admin/skills/time/enable", headers=TOKEN)
        assert enabled.status_code == 200 and enabled.json()["enabled"] is True
        answer = await client.post(hearth.http_url + "/v1/chat/completions", headers=hearth.auth(), json=chat)
        assert answer.json()["choices"][0]["message"]["content"].startswith("It is ")
        unknown = await client.post(hearth.admin_url + "/admin/skills/nope/disable", headers=TOKEN)
        assert unknown.status_code == 404
    assert [(e.name, e.properties["skill"], e.actor.name if e.actor else None) for e in audited] == [
        ("admin.skill_disabled", "time", "admin-token"), ("admin.skill_enabled", "time", "admin-token")]
    states = await hearth.runtime.skill_store.states()
    assert states["time"].enabled is True


async def test_grants(hearth: RunningHearth, forecast: None, audited: list[Event]) -> None:
    url = hearth.admin_url + "/admin/skills/forecast/grants"
    async with httpx.AsyncClient() as client:
        granted = await client.post(url, json={"grant": ["network", "storage", "files"]}, headers=TOKEN)
        assert granted.status_code == 200
        # only what the skill asks for is usable, whatever was granted
        assert granted.json()["granted"] == ["files", "network", "storage"]
        assert granted.json()["capabilities"] == ["network", "storage"]
        both = await client.post(url, json={"grant": ["messages"], "revoke": ["network", "files"]}, headers=TOKEN)
        assert both.json()["granted"] == ["messages", "storage"]
        for bad in ({"grant": ["teleport"]}, {"grant": "network"}, {}, {"grant": [], "revoke": []},
                    {"grant": ["storage"], "revoke": ["storage"]}, {"grant": ["storage"], "also": 1}, [1]):
            refused = await client.post(url, json=bad, headers=TOKEN)
            assert refused.status_code == 400, bad
        unknown = await client.post(url, json={"grant": ["teleport"]}, headers=TOKEN)
        assert "network, storage, messages, files" in unknown.json()["error"]["message"]
        assert (await client.post(url, content=b"{", headers=TOKEN)).status_code == 400
    assert hearth.runtime.skills.get("forecast").granted == {"messages", "storage"}
    assert [e.properties for e in audited] == [
        {"skill": "forecast", "granted": ["files", "network", "storage"], "revoked": []},
        {"skill": "forecast", "granted": ["messages"], "revoked": ["files", "network"]}]


async def test_config_is_checked_and_secrets_are_never_shown(hearth: RunningHearth, forecast: None,
                                                             audited: list[Event]) -> None:
    url = hearth.admin_url + "/admin/skills/forecast/config"
    secret = "s3cr3t-api-key-value"
    async with httpx.AsyncClient() as client:
        saved = await client.put(url, json={"city": "Oslo", "days": 3, "api_key": secret}, headers=TOKEN)
        assert saved.status_code == 200
        assert saved.json()["config"] == {"city": "Oslo", "days": 3, "api_key": "***"}
        shown = (await client.get(hearth.admin_url + "/admin/skills/forecast", headers=TOKEN)).json()
        assert shown["config"]["api_key"] == "***" and secret not in str(shown)
        # what GET shows can be sent back: the masked secret keeps its value
        shown["config"]["days"] = 5
        again = await client.put(url, json=shown["config"], headers=TOKEN)
        assert again.status_code == 200
        for bad, words in (({"city": "Oslo", "days": "many"}, "days"), ({"days": 2}, "city"),
                           ({"city": "Oslo", "colour": "red"}, "colour"), ({"city": "Oslo", "days": 99}, "days"),
                           ({"city": "Oslo", "api_key": 12345}, "api_key")):
            refused = await client.put(url, json=bad, headers=TOKEN)
            assert refused.status_code == 400, bad
            assert refused.json()["error"]["code"] == "invalid_config"
            assert words in refused.json()["error"]["message"]
            assert "12345" not in refused.json()["error"]["message"]
        assert (await client.put(url, json=["city"], headers=TOKEN)).status_code == 400
        assert (await client.put(hearth.admin_url + "/admin/skills/nope/config", json={}, headers=TOKEN)
                ).status_code == 404
        # a skill without a config_schema takes no settings
        none = await client.put(hearth.admin_url + "/admin/skills/time/config", json={"x": 1}, headers=TOKEN)
        assert none.status_code == 400
    assert hearth.runtime.skills.get("forecast").config == {"city": "Oslo", "days": 5, "api_key": secret}
    assert (await hearth.runtime.skill_store.states())["forecast"].config["api_key"] == secret
    assert [e.properties for e in audited] == [{"skill": "forecast", "keys": ["api_key", "city", "days"]},
                                               {"skill": "forecast", "keys": ["days"]}]
    assert secret not in str([e.properties for e in audited])
