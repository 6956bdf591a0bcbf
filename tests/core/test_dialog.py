"""The dialog before the model: skills answer without any model; side effects wait for a yes; missing
slots are asked for; unsure matches are not guessed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

import pytest

from hearth.core.identity import actor_for
from hearth.runtime import Runtime
from hearth.sdk import DateTime, Duration, Skill, Text, intent
from hearth.skills.invoke import InProcess
from hearth.skills.loader import manifest_of
from hearth.skills.registry import LoadedSkill
from hearth.testing.modelsim import ModelSimulator, Turn
from hearth.types import Actor, Envelope, utcnow
from tests.support.runtime import send


class BookingSkill(Skill):
    """Books rooms."""

    name = "rooms"
    booked: ClassVar[list[dict[str, Any]]] = []

    @intent("book_room", slots={"room": Text(), "start": DateTime(), "length": Duration(required=False)},
            examples=["book room {room} {start} for {length}", "book room {room} {start}"], side_effects=True)
    def book(self, params: dict[str, Any]) -> dict[str, Any]:
        self.booked.append(params)
        return {"message": f"Room {params['room']} is booked for {params['start']:%H:%M}."}

    @intent("free_rooms", examples=["which rooms are free", "list free rooms"])
    def free(self, params: dict[str, Any]) -> str:
        return "Rooms A and B are free."


@pytest.fixture
async def rooms(runtime: Runtime) -> BookingSkill:
    skill = BookingSkill()
    skill.booked = []
    runtime.skills.add(LoadedSkill(manifest_of(BookingSkill, "test"), InProcess(skill), "builtin", "test"))
    return skill


async def say(runtime: Runtime, actor: Actor, text: str, conversation: str | None = None,
              action: str | None = None) -> Any:
    if action is None:
        return await send(runtime, actor, text, conversation=conversation)
    envelope = Envelope(id=f"press-{action}", channel="test", sender=actor, text=text, conversation=conversation,
                        action=action)
    submission = await runtime.inbox.submit(envelope)
    async for reply in submission.replies():
        if reply.final:
            return reply
    raise AssertionError("no final reply")


async def test_skills_answer_with_no_model_at_all(runtime: Runtime, admin: Actor, sim: ModelSimulator) -> None:
    await sim.stop()
    outcome = await send(runtime, admin, "what time is it?")
    assert outcome.final.error is None
    assert outcome.text.startswith("It is ")
    listed = await send(runtime, admin, "/time")
    assert "/time now" in listed.text and "/time time_in place=..." in listed.text
    elsewhere = await send(runtime, admin, "what time is it in Tokyo")
    assert elsewhere.text.startswith("In Tokyo it is") and "JST" in elsewhere.text
    # and an unmatched message still gets the clear no-model answer
    other = await send(runtime, admin, "write me a poem")
    assert other.final.error is not None and other.final.error.code == "model_unavailable"


async def test_side_effects_wait_for_a_yes(runtime: Runtime, admin: Actor, rooms: BookingSkill,
                                           sim: ModelSimulator) -> None:
    asked = await send(runtime, admin, "book room A tomorrow at 3pm for 1 hour")
    assert asked.text.startswith("Shall I ") and "room: A" in asked.text
    assert [b.label for b in asked.final.buttons] == ["Yes", "No"]
    assert rooms.booked == []
    done = await send(runtime, admin, "yes", conversation=asked.conversation)
    assert done.text == "Room A is booked for 15:00."
    assert len(rooms.booked) == 1 and rooms.booked[0]["length"].total_seconds() == 3600
    # a no cancels; a button press with the right token confirms
    asked = await send(runtime, admin, "book room B tomorrow at 4pm", conversation=asked.conversation)
    declined = await send(runtime, admin, "no", conversation=asked.conversation)
    assert declined.text == "OK, I won't do that." and len(rooms.booked) == 1
    asked = await send(runtime, admin, "book room C tomorrow at 5pm", conversation=asked.conversation)
    yes_button = asked.final.buttons[0]
    pressed = await say(runtime, admin, "Yes", asked.conversation, action=yes_button.id)
    assert pressed.text == "Room C is booked for 17:00." and len(rooms.booked) == 2
    stale = await say(runtime, admin, "Yes", asked.conversation, action=yes_button.id + "x")
    # no pending action any more: the press is an ordinary message for the model; nothing is booked again
    assert len(rooms.booked) == 2 and stale.text == "You said: Yes"


async def test_missing_slots_are_asked_for(runtime: Runtime, admin: Actor, rooms: BookingSkill) -> None:
    asked = await send(runtime, admin, "/rooms book_room room=A")
    assert asked.text == "Please tell me start (for example 'tomorrow at 3pm')."
    wrong = await send(runtime, admin, "banana", conversation=asked.conversation)
    assert wrong.text.startswith("Sorry — could not read 'banana' as a date and time")
    confirm = await send(runtime, admin, "tomorrow at 9am", conversation=asked.conversation)
    assert confirm.text.startswith("Shall I ")
    done = await send(runtime, admin, "yes", conversation=asked.conversation)
    assert done.text == "Room A is booked for 09:00."


async def test_a_question_survives_a_restart(runtime_factory, sim: ModelSimulator) -> None:  # type: ignore[no-untyped-def]
    first = await runtime_factory()
    await first.start(serving=False)
    first.skills.add(LoadedSkill(manifest_of(BookingSkill, "test"), InProcess(BookingSkill()), "builtin", "test"))
    user = await first.users.get_user_by_name("admin")
    assert user is not None
    asked = await send(first, actor_for(user), "book room Z tomorrow at 2pm")
    second = await runtime_factory()
    await second.start(serving=False)
    skill = BookingSkill()
    skill.booked = []
    second.skills.add(LoadedSkill(manifest_of(BookingSkill, "test"), InProcess(skill), "builtin", "test"))
    done = await send(second, actor_for(user), "yes", conversation=asked.conversation)
    assert done.text == "Room Z is booked for 14:00." and len(skill.booked) == 1


async def test_the_models_side_effect_calls_are_confirmed_too(runtime: Runtime, admin: Actor, rooms: BookingSkill,
                                                              sim: ModelSimulator) -> None:
    sim.script(Turn(tool_calls=[("rooms__book_room", {"room": "D", "start": "2030-01-02T10:00:00+00:00"})]))
    asked = await send(runtime, admin, "I need a room early in January 2030, D would be nice")
    assert asked.text.startswith("Shall I book room") and "room: D" in asked.text
    assert rooms.booked == [] and len(sim.requests) == 1
    done = await send(runtime, admin, "yes", conversation=asked.conversation)
    assert done.text == "Room D is booked for 10:00." and len(rooms.booked) == 1
    assert len(sim.requests) == 1  # the confirmation ran the tool; no model needed


async def test_permissions_are_checked_before_running(runtime: Runtime, rooms: BookingSkill) -> None:
    guest = await runtime.auth.create_user("visitor", "guest")
    outcome = await send(runtime, actor_for(guest.user), "which rooms are free")
    assert outcome.text == "You are not allowed to do that."


async def test_reminders_arrive_on_the_same_channel(runtime: Runtime, admin: Actor) -> None:
    delivered = []

    class Capture:
        async def deliver(self, message: Any) -> bool:
            delivered.append(message)
            return True

    runtime.messenger.add_deliverer("test", Capture())
    asked_at = utcnow()  # the admin's zone is UTC
    set_up = await send(runtime, admin, "remind me in 10 minutes to water the plants")
    # "today at 14:10", or "on Wed 25 Nov at 00:01" when asked just before midnight (the minute may tick over)
    due = [asked_at + timedelta(minutes=10, seconds=s) for s in (0, 60)]
    said = {("today" if d.date() == asked_at.date() else f"on {d:%a %d %b}") + f" at {d:%H:%M}" for d in due}
    assert set_up.text in {f"OK — I'll remind you {when} to water the plants." for when in said}, set_up.text
    listed = await send(runtime, admin, "what are my reminders", conversation=set_up.conversation)
    assert "water the plants" in listed.text and "#1" in listed.text
    # time passes: make it due, and let the messenger deliver it
    from sqlalchemy import update

    from hearth.store.schema import scheduled_messages

    await runtime.db.write(lambda c: c.execute(update(scheduled_messages).values(due_at=utcnow())))
    assert await runtime.messenger.deliver_due() == 1
    assert [m.text for m in delivered] == ["⏰ Reminder: water the plants"]
    assert delivered[0].conversation == set_up.conversation
    history = await runtime.conversations.history(set_up.conversation)
    assert history[-1].content == "⏰ Reminder: water the plants" and history[-1].meta["notice"] is True
    assert await runtime.messenger.deliver_due() == 0  # once
