"""The built-in calendar: its store, its intents (called directly and through the matcher and the
registry), the .ics export, the CalDAV backend against a real Radicale server, and the seed's template."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import icalendar
import pytest

from hearth.sdk import SkillContext, SkillFailed
from hearth.skills.builtin.calendar import CalendarSkill
from hearth.skills.builtin.calendar.skill import next_free_slot, window
from hearth.skills.invoke import InProcess
from hearth.skills.loader import manifest_of
from hearth.skills.registry import LoadedSkill, SkillRegistry
from hearth.skills.services import ContextFactory
from hearth.store import Database, PlainTextCodec, UserRecord, UserRepository, upgrade
from hearth.store.calendar import CalendarEvent, CalendarRepository
from hearth.store.skills import SkillRepository
from hearth.types import Actor, SkillCall, SkillResult
from tests.support.radicale import Radicale
from tests.support.radicale import radicale as radicale  # the fixture, requested by name below
from tests.support.seed import SEED_TEMPLATE

SHANGHAI = ZoneInfo("Asia/Shanghai")
# a fixed Monday morning in Shanghai for the direct handler calls: 09:00 CST = 01:00 UTC
NOW = datetime(2031, 3, 3, 1, 0, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in March 2031, Shanghai time."""
    return datetime(2031, 3, day, hour, minute, tzinfo=SHANGHAI)


# --- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture
async def alice(db: Database) -> UserRecord:
    return await UserRepository(db).create_user("alice", timezone="Asia/Shanghai")


@pytest.fixture
def events(db: Database) -> CalendarRepository:
    return CalendarRepository(db)


@pytest.fixture
def skill(events: CalendarRepository) -> CalendarSkill:
    return CalendarSkill(events, environ={})


@pytest.fixture
def actor(alice: UserRecord) -> Actor:
    return Actor(user_id=alice.id, name="alice", channel="test", timezone="Asia/Shanghai")


def contexts(db: Database) -> ContextFactory:
    return ContextFactory(SkillRepository(db, PlainTextCodec()), None, None, None)


def context_for(db: Database, actor: Actor, *, config: Mapping[str, Any] | None = None,
                now: datetime = NOW) -> SkillContext:
    return contexts(db).build(skill="calendar", actor=actor, conversation_id="conv-1", channel="test",
                              config=config or {}, capabilities=(), now=now)


def registry_with(db: Database, skill: Any, cls: type[Any], *, origin: str = "builtin",
                  source: str = "builtin") -> SkillRegistry:
    registry = SkillRegistry(SkillRepository(db, PlainTextCodec()), contexts(db))
    registry.add(LoadedSkill(manifest_of(cls, source), InProcess(skill), origin, source))
    assert not registry.problems
    return registry


@pytest.fixture
def registry(db: Database, skill: CalendarSkill) -> SkillRegistry:
    return registry_with(db, skill, CalendarSkill)


async def say(registry: SkillRegistry, actor: Actor, text: str, *, tool: str | None = None) -> SkillResult:
    """What hearth does with a sentence that a template explains: match it, then run the intent."""
    match = registry.match(text, actor)
    assert match is not None, text
    assert (match.missing, dict(match.problems)) == ((), {}), text
    if tool is not None:
        assert match.tool == tool, text
    return await registry.call(SkillCall("call-1", match.tool, match.params, actor, "conv-1"))


def data(result: SkillResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    parsed: dict[str, Any] = json.loads(result.content)
    return parsed


def tomorrow_at(hour: int, tz: ZoneInfo = SHANGHAI) -> datetime:
    today = datetime.now(tz).date()
    return datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=tz).replace(hour=hour)


# --- the store -----------------------------------------------------------------------------------------------


