"""``hearth.testing.TestAssistant``: what a skill author's test gets is a real hearth."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pytest

from hearth.sdk import DateTime, Skill, SkillContext, Text, intent
from hearth.testing import TestAssistant, Turn


class ShoppingSkill(Skill):
    """A shopping list."""

    name = "shopping"
    permissions = ("storage", "messages")
    config_schema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {"shop": {"type": "string"}},
                                               "additionalProperties": False}

    @intent("add", slots={"item": Text()}, examples=["put {item} on my shopping list"], side_effects=True)
    async def add(self, params: dict[str, Any], context: SkillContext) -> str:
        items = await context.storage.get("items", [])
        await context.storage.set("items", [*items, params["item"]])
        return f"Added {params['item']}."

    @intent("show", examples=["what is on my shopping list"])
    async def show(self, params: dict[str, Any], context: SkillContext) -> str:
        items = await context.storage.get("items", [])
        await context.messages.send(f"{len(items)} item(s)")
        shop = context.config.get("shop", "the shop")
        return f"At {shop}: " + ", ".join(items) if items else "Your list is empty."

    @intent("shop_at", slots={"when": DateTime()}, examples=["go shopping {when}"])
    async def shop_at(self, params: dict[str, Any], context: SkillContext) -> str:
        await context.messages.send_later("Time to go shopping", at=params["when"])
        return f"Shopping at {params['when']:%H:%M} {params['when'].tzname()}."


async def test_a_conversation_with_confirmations_grants_and_config(tmp_path: Path) -> None:
    async with TestAssistant(skills=[ShoppingSkill], tmp_path=tmp_path, timezone="Europe/Oslo") as bot:
        asked = await bot.send("put milk on my shopping list")
        assert asked.buttons == ("Yes", "No")
        denied = await bot.press("Yes")  # storage is not granted yet, as for any skill that is not built in
        assert "hearth skills grant shopping storage" in denied.text
        await bot.grant("shopping", "storage", "messages")
        await bot.send("put milk on my shopping list")
        assert (await bot.press("Yes")).text == "Added milk."
        await bot.send("put bread on my shopping list")
        assert (await bot.press("No")).text == "OK, I won't do that."
        with pytest.raises(AssertionError, match="no button 'Yes'"):
            await bot.press("Yes")
        await bot.config("shopping", {"shop": "Rema"})
        assert (await bot.send("what is on my shopping list")).text == "At Rema: milk"
        assert bot.notices == ["1 item(s)"]
        with pytest.raises(ValueError, match="invalid config for shopping"):
            await bot.config("shopping", {"shop": 7})
        said = await bot.send("go shopping tomorrow at 5pm")
        assert said.text.startswith("Shopping at 17:00 ")  # in the user's time zone
        [scheduled] = await bot.scheduled()
        assert scheduled["text"] == "Time to go shopping"
        assert scheduled["at"].astimezone(ZoneInfo("Europe/Oslo")).hour == 17


async def test_the_model_is_scripted_and_sees_the_skill_as_a_tool() -> None:
    async with TestAssistant(skills=[ShoppingSkill()]) as bot:
        await bot.grant("shopping", "storage", "messages")
        bot.model.script(Turn(tool_calls=[("shopping__show", {})]), Turn(text="Nothing to buy."))
        reply = await bot.send("do I need anything from the shop?")
        assert reply.text == "Nothing to buy."
        tools = [t["function"]["name"] for t in bot.model.requests[0].body["tools"]]
        assert "shopping__add" in tools and "calendar__schedule_meeting" in tools
        assert "Your list is empty." in str(bot.model.requests[1].body["messages"][-1]["content"])
        assert reply.error is None and reply.conversation


async def test_builtins_can_be_left_out_and_the_environment_does_not_leak_in(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_DATABASE_URL", "postgresql+asyncpg://nobody@127.0.0.1:9/none")
    monkeypatch.setenv("AI_MODEL_ENDPOINT", "http://127.0.0.1:9")
    async with TestAssistant(skills=[ShoppingSkill], tmp_path=tmp_path, builtins=False) as bot:
        assert bot.runtime.db.dialect == "sqlite"
        assert (tmp_path / "hearth" / "hearth.db").exists()
        bot.model.script(Turn(text="I am the model."))
        assert (await bot.send("what time is it")).text == "I am the model."
        assert not (tmp_path / "hearth" / "admin.key").exists()


async def test_bad_skills_are_refused_with_the_reason() -> None:
    class Nameless(Skill):
        name = "Not A Name"

        @intent("x")
        def x(self, params: dict[str, Any]) -> str:
            return ""

    with pytest.raises(Exception, match="not valid"):
        async with TestAssistant(skills=[Nameless]):
            pass

    class Time(Skill):
        name = "time"

        @intent("x")
        def x(self, params: dict[str, Any]) -> str:
            return ""

    with pytest.raises(ValueError, match="already loaded"):
        async with TestAssistant(skills=[Time]):
            pass
