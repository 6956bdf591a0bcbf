"""Conversations and accepting messages: dedup, conversation resolution, concurrency, the codec."""

from __future__ import annotations

import asyncio
from datetime import UTC

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Connection

from hearth.errors import InvalidRequest, NotFound, StorageError
from hearth.store import (
    Accepted,
    ConversationRepository,
    Database,
    NewMessage,
    PlainTextCodec,
    UserRecord,
    UserRepository,
    upgrade,
)
from hearth.store.schema import conversations as conversations_table
from hearth.store.schema import messages as messages_table


async def accept(repo: ConversationRepository, user: UserRecord, key: str, text: str = "hello", *,
                 conversation_id: str | None = None, external_ref: str | None = None,
                 channel: str = "websocket") -> Accepted:
    return await repo.accept_message(conversation_id=conversation_id, user_id=user.id, channel=channel,
                                     external_ref=external_ref, dedup_key=key, text=text)


async def test_conversations(conversations: ConversationRepository, alice: UserRecord) -> None:
    first = await conversations.create_conversation(alice.id, "websocket", title="Plans")
    second = await conversations.create_conversation(alice.id, "telegram", external_ref="chat-1")
    assert len(first.id) == 32
    assert first.title == "Plans"
    assert first.external_ref is None
    assert first.created_at.tzinfo is UTC
    assert first.updated_at == first.created_at
    assert first.summary is None
    assert first.summary_upto is None
    assert await conversations.get_conversation(first.id) == first
    assert await conversations.get_conversation("0" * 32) is None
    assert await conversations.find_conversation(alice.id, "telegram", "chat-1") == second
    assert await conversations.find_conversation(alice.id, "slack", "chat-1") is None
    assert [c.id for c in await conversations.list_conversations(alice.id)] == [second.id, first.id]

    await accept(conversations, alice, "k1", conversation_id=first.id)  # bumps updated_at
    listed = await conversations.list_conversations(alice.id)
    assert [c.id for c in listed] == [first.id, second.id]
    assert listed[0].updated_at > first.updated_at
    assert len(await conversations.list_conversations(alice.id, limit=1)) == 1

    with pytest.raises(InvalidRequest) as caught:
        await conversations.create_conversation(alice.id, "telegram", external_ref="chat-1")
    assert caught.value.code == "exists"
    with pytest.raises(NotFound):
        await conversations.create_conversation(10_000, "websocket")


async def test_accept_new_then_duplicate(conversations: ConversationRepository, alice: UserRecord) -> None:
    accepted = await conversations.accept_message(
        conversation_id=None, user_id=alice.id, channel="telegram", external_ref=None,
        dedup_key="telegram:42", text="What's the weather?", meta={"update_id": 42, "chat": {"id": 7}},
    )
    assert accepted.created is True
    message, conversation = accepted.message, accepted.conversation
    assert (message.role, message.content, message.status, message.attempts) == ("user", "What's the weather?",
                                                                                 "pending", 0)
    assert message.meta == {"update_id": 42, "chat": {"id": 7}}
    assert message.dedup_key == "telegram:42"
    assert message.reply_to is None
    assert message.conversation_id == conversation.id
    assert (conversation.user_id, conversation.channel) == (alice.id, "telegram")
    assert message.created_at.tzinfo is UTC
    assert conversation.updated_at.tzinfo is UTC

    again = await conversations.accept_message(
        conversation_id=None, user_id=alice.id, channel="telegram", external_ref=None,
        dedup_key="telegram:42", text="a different text", meta={},
    )
    assert again.created is False
    assert again.message == message
    assert again.conversation == conversation
    assert await conversations.count_messages() == 1
    assert await conversations.get_message(message.id) == message
    assert await conversations.find_by_dedup_key("telegram:42") == message
    assert await conversations.find_by_dedup_key("telegram:43") is None
    assert await conversations.get_message(10_000) is None


async def test_accept_into_an_existing_conversation(conversations: ConversationRepository,
                                                    alice: UserRecord) -> None:
    first = await accept(conversations, alice, "k1")
    second = await accept(conversations, alice, "k2", "and again", conversation_id=first.conversation.id)
    assert second.created
    assert second.conversation.id == first.conversation.id
    assert second.message.id > first.message.id
    assert second.conversation.updated_at >= first.conversation.updated_at
    stored = await conversations.get_conversation(first.conversation.id)
    assert stored == second.conversation
    assert await conversations.count_messages(first.conversation.id) == 2


async def test_unknown_or_foreign_conversation_is_not_found_and_stores_nothing(
    conversations: ConversationRepository, users: UserRepository, alice: UserRecord,
) -> None:
    bob = await users.create_user("bob")
    bobs = await accept(conversations, bob, "bob-1")
    before = await conversations.get_conversation(bobs.conversation.id)
    for conversation_id in ("f" * 32, bobs.conversation.id):
        with pytest.raises(NotFound, match="not found"):
            await accept(conversations, alice, f"alice-{conversation_id}", conversation_id=conversation_id)
    assert await conversations.count_messages() == 1
    assert await conversations.get_conversation(bobs.conversation.id) == before  # not even touched
    assert await conversations.list_conversations(alice.id) == []
    with pytest.raises(NotFound, match="user"):
        await conversations.accept_message(conversation_id=None, user_id=10_000, channel="websocket",
                                           external_ref="x", dedup_key="ghost", text="boo")
    assert await conversations.count_messages() == 1