async def test_repository_ranges_overlaps_and_user_scope(database_url: str) -> None:
    db = Database(database_url)
    await upgrade(db)
    try:
        users = UserRepository(db)
        alice, bob = await users.create_user("alice"), await users.create_user("bob")
        repo = CalendarRepository(db)
        late = await repo.add(alice.id, "Review", at(3, 16), at(3, 17), location="Room 2", description="Q1 plans")
        early = await repo.add(alice.id, "Standup", at(3, 10), at(3, 10, 15))
        await repo.add(bob.id, "Bob's thing", at(3, 10), at(3, 11))

        assert early.starts_at == datetime(2031, 3, 3, 2, 0, tzinfo=UTC)
        assert early.starts_at.tzinfo is UTC and early.uid == f"{early.id}@hearth"
        assert await repo.get(alice.id, late.id) == late
        assert await repo.get(bob.id, late.id) is None  # another user's id finds nothing
        assert [e.title for e in await repo.between(alice.id, at(3, 0), at(4, 0))] == ["Standup", "Review"]
        # touching ends do not overlap; one minute inside does
        assert await repo.overlapping(alice.id, at(3, 10, 15), at(3, 16)) == []
        assert [e.id for e in await repo.overlapping(alice.id, at(3, 15, 59), at(3, 16, 30))] == [late.id]
        assert await repo.overlapping(alice.id, at(3, 16), at(3, 17), exclude_id=late.id) == []

        moved = await repo.update(alice.id, late.id, starts_at=at(4, 9), ends_at=at(4, 10))
        assert (moved.starts_at, moved.location, moved.description) == (at(4, 9), "Room 2", "Q1 plans")
        assert moved.updated_at >= late.updated_at

        assert await repo.cancel(bob.id, early.id) is None  # not bob's to cancel
        cancelled = await repo.cancel(alice.id, early.id)
        assert cancelled is not None and cancelled.cancelled_at is not None
        assert await repo.cancel(alice.id, early.id) is None  # already cancelled
        assert [e.id for e in await repo.all(alice.id)] == [late.id]
    finally:
        await db.aclose()


async def test_find_by_title_words_or_id_prefix(events: CalendarRepository, alice: UserRecord) -> None:
    past = await events.add(alice.id, "Team sync", at(1, 10), at(1, 11))
    soon = await events.add(alice.id, "Team sync", at(5, 10), at(5, 11))
    bob = await events.add(alice.id, "Meeting with Bob", at(4, 10), at(4, 11))
    plain = await events.add(alice.id, "Meeting", at(6, 10), at(6, 11))
    await events.add(alice.id, "100% done_party", at(7, 10), at(7, 11))

    assert await events.find(alice.id, "team sync", now=NOW) == [soon, past]  # upcoming first
    assert await events.find(alice.id, "my meeting with bob", now=NOW) == [bob]  # the most words win
    assert await events.find(alice.id, "meeting", now=NOW) == [bob, plain]
    assert await events.find(alice.id, plain.id[:6], now=NOW) == [plain]
    assert await events.find(alice.id, "dentist", now=NOW) == []
    assert await events.find(alice.id, "%", now=NOW) == []  # LIKE wildcards are matched literally


def test_next_free_slot_steps_in_quarter_hours_within_a_week() -> None:
    def event(start: datetime, end: datetime, id: str = "x") -> CalendarEvent:
        return CalendarEvent(id, 1, "Busy", start, end, None, None, id, NOW, NOW)

    busy = [event(at(3, 15), at(3, 15, 30), "a"), event(at(3, 15, 30), at(3, 16, 40), "b")]
    assert next_free_slot(busy, at(3, 15, 10), timedelta(hours=1)) == at(3, 16, 45)
    assert next_free_slot(busy, at(3, 14), timedelta(minutes=30)) == at(3, 14, 15)
    assert next_free_slot(busy, at(3, 15), timedelta(minutes=30), exclude="b") == at(3, 15, 30)
    assert next_free_slot([event(at(3, 0), at(12, 0))], at(3, 9), timedelta(minutes=30)) is None


# --- the intents, called directly ------------------------------------------------------------------------------


async def test_schedule_stores_utc_and_answers_in_the_users_zone(skill: CalendarSkill, db: Database, actor: Actor,
                                                                 events: CalendarRepository) -> None:
    result = await skill.schedule_meeting({"start": at(3, 15), "duration": timedelta(minutes=45), "title": "Review",
                                           "location": "Room 101"}, context_for(db, actor))
    assert result.data is not None
    assert {k: result.data[k] for k in ("status", "title", "start", "end")} == {
        "status": "confirmed", "title": "Review", "start": "2031-03-03T15:00:00+08:00",
        "end": "2031-03-03T15:45:00+08:00"}
    stored = await events.get(actor.user_id, result.data["meeting_id"])
    assert stored is not None
    assert (stored.starts_at, stored.ends_at) == (datetime(2031, 3, 3, 7, 0, tzinfo=UTC),
                                                  datetime(2031, 3, 3, 7, 45, tzinfo=UTC))
    assert result.text.startswith("Scheduled “Review” on Mon 3 Mar, 15:00–15:45 at Room 101 (CST)")

    defaults = await skill.schedule_meeting({"start": at(3, 17)}, context_for(db, actor))
    assert defaults.data is not None
    assert (defaults.data["title"], defaults.data["end"]) == ("Meeting", "2031-03-03T17:30:00+08:00")


