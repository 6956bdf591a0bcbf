"""What people see of conversations, on SQLite and PostgreSQL: the list page by page, a conversation's shown
messages page by page, renaming and deleting; always scoped to one user."""

from __future__ import annotations

import pytest

from hearth.errors import InvalidRequest, NotFound
from hearth.store import ConversationRepository, NewMessage, UserRecord, UserRepository


async def turn(repo: ConversationRepository, user: UserRecord, key: str, text: str, conversation: str | None = None,
               *answers: NewMessage) -> str:
    accepted = await repo.accept_message(conversation_id=conversation, user_id=user.id, channel="websocket",
                                         external_ref=None, dedup_key=key, text=text)
    await repo.complete_turn(accepted.message.id, list(answers) or [NewMessage("assistant", f"re: {text}",
                                                                               {"reply": f"re: {text}"})])
    return accepted.conversation.id


async def test_the_list_pages_by_activity_with_titles(conversations: ConversationRepository, alice: UserRecord,
                                                      users: UserRepository) -> None:
    bob = await users.create_user("bob")
    ids = [await turn(conversations, alice, f"k{i}", f"topic {i}") for i in range(5)]
    await turn(conversations, alice, "k-again", "back to topic 1", ids[1])
    await turn(conversations, bob, "b0", "bob's")
    files_only = await conversations.accept_message(
        conversation_id=None, user_id=alice.id, channel="websocket", external_ref=None, dedup_key="f",
        text="[attached file 'a.txt' (text/plain, 3 bytes), file id 0123]")
    seen: list[str] = []
    before = None
    while True:
        page = await conversations.conversation_page(alice.id, limit=2, before=before)
        seen += [c.id for c in page.conversations]
        if not page.has_more:
            break
        before = page.conversations[-1].id
    assert seen == [files_only.conversation.id, ids[1], ids[4], ids[3], ids[2], ids[0]]
    first = await conversations.conversation_page(alice.id, limit=10)
    titles = {c.id: (c.title, c.messages) for c in first.conversations}
    assert titles[ids[1]] == ("topic 1", 4)
    assert titles[files_only.conversation.id] == ("[attached file 'a.txt' (text/plain, 3 bytes), file id 0123]", 1)
    bobs = await conversations.conversation_page(bob.id)
    with pytest.raises(InvalidRequest) as refused:
        await conversations.conversation_page(alice.id, before=bobs.conversations[0].id)
    assert refused.value.code == "bad_cursor"


async def test_shown_messages_skip_tool_traffic_and_page_in_turn_order(conversations: ConversationRepository,
                                                                        alice: UserRecord) -> None:
    call = {"id": "c", "name": "now", "arguments": {}}
    conversation = await turn(conversations, alice, "t1", "what time is it?", None,
                              NewMessage("assistant", "", {"tool_calls": [call]}),
                              NewMessage("tool", "12:00", {"call_id": "c", "name": "now"}),
                              NewMessage("assistant", "Noon.", {"reply": "Noon."}))
    # turn B is accepted while turn A is still open: A's answer gets the larger id, but shows in A's place
    a = await conversations.accept_message(conversation_id=conversation, user_id=alice.id, channel="websocket",
                                           external_ref=None, dedup_key="a", text="A")
    b = await conversations.accept_message(conversation_id=conversation, user_id=alice.id, channel="websocket",
                                           external_ref=None, dedup_key="b", text="B")
    await conversations.complete_turn(a.message.id, [NewMessage("assistant", "answer A", {"reply": "answer A"})])
    await conversations.append_notice(conversation, "a reminder")
    whole = await conversations.shown_messages(alice.id, conversation)
    assert [m.content for m in whole.messages] == ["what time is it?", "Noon.", "A", "answer A", "B", "a reminder"]
    assert whole.messages[4].status == "pending" and not whole.has_more
    paged: list[str] = []
    before = None
    while True:
        page = await conversations.shown_messages(alice.id, conversation, limit=4, before=before)
        paged = [m.content for m in page.messages] + paged
        if not page.has_more:
            break
        before = page.messages[0].id
    assert paged == [m.content for m in whole.messages]
    assert b.message.id < whole.messages[3].id  # the case above did happen


async def test_everything_is_scoped_to_the_user(conversations: ConversationRepository, alice: UserRecord,
                                                users: UserRepository) -> None:
    bob = await users.create_user("bob")
    mine = await turn(conversations, alice, "m", "mine")
    theirs = await turn(conversations, bob, "t", "theirs")
    with pytest.raises(NotFound):
        await conversations.shown_messages(alice.id, theirs)
    with pytest.raises(NotFound):
        await conversations.rename_conversation(alice.id, theirs, "taken")
    with pytest.raises(NotFound):
        await conversations.delete_conversation(alice.id, theirs)
    other = (await conversations.shown_messages(bob.id, theirs)).messages[0].id
    with pytest.raises(InvalidRequest) as refused:
        await conversations.shown_messages(alice.id, mine, before=other)
    assert refused.value.code == "bad_cursor"
    assert (await conversations.rename_conversation(alice.id, mine, " Mine ")).title == "Mine"
    assert (await conversations.rename_conversation(alice.id, mine, "")).title is None
    assert await conversations.delete_conversation(alice.id, mine) == 2
    assert await conversations.get_conversation(mine) is None
    assert await conversations.count_messages(theirs) == 2
