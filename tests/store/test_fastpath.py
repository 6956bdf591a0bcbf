"""SQLite's fast path for accept/complete writes exactly what the general path reads back."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.errors import InvalidRequest, NotFound
from hearth.store import ConversationRepository, Database, NewMessage, PlainTextCodec, UserRepository, upgrade


@pytest.fixture
async def repo(tmp_path: Path):  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path / 'hearth.db'}")
    await upgrade(db)
    assert db.inline_sqlite
    user = await UserRepository(db).create_user("ada")
    yield ConversationRepository(db, PlainTextCodec()), user.id
    await db.aclose()


async def test_records_from_the_fast_path_equal_what_is_read_back(repo) -> None:  # type: ignore[no-untyped-def]
    conversations, user_id = repo
    meta = {"channel": "t", "nested": [1, "é", {"x": None}]}
    accepted = await conversations.accept_message(conversation_id=None, user_id=user_id, channel="t",
                                                  external_ref="ref-1", dedup_key="k1", text="héllo", meta=meta,
                                                  attempts=1)
    assert accepted.created
    assert await conversations.get_message(accepted.message.id) == accepted.message
    assert await conversations.get_conversation(accepted.conversation.id) == accepted.conversation

    stored = await conversations.complete_turn(accepted.message.id, [
        NewMessage("assistant", "calling", {"tool_calls": [{"id": "c1", "name": "t", "arguments": {"a": 1}}]}),
        NewMessage("tool", "result", {"call_id": "c1", "name": "t", "is_error": False}),
        NewMessage("assistant", "done", {"reply": "calling done"}),
    ])
    history = await conversations.history(accepted.conversation.id)
    assert history[1:] == stored
    assert history[0].status == "done"
    conversation = await conversations.get_conversation(accepted.conversation.id)
    assert conversation is not None and conversation.last_turn == accepted.message.id

    # the same external_ref finds the same conversation; the touched record reads back equal
    again = await conversations.accept_message(conversation_id=None, user_id=user_id, channel="t",
                                               external_ref="ref-1", dedup_key="k2", text="again")
    assert again.conversation.id == accepted.conversation.id
    assert again.conversation == await conversations.get_conversation(accepted.conversation.id)
    assert again.conversation.last_turn == accepted.message.id


async def test_the_general_path_keeps_its_rules(repo) -> None:  # type: ignore[no-untyped-def]
    conversations, user_id = repo
    first = await conversations.accept_message(conversation_id=None, user_id=user_id, channel="t", external_ref=None,
                                               dedup_key="same", text="one")
    duplicate = await conversations.accept_message(conversation_id=None, user_id=user_id, channel="t",
                                                   external_ref=None, dedup_key="same", text="two")
    assert not duplicate.created and duplicate.message == first.message
    with pytest.raises(NotFound):
        await conversations.accept_message(conversation_id="f" * 32, user_id=user_id, channel="t",
                                           external_ref=None, dedup_key="other", text="x")
    await conversations.complete_turn(first.message.id, [NewMessage("assistant", "a")])
    with pytest.raises(InvalidRequest) as closed:
        await conversations.complete_turn(first.message.id, [NewMessage("assistant", "b")])
    assert closed.value.code == "turn_closed"
    with pytest.raises(NotFound):
        await conversations.complete_turn(10_000, [NewMessage("assistant", "c")])
    assert await conversations.count_messages() == 2