async def test_a_conflict_is_refused_with_the_conflicts_and_the_next_free_slot(
        skill: CalendarSkill, db: Database, actor: Actor, events: CalendarRepository) -> None:
    context = context_for(db, actor)
    await skill.schedule_meeting({"start": at(3, 15), "title": "Standup"}, context)
    await skill.schedule_meeting({"start": at(3, 15, 30), "duration": timedelta(hours=1), "title": "Review"}, context)

    with pytest.raises(SkillFailed) as caught:
        await skill.schedule_meeting({"start": at(3, 15, 15), "duration": timedelta(minutes=30)}, context)
    assert caught.value.code == "conflict"
    message = caught.value.message
    assert "“Standup” (Mon 3 Mar, 15:00–15:30 CST)" in message
    assert "“Review” (Mon 3 Mar, 15:30–16:30 CST)" in message
    assert "The next free 30-minute slot is Mon 3 Mar, 16:30–17:00 (CST; start=2031-03-03T16:30:00+08:00)" in message
    assert len(await events.all(actor.user_id)) == 2  # nothing was booked


async def test_list_ranges_in_the_users_zone(skill: CalendarSkill, db: Database, actor: Actor) -> None:
    context = context_for(db, actor)
    for start, title in ((at(3, 8), "Breakfast"), (at(3, 15), "Review"), (at(4, 0, 30), "Night call"),
                         (at(10, 9), "Planning"), (at(17, 9), "Far away")):
        await skill.schedule_meeting({"start": start, "title": title}, context)

    async def titles(**params: Any) -> list[str]:
        result = await skill.list_events(params, context)
        assert result.data is not None
        return [e["title"] for e in result.data["events"]]

    # "today" is Shanghai's Monday 3 March, all of it; 00:30 CST on the 4th is still the 3rd in UTC
    assert await titles(range="today") == ["Breakfast", "Review"]
    assert await titles(range="tomorrow") == ["Night call"]
    assert await titles(range="this week") == ["Breakfast", "Review", "Night call"]
    assert await titles(range="next week") == ["Planning"]
    assert await titles() == ["Review", "Night call"]  # from now (09:00) for 7 days: not 10 March 09:00
    assert await titles(start=at(10, 0)) == ["Planning"]  # a day, from its midnight
    with pytest.raises(SkillFailed):
        await skill.list_events({"start": at(10, 0), "end": at(9, 0)}, context)

    lines = (await skill.list_events({"range": "today"}, context)).text.splitlines()
    assert lines[:2] == ["Your calendar today (CST):", "Monday 3 March"]
    assert lines[2].startswith("  08:00–08:30  Breakfast  [") and lines[3].startswith("  15:00–15:30  Review  [")
    later = context_for(db, actor, now=NOW + timedelta(days=30))
    assert (await skill.list_events({"range": "next week"}, later)).text == "Nothing on your calendar next week."


async def test_move_keeps_the_length_and_refuses_conflicts_and_ambiguity(
        skill: CalendarSkill, db: Database, actor: Actor, events: CalendarRepository) -> None:
    context = context_for(db, actor)
    standup = await events.add(actor.user_id, "Standup", at(3, 10), at(3, 10, 15))
    await events.add(actor.user_id, "Review", at(3, 14), at(3, 15))
    moved = await skill.move_event({"event": "standup to", "start": at(3, 11)}, context)
    assert moved.data is not None and moved.data["status"] == "moved"
    assert moved.text == "Moved “Standup” to Mon 3 Mar, 11:00–11:15 (CST)."
    after = await events.get(actor.user_id, standup.id)
    assert after is not None and (after.starts_at, after.ends_at) == (at(3, 11), at(3, 11, 15))

    with pytest.raises(SkillFailed) as caught:
        await skill.move_event({"event": "standup", "start": at(3, 14, 30)}, context)
    assert caught.value.code == "conflict" and "“Review”" in caught.value.message
    assert "start=2031-03-03T15:00:00+08:00" in caught.value.message

    await events.add(actor.user_id, "Standup", at(4, 10), at(4, 10, 15))
    with pytest.raises(SkillFailed) as caught:
        await skill.move_event({"event": "standup", "start": at(5, 9)}, context)
    assert caught.value.code == "ambiguous"
    assert "matches 2 events" in caught.value.message and f"[{standup.id[:8]}]" in caught.value.message
    by_id = await skill.move_event({"event": standup.id[:8], "start": at(5, 9), "duration": timedelta(hours=1)},
                                   context)
    assert by_id.data is not None and by_id.data["end"] == "2031-03-05T10:00:00+08:00"

    with pytest.raises(SkillFailed) as caught:
        await skill.move_event({"event": "dentist", "start": at(5, 9)}, context)
    assert caught.value.code == "not_found" and "“dentist”" in caught.value.message


