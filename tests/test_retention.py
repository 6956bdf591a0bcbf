"""MESSAGE_RETENTION_DAYS: old messages go, recent ones and unanswered turns stay."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from hearth.core.identity import actor_for
from hearth.runtime import Runtime
from hearth.store.schema import messages
from hearth.testing.modelsim import ModelSimulator
from hearth.types import Event, utcnow
from tests.support.runtime import send


async def test_messages_older_than_the_retention_are_purged(runtime_factory, sim: ModelSimulator) -> None:  # type: ignore[no-untyped-def]
    runtime: Runtime = await runtime_factory(message_retention_days=7)
    await runtime.start(serving=False)
    events: list[Event] = []
    runtime.bus.subscribe(events.append)
    user = await runtime.users.get_user_by_name("admin")
    assert user is not None
    old = await send(runtime, actor_for(user), "an old question")
    new = await send(runtime, actor_for(user), "a new question")
    ten_days_ago = utcnow() - timedelta(days=10)
    await runtime.db.write(lambda conn: conn.execute(
        update(messages).where(messages.c.conversation_id == old.conversation).values(created_at=ten_days_ago)))
    assert await runtime.purge_expired() == 2
    assert await runtime.conversations.history(old.conversation) == []
    assert [m.content for m in await runtime.conversations.history(new.conversation)] == [
        "a new question", "You said: a new question"]
    assert [e.properties for e in events if e.name == "retention.purged"] == [{"messages": 2, "days": 7}]


async def test_retention_zero_keeps_everything(runtime: Runtime, admin) -> None:  # type: ignore[no-untyped-def]
    await send(runtime, admin, "keep me")
    long_ago = utcnow() - timedelta(days=900)
    await runtime.db.write(lambda conn: conn.execute(update(messages).values(created_at=long_ago)))
    assert await runtime.purge_expired() == 0
    assert await runtime.conversations.count_messages() == 2
