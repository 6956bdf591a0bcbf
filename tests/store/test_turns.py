"""Turns (complete, fail, attempts, recovery), the history window, summaries and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Connection

from hearth.errors import InvalidRequest, NotFound
from hearth.store import Accepted, ConversationRepository, Database, MessageRecord, NewMessage, UserRecord
from hearth.store.schema import conversations as conversations_table
from hearth.store.schema import messages as messages_table


async def accept(repo: ConversationRepository, user: UserRecord, key: str, text: str = "question",
                 conversation_id: str | None = None) -> Accepted:
    return await repo.accept_message(conversation_id=conversation_id, user_id=user.id, channel="websocket",
                                     external_ref=None, dedup_key=key, text=text)


async def turn(repo: ConversationRepository, user: UserRecord, key: str, conversation_id: str | None,
               *replies: str) -> list[MessageRecord]:
    """A finished turn: the user message (as stored once done) and the replies."""
    accepted = await accept(repo, user, key, f"q-{key}", conversation_id)
    produced = await repo.complete_turn(accepted.message.id, [NewMessage("assistant", r) for r in replies])
    done = await repo.get_message(accepted.message.id)
    assert done is not None
    return [done, *produced]


async def test_complete_turn(conversations: ConversationRepository, alice: UserRecord) -> None:
    accepted = await accept(conversations, alice, "k1")
    produced = await conversations.complete_turn(accepted.message.id, [
        NewMessage("assistant", "", {"tool_calls": [{"id": "c1", "name": "weather", "arguments": {"city": "Oslo"}}]}),
        NewMessage("tool", '{"temp": 3}', {"tool_call_id": "c1"}),
        NewMessage("assistant", "It is 3 °C in Oslo."),
    ])
    assert [(m.role, m.content, m.reply_to, m.status) for m in produced] == [
        ("assistant", "", accepted.message.id, None),
        ("tool", '{"temp": 3}', accepted.message.id, None),
        ("assistant", "It is 3 °C in Oslo.", accepted.message.id, None),
    ]
    assert produced[0].meta["tool_calls"][0]["arguments"] == {"city": "Oslo"}
    assert [m.id for m in produced] == sorted(m.id for m in produced)
    assert all(m.conversation_id == accepted.conversation.id and m.created_at.tzinfo is UTC for m in produced)

    done = await conversations.get_message(accepted.message.id)
    assert done is not None
    assert done.status == "done"
    assert await conversations.reply_for(accepted.message.id) == produced[2]
    conversation = await conversations.get_conversation(accepted.conversation.id)
    assert conversation is not None
    assert conversation.updated_at >= produced[0].created_at
    assert await conversations.pending_turns() == []


async def test_a_closed_turn_cannot_be_completed_again(conversations: ConversationRepository,
                                                       alice: UserRecord) -> None:
    accepted = await accept(conversations, alice, "k1")
    await conversations.complete_turn(accepted.message.id, [NewMessage("assistant", "first")])
    with pytest.raises(InvalidRequest) as caught:
        await conversations.complete_turn(accepted.message.id, [NewMessage("assistant", "second")])
    assert caught.value.code == "turn_closed"
    assert await conversations.count_messages() == 2
    reply = await conversations.reply_for(accepted.message.id)
    assert reply is not None
    assert reply.content == "first"

    failed = await accept(conversations, alice, "k2", conversation_id=accepted.conversation.id)
    assert await conversations.fail_turn(failed.message.id, "model_unavailable", "No model is reachable.")
    with pytest.raises(InvalidRequest) as caught:
        await conversations.complete_turn(failed.message.id, [NewMessage("assistant", "late")])
    assert caught.value.code == "turn_closed"
    with pytest.raises(NotFound):
        await conversations.complete_turn(10_000, [])
    with pytest.raises(InvalidRequest):
        await conversations.complete_turn(failed.message.id, [NewMessage("user", "not a reply")])
    assert await conversations.count_messages() == 3


async def test_fail_turn_and_attempts(conversations: ConversationRepository, alice: UserRecord) -> None:
    accepted = await accept(conversations, alice, "k1")
    assert await conversations.start_attempt(accepted.message.id) == 1
    assert await conversations.start_attempt(accepted.message.id) == 2
    assert await conversations.fail_turn(accepted.message.id, "model_timeout", "The model took too long.")
    failed = await conversations.get_message(accepted.message.id)
    assert failed is not None
    assert (failed.status, failed.error_code, failed.error_message, failed.attempts) == (
        "failed", "model_timeout", "The model took too long.", 2)
    # Only a pending turn can fail, and failing it again changes nothing.
    assert not await conversations.fail_turn(accepted.message.id, "other", "other")
    assert await conversations.get_message(accepted.message.id) == failed
    assert await conversations.reply_for(accepted.message.id) is None
    with pytest.raises(NotFound):
        await conversations.start_attempt(10_000)


async def test_pending_turns(conversations: ConversationRepository, alice: UserRecord) -> None:
    a = await accept(conversations, alice, "a")
    b = await accept(conversations, alice, "b")
    c = await accept(conversations, alice, "c", conversation_id=a.conversation.id)
    assert [m.id for m in await conversations.pending_turns()] == [a.message.id, b.message.id, c.message.id]
    await conversations.complete_turn(b.message.id, [NewMessage("assistant", "ok")])
    await conversations.fail_turn(a.message.id, "x", "y")
    assert [m.id for m in await conversations.pending_turns()] == [c.message.id]


async def test_history_shows_finished_turns_only(db: Database, conversations: ConversationRepository,
                                                 alice: UserRecord) -> None:
    first = await turn(conversations, alice, "1", None, "a1")
    conversation_id = first[0].conversation_id
    pending = await accept(conversations, alice, "2", conversation_id=conversation_id)
    failed = await accept(conversations, alice, "3", conversation_id=conversation_id)
    await conversations.fail_turn(failed.message.id, "x", "y")
    last = await turn(conversations, alice, "4", conversation_id, "tool-ish", "a4")

    history = await conversations.history(conversation_id)
    assert history == first + last
    assert pending.message.id not in [m.id for m in history]

    # A reply whose turn is (somehow) no longer done is hidden with it.
    await db.write(_reopen, last[0].id)
    assert await conversations.history(conversation_id) == first


def _reopen(conn: Connection, /, message_id: int) -> None:
    conn.execute(update(messages_table).where(messages_table.c.id == message_id).values(status="pending"))


async def test_history_windows(conversations: ConversationRepository, alice: UserRecord) -> None:
    everything = await turn(conversations, alice, "k0", None, "a0")
    conversation_id = everything[0].conversation_id
    for i in range(1, 10):
        everything += await turn(conversations, alice, f"k{i}", conversation_id, f"a{i}")
    await turn(conversations, alice, "o1", None, "elsewhere")
    # bounds are turns: the id of a turn's user message (even positions here: question, answer, ...)
    turns = [m.id for m in everything if m.role == "user"]

    assert await conversations.history(conversation_id) == everything
    assert await conversations.history(conversation_id, limit=4) == everything[-4:]
    assert await conversations.history(conversation_id, after_id=turns[7]) == everything[16:]
    assert await conversations.history(conversation_id, before_id=turns[2]) == everything[:4]
    assert await conversations.history(conversation_id, before_id=turns[5], limit=3) == everything[7:10]
    assert await conversations.history(conversation_id, after_id=turns[1], before_id=turns[3]) == everything[4:6]
    assert await conversations.history(conversation_id, after_id=turns[-1]) == []
    assert await conversations.history("0" * 32) == []


async def test_summary_round_trip(conversations: ConversationRepository, alice: UserRecord) -> None:
    accepted = await accept(conversations, alice, "k1")
    await conversations.set_summary(accepted.conversation.id, "Alice asked about Oslo.", accepted.message.id)
    conversation = await conversations.get_conversation(accepted.conversation.id)
    assert conversation is not None
    assert (conversation.summary, conversation.summary_upto) == ("Alice asked about Oslo.", accepted.message.id)
    with pytest.raises(NotFound):
        await conversations.set_summary("0" * 32, "x", 1)


def _age(conn: Connection, /, conversation_id: str, when: datetime) -> None:
    """Make a conversation and all of its messages look as old as ``when``."""
    conn.execute(update(messages_table).where(messages_table.c.conversation_id == conversation_id)
                 .values(created_at=when))
    conn.execute(update(conversations_table).where(conversations_table.c.id == conversation_id)
                 .values(updated_at=when, created_at=when))


async def test_purge_before(db: Database, conversations: ConversationRepository, alice: UserRecord) -> None:
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=10), now - timedelta(days=1)
    cutoff = now - timedelta(days=7)

    # All old: the conversation goes with its messages (a failed turn is not kept either).
    gone = await turn(conversations, alice, "gone", None, "a")
    failed = await accept(conversations, alice, "gone-failed", conversation_id=gone[0].conversation_id)
    await conversations.fail_turn(failed.message.id, "x", "y")
    await conversations.set_summary(gone[0].conversation_id, "old summary", failed.message.id)
    await db.write(_age, gone[0].conversation_id, old)

    # Old, but a turn is still pending: the pending message, its conversation and a summary that
    # covers it stay.
    kept = await accept(conversations, alice, "kept")
    await turn(conversations, alice, "kept-done", kept.conversation.id, "old answer")
    await conversations.set_summary(kept.conversation.id, "covers the pending turn", kept.message.id)
    await db.write(_age, kept.conversation.id, old)

    # Old messages in a conversation that went on: they go, the new ones stay, and a summary of
    # only old messages goes.
    stale = await turn(conversations, alice, "stale-old", None, "old reply")
    await db.write(_age, stale[0].conversation_id, old)
    stale_new = await turn(conversations, alice, "stale-new", stale[0].conversation_id, "new reply")
    await conversations.set_summary(stale[0].conversation_id, "covers old only", stale[-1].id)

    # Same, with a summary that still covers a remaining message: it stays.
    mixed = await turn(conversations, alice, "mixed-old", None, "old reply")
    await db.write(_age, mixed[0].conversation_id, old)
    mixed_new = await turn(conversations, alice, "mixed-new", mixed[0].conversation_id, "new reply")
    await conversations.set_summary(mixed[0].conversation_id, "covers new", mixed_new[-1].id)

    # Empty but updated after the cutoff: stays.
    empty = await conversations.create_conversation(alice.id, "websocket")
    await db.write(_age, empty.id, recent)

    assert await conversations.count_messages() == 3 + 3 + 4 + 4
    assert await conversations.purge_before(cutoff) == 3 + 2 + 2 + 2

    assert await conversations.get_conversation(gone[0].conversation_id) is None
    kept_conversation = await conversations.get_conversation(kept.conversation.id)
    assert kept_conversation is not None
    assert kept_conversation.summary == "covers the pending turn"
    assert [m.id for m in await conversations.pending_turns()] == [kept.message.id]
    stale_conversation = await conversations.get_conversation(stale[0].conversation_id)
    assert stale_conversation is not None
    assert (stale_conversation.summary, stale_conversation.summary_upto) == (None, None)
    assert await conversations.history(stale[0].conversation_id) == stale_new
    mixed_conversation = await conversations.get_conversation(mixed[0].conversation_id)
    assert mixed_conversation is not None
    assert mixed_conversation.summary == "covers new"
    assert await conversations.history(mixed[0].conversation_id) == mixed_new
    still_there = await conversations.get_conversation(empty.id)
    assert still_there is not None
    assert still_there.updated_at == recent
    assert await conversations.count_messages() == 1 + 2 + 2

    assert await conversations.purge_before(cutoff) == 0
    with pytest.raises(ValueError, match="aware"):
        await conversations.purge_before(cutoff.replace(tzinfo=None))


async def test_purge_works_in_batches(db: Database, conversations: ConversationRepository,
                                      alice: UserRecord) -> None:
    first = await turn(conversations, alice, "k0", None, "a0")
    conversation_id = first[0].conversation_id
    for i in range(1, 6):
        await turn(conversations, alice, f"k{i}", conversation_id, f"a{i}")
    for i in range(5):  # five more conversations, each left empty by the purge
        await turn(conversations, alice, f"c{i}", None)
    for conversation in await conversations.list_conversations(alice.id):
        await db.write(_age, conversation.id, datetime.now(UTC) - timedelta(days=30))
    assert await conversations.purge_before(datetime.now(UTC) - timedelta(days=7), batch_size=5) == 17
    assert await conversations.count_messages() == 0
    assert await conversations.list_conversations(alice.id) == []


async def test_timestamps_are_stored_as_utc_and_read_back_aware(db: Database, conversations: ConversationRepository,
                                                                alice: UserRecord) -> None:
    accepted = await accept(conversations, alice, "k1")
    oslo_evening = datetime(2026, 3, 1, 23, 30, tzinfo=timezone(timedelta(hours=1)))
    await db.write(_age, accepted.conversation.id, oslo_evening)
    message = await conversations.get_message(accepted.message.id)
    assert message is not None
    assert message.created_at == oslo_evening
    assert message.created_at.tzinfo is UTC
    assert message.created_at.hour == 22
    # A cutoff in another zone means the same instant.
    assert await conversations.purge_before(datetime(2026, 3, 2, 0, 29, tzinfo=timezone(timedelta(hours=1)))) == 0
    await conversations.fail_turn(accepted.message.id, "x", "y")
    assert await conversations.purge_before(datetime(2026, 3, 2, 0, 31, tzinfo=timezone(timedelta(hours=1)))) == 1


async def test_history_is_in_turn_order_when_answers_finish_late(database_url: str) -> None:
    """Turn B is accepted while turn A is still being answered: A's answer gets the larger id,
    yet history (and so the next prompt) must read A, A's answer, B, B's answer."""
    from hearth.store import ConversationRepository, Database, NewMessage, PlainTextCodec, UserRepository, upgrade

    db = Database(database_url)
    await upgrade(db)
    try:
        users, conversations = UserRepository(db), ConversationRepository(db, PlainTextCodec())
        user = await users.create_user("ada")
        a = await conversations.accept_message(conversation_id=None, user_id=user.id, channel="t", external_ref=None,
                                               dedup_key="a", text="question A")
        cid = a.conversation.id
        b = await conversations.accept_message(conversation_id=cid, user_id=user.id, channel="t", external_ref=None,
                                               dedup_key="b", text="question B")
        await conversations.complete_turn(a.message.id, [NewMessage("assistant", "answer A")])
        before_b = await conversations.history(cid, before_id=b.message.id)
        assert [m.content for m in before_b] == ["question A", "answer A"]
        await conversations.complete_turn(b.message.id, [NewMessage("assistant", "answer B")])
        everything = await conversations.history(cid)
        assert [m.content for m in everything] == ["question A", "answer A", "question B", "answer B"]
        after_a = await conversations.history(cid, after_id=a.message.id)
        assert [m.content for m in after_a] == ["question B", "answer B"]
    finally:
        await db.aclose()