async def test_cancel(skill: CalendarSkill, db: Database, actor: Actor, events: CalendarRepository) -> None:
    context = context_for(db, actor)
    review = await events.add(actor.user_id, "Quarterly review", at(3, 14), at(3, 15))
    result = await skill.cancel_event({"event": "review"}, context)
    assert result.text == "Cancelled “Quarterly review” (Mon 3 Mar, 14:00–15:00, CST)."
    assert result.data is not None and result.data["status"] == "cancelled"
    gone = await events.get(actor.user_id, review.id)
    assert gone is not None and gone.cancelled_at is not None
    assert await events.between(actor.user_id, at(3, 0), at(4, 0)) == []
    with pytest.raises(SkillFailed) as caught:
        await skill.cancel_event({"event": "review"}, context)
    assert caught.value.code == "not_found"


async def test_ics_export_round_trips(skill: CalendarSkill, db: Database, actor: Actor,
                                      events: CalendarRepository) -> None:
    review = await events.add(actor.user_id, "Review; Q1, plans", at(3, 15), at(3, 16), location="Room 101",
                              description="Bring the numbers.\nAnd coffee.")
    standup = await events.add(actor.user_id, "Standup", at(4, 9), at(4, 9, 15))
    cancelled = await events.add(actor.user_id, "Dropped", at(5, 9), at(5, 10))
    await events.cancel(actor.user_id, cancelled.id)

    body = await skill.export_ics(actor.user_id)
    calendar = icalendar.Calendar.from_ical(body)
    assert str(calendar["prodid"]) == "-//hearth//calendar 1.0//EN" and str(calendar["version"]) == "2.0"
    parsed = {str(c["uid"]): c for c in calendar.walk("VEVENT")}
    assert set(parsed) == {review.uid, standup.uid}
    vevent = parsed[review.uid]
    assert (str(vevent["summary"]), str(vevent["location"]), str(vevent["description"])) == (
        "Review; Q1, plans", "Room 101", "Bring the numbers.\nAnd coffee.")
    assert vevent["dtstart"].dt == datetime(2031, 3, 3, 7, 0, tzinfo=UTC)
    assert vevent["dtstart"].dt.utcoffset() == timedelta(0) and vevent["dtend"].dt == review.ends_at
    assert vevent["dtstamp"].dt.utcoffset() == timedelta(0)
    assert b"DTSTART:20310303T070000Z\r\n" in body  # UTC, no VTIMEZONE needed

    result = await skill.export_calendar({}, context_for(db, actor))
    assert result.data is not None and result.data["ics"].encode() == body
    assert result.data["events"] == 2 and "GET /v1/calendar.ics" in result.text


async def test_config_problems_say_what_to_set(skill: CalendarSkill, db: Database, actor: Actor) -> None:
    cases = [
        ({"backend": "outlook"}, "backend=local"),
        ({"backend": "caldav"}, "hearth skills config calendar url="),
        ({"backend": "caldav", "url": "caldav.example.com"}, "must start with https://"),
        ({"backend": "caldav", "url": "https://dav.example.com/", "username": "alice"},
         "hearth skills config calendar password="),
        ({"backend": "caldav", "url": "https://dav.example.com/", "username": "alice",
          "password": "$env:NOT_SET_ANYWHERE"}, "environment variable NOT_SET_ANYWHERE"),
    ]
    for config, advice in cases:
        with pytest.raises(SkillFailed) as caught:
            await skill.list_events({}, context_for(db, actor, config=config))
        assert advice in caught.value.message, (config, caught.value.message)
        assert caught.value.code == "config"


# --- through the matcher and the registry ------------------------------------------------------------------