async def test_a_dedup_key_of_another_user_is_refused(conversations: ConversationRepository,
                                                      users: UserRepository, alice: UserRecord) -> None:
    bob = await users.create_user("bob")
    await accept(conversations, alice, "shared", "alice's secret")
    with pytest.raises(InvalidRequest) as caught:
        await accept(conversations, bob, "shared")
    assert caught.value.code == "exists"
    assert "alice's secret" not in str(caught.value)


async def test_external_ref_finds_or_creates(conversations: ConversationRepository, alice: UserRecord) -> None:
    first = await accept(conversations, alice, "k1", channel="slack", external_ref="C1:thread-9")
    second = await accept(conversations, alice, "k2", channel="slack", external_ref="C1:thread-9")
    other_thread = await accept(conversations, alice, "k3", channel="slack", external_ref="C1:thread-10")
    other_channel = await accept(conversations, alice, "k4", channel="telegram", external_ref="C1:thread-9")
    no_ref = await accept(conversations, alice, "k5", channel="slack")
    no_ref_again = await accept(conversations, alice, "k6", channel="slack")
    assert first.conversation.external_ref == "C1:thread-9"
    assert second.conversation.id == first.conversation.id
    ids = {first.conversation.id, other_thread.conversation.id, other_channel.conversation.id,
           no_ref.conversation.id, no_ref_again.conversation.id}
    assert len(ids) == 5
    assert await conversations.find_conversation(alice.id, "slack", "C1:thread-9") == second.conversation


async def test_concurrent_duplicates_create_exactly_one(conversations: ConversationRepository,
                                                        alice: UserRecord) -> None:
    results = await asyncio.gather(*(
        accept(conversations, alice, "same-key", channel="telegram", external_ref="chat-5") for _ in range(20)
    ))
    assert sum(result.created for result in results) == 1
    assert len({result.message.id for result in results}) == 1
    assert len({result.conversation.id for result in results}) == 1
    assert await conversations.count_messages() == 1


async def test_concurrent_new_messages_into_one_new_conversation(conversations: ConversationRepository,
                                                                 alice: UserRecord) -> None:
    results = await asyncio.gather(*(
        accept(conversations, alice, f"key-{i}", channel="slack", external_ref="thread") for i in range(20)
    ))
    assert all(result.created for result in results)
    assert len({result.conversation.id for result in results}) == 1
    assert await conversations.count_messages() == 20


async def test_concurrent_duplicates_across_connections_on_postgresql(postgres_url: str) -> None:
    # Several Database objects are several pools: as close to several processes as a test gets.
    databases = [Database(postgres_url) for _ in range(4)]
    try:
        await upgrade(databases[0])
        alice = await UserRepository(databases[0]).create_user("alice")
        repos = [ConversationRepository(db, PlainTextCodec()) for db in databases]
        results = await asyncio.gather(*(
            accept(repos[i % 4], alice, f"key-{i // 8}", channel="telegram", external_ref="chat")
            for i in range(40)
        ))
        assert sum(result.created for result in results) == 5
        assert len({result.conversation.id for result in results}) == 1
        assert await repos[0].count_messages() == 5
    finally:
        for db in databases:
            await db.aclose()


class ReversingCodec:
    """Stands in for encryption: stored bytes are not the text, and only this codec reads them."""

    def encode(self, text: str) -> bytes:
        return b"rev:" + text[::-1].encode()

    def decode(self, data: bytes) -> str:
        if not data.startswith(b"rev:"):
            raise ValueError("not ours")
        return data[4:].decode()[::-1]


def _stored(conn: Connection) -> tuple[list[bytes], list[bytes | None]]:
    contents = list(conn.execute(select(messages_table.c.content).order_by(messages_table.c.id)).scalars())
    summaries = list(conn.execute(select(conversations_table.c.summary)).scalars())
    return contents, summaries


async def test_the_codec_is_applied_both_ways(db: Database, alice: UserRecord) -> None:
    repo = ConversationRepository(db, ReversingCodec())
    accepted = await repo.accept_message(conversation_id=None, user_id=alice.id, channel="websocket",
                                         external_ref=None, dedup_key="k", text="secret question")
    produced = await repo.complete_turn(accepted.message.id, [NewMessage("assistant", "secret answer")])
    await repo.set_summary(accepted.conversation.id, "secret summary", produced[0].id)

    contents, summaries = await db.read(_stored)
    assert contents == [b"rev:noitseuq terces", b"rev:rewsna terces"]
    assert summaries == [b"rev:yrammus terces"]

    assert accepted.message.content == "secret question"
    assert produced[0].content == "secret answer"
    assert [m.content for m in await repo.history(accepted.conversation.id)] == ["secret question", "secret answer"]
    conversation = await repo.get_conversation(accepted.conversation.id)
    assert conversation is not None
    assert conversation.summary == "secret summary"

    with pytest.raises(StorageError, match="decoded"):
        await ConversationRepository(db, WrongKeyCodec()).history(accepted.conversation.id)


class WrongKeyCodec(ReversingCodec):
    def decode(self, data: bytes) -> str:
        raise ValueError("wrong key")