async def test_schedule_by_sentence_in_shanghai(registry: SkillRegistry, actor: Actor,
                                                events: CalendarRepository) -> None:
    match = registry.match("schedule a meeting tomorrow at 3pm for half an hour", actor)
    assert match is not None and match.tool == "calendar__schedule_meeting" and match.confirm
    result = await say(registry, actor, "schedule a meeting tomorrow at 3pm for half an hour")
    answer = data(result)
    assert answer["status"] == "confirmed" and answer["title"] == "Meeting"
    stored = await events.get(actor.user_id, answer["meeting_id"])
    assert stored is not None
    assert stored.starts_at == tomorrow_at(15).astimezone(UTC)
    assert (stored.starts_at.hour, stored.starts_at.minute, stored.starts_at.tzinfo) == (7, 0, UTC)
    assert stored.ends_at - stored.starts_at == timedelta(minutes=30)
    assert "15:00–15:30" in result.display and "(CST)" in result.display

    refused = await say(registry, actor, "book interview tomorrow at 3:15pm")
    assert refused.is_error and refused.error_code == "conflict"
    assert "“Meeting”" in refused.content and "15:00–15:30 CST" in refused.content
    assert "next free 30-minute slot" in refused.content and "15:30–16:00" in refused.content
    assert len(await events.all(actor.user_id)) == 1


async def test_list_move_cancel_and_export_by_sentence(registry: SkillRegistry, actor: Actor,
                                                       events: CalendarRepository) -> None:
    data(await say(registry, actor, "schedule standup tomorrow at 9am for 15 minutes",
                   tool="calendar__schedule_meeting"))
    data(await say(registry, actor, "book dentist tomorrow at 11am", tool="calendar__schedule_meeting"))

    listed = await say(registry, actor, "what is on my calendar tomorrow", tool="calendar__list_events")
    assert [e["title"] for e in data(listed)["events"]] == ["standup", "dentist"]
    assert "09:00–09:15  standup" in listed.display
    assert [e["title"] for e in data(await say(registry, actor, "what's on my calendar"))["events"]] == [
        "standup", "dentist"]

    moved = data(await say(registry, actor, "move standup to tomorrow at 5pm", tool="calendar__move_event"))
    assert moved["start"] == tomorrow_at(17).isoformat() and moved["end"] == tomorrow_at(17).replace(
        minute=15).isoformat()
    clash = await say(registry, actor, "reschedule dentist to tomorrow at 5:10pm for 45 minutes")
    assert clash.error_code == "conflict" and "“standup”" in clash.content

    cancelled = data(await say(registry, actor, "remove dentist from my calendar", tool="calendar__cancel_event"))
    assert cancelled["status"] == "cancelled"
    assert [e.title for e in await events.all(actor.user_id)] == ["standup"]

    exported = await say(registry, actor, "export my calendar", tool="calendar__export_calendar")
    assert "GET /v1/calendar.ics" in exported.display
    assert len(icalendar.Calendar.from_ical(data(exported)["ics"]).walk("VEVENT")) == 1


# --- CalDAV, against a real Radicale server -----------------------------------------------------------------


async def test_caldav_schedule_list_move_cancel(db: Database, actor: Actor, events: CalendarRepository,
                                                radicale: Radicale) -> None:
    name = radicale.make_calendar()
    skill = CalendarSkill(events, environ={"TEST_CALDAV_PASSWORD": radicale.password})
    registry = registry_with(db, skill, CalendarSkill)
    await registry.configure("calendar", {"backend": "caldav", "url": radicale.url, "username": radicale.user,
                                          "password": "$env:TEST_CALDAV_PASSWORD", "calendar": name})

    made = data(await say(registry, actor, "schedule a meeting tomorrow at 3pm for half an hour at Room 7"))
    on_server = radicale.events(name)
    assert [(e["uid"], e["summary"], e["location"]) for e in on_server] == [(made["meeting_id"], "Meeting", "Room 7")]
    assert on_server[0]["dtstart"] == tomorrow_at(15) and on_server[0]["dtend"] == tomorrow_at(15).replace(minute=30)
    assert await events.all(actor.user_id) == []  # nothing in the local calendar

    refused = await say(registry, actor, "schedule a meeting tomorrow at 3:15pm")
    assert refused.error_code == "conflict" and "start=" in refused.content
    assert len(radicale.events(name)) == 1

    data(await say(registry, actor, "book dentist tomorrow at 5pm"))
    listed = await say(registry, actor, "what is on my calendar tomorrow")
    assert [e["title"] for e in data(listed)["events"]] == ["Meeting", "dentist"]

    data(await say(registry, actor, "move dentist to tomorrow at 6pm"))
    dentist = next(e for e in radicale.events(name) if e["summary"] == "dentist")
    assert (dentist["dtstart"], dentist["dtend"]) == (tomorrow_at(18), tomorrow_at(18).replace(minute=30))

    data(await say(registry, actor, "cancel the meeting Meeting"))
    assert [e["summary"] for e in radicale.events(name)] == ["dentist"]

    exported = await say(registry, actor, "export my calendar")
    assert f"the CalDAV calendar '{name}' at {radicale.url}" in exported.display
    vevents = icalendar.Calendar.from_ical(data(exported)["ics"]).walk("VEVENT")
    assert [(str(v["summary"]), v["dtstart"].dt) for v in vevents] == [("dentist", tomorrow_at(18))]


async def test_caldav_wrong_password_is_a_clear_failure(db: Database, actor: Actor, events: CalendarRepository,
                                                        radicale: Radicale) -> None:
    name = radicale.make_calendar()
    registry = registry_with(db, CalendarSkill(events, environ={"PW": "not-the-password"}), CalendarSkill)
    await registry.configure("calendar", {"backend": "caldav", "url": radicale.url, "username": radicale.user,
                                          "password": "$env:PW", "calendar": name})
    result = await say(registry, actor, "what's on my calendar")
    assert result.is_error and result.error_code == "caldav_auth"
    assert f"The CalDAV server at {radicale.url} refused the login (user 'alice', HTTP 401)" in result.content
    assert "hearth skills config calendar" in result.content and "not-the-password" not in result.content


# --- the seed's template, unchanged, as a user's own skill ---------------------------------------------------


async def test_the_seed_template_runs_unchanged(db: Database, actor: Actor, tmp_path: Path) -> None:
    path = tmp_path / "calendar_skill.py"
    path.write_text(SEED_TEMPLATE)
    spec = importlib.util.spec_from_file_location("seed_calendar_skill", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seed = module.CalendarSkill
    assert manifest_of(seed, str(path)).name == "calendar"

    registry = registry_with(db, seed(), seed, origin="folder", source=str(path))
    call = SkillCall("call-1", "calendar__schedule_meeting",
                     {"start": "2031-03-03T15:00:00+08:00", "duration": "30 minutes"}, actor, "conv-1")
    result = await registry.call(call)
    assert not result.is_error
    assert '"meeting_id": "12345"' in result.content and '"status": "confirmed"' in result.content


async def test_a_missing_start_is_asked_for_and_the_confirmation_reads_in_the_users_zone(tmp_path: Path) -> None:
    from hearth.testing import TestAssistant

    async with TestAssistant(tmp_path=tmp_path, timezone="Europe/Oslo") as bot:
        asked = await bot.send("schedule a meeting")
        assert asked.text == "Please tell me when the meeting starts (for example 'tomorrow at 3pm')."
        confirm = await bot.send("friday at 11")
        zone = confirm.text.split("(")[1].split(")")[0]
        assert confirm.text.startswith("Shall I schedule a meeting — start: Fri ") and ", 11:00 (" in confirm.text
        assert zone in ("CET", "CEST") and "refused" not in confirm.text and confirm.buttons == ("Yes", "No")
        done = await bot.press("Yes")
        assert done.text.startswith("Scheduled “Meeting” on Fri ") and f"({zone})" in done.text
        assert "UTC+" not in done.text
        assert bot.model.requests == []  # no model was needed for any of it


@pytest.mark.parametrize(("now", "chosen", "start", "end"), [
    (datetime(2026, 5, 12, 9, 0), "this weekend", datetime(2026, 5, 16), datetime(2026, 5, 18)),  # a Tuesday
    (datetime(2026, 5, 12, 9, 0), "next weekend", datetime(2026, 5, 23), datetime(2026, 5, 25)),
    (datetime(2026, 5, 16, 10, 0), "this weekend", datetime(2026, 5, 16, 10, 0), datetime(2026, 5, 18)),  # Saturday
    (datetime(2026, 5, 17, 10, 0), "this weekend", datetime(2026, 5, 17, 10, 0), datetime(2026, 5, 18)),  # Sunday
    (datetime(2026, 5, 17, 10, 0), "next weekend", datetime(2026, 5, 23), datetime(2026, 5, 25)),
])
def test_weekend_ranges(now: datetime, chosen: str, start: datetime, end: datetime) -> None:
    oslo = ZoneInfo("Europe/Oslo")
    begins, ends, label = window({"range": chosen}, now.replace(tzinfo=oslo), oslo)
    assert (begins, ends, label) == (start.replace(tzinfo=oslo), end.replace(tzinfo=oslo), chosen)
