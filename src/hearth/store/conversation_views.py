"""What people see of their conversations in a client, and what they do to them there.

A list of conversations (most recently updated first, with a title and a count of messages) and a
conversation's messages, page by page with a cursor; renaming and deleting. A person sees user
messages (pending and failed ones too), notices, and each turn's answer (its last assistant message):
not tool calls or tool results. Every method checks that the conversation is the user's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from hearth.errors import InvalidRequest, NotFound
from hearth.store import conversation_sql as sql
from hearth.store.conversation_sql import ConversationRows
from hearth.store.engine import Database
from hearth.store.records import ConversationRecord, MessageRecord

__all__ = ["ConversationOverview", "ConversationPage", "ConversationViews", "MessagePage"]

TITLE_LENGTH = 60  # characters of the first message that make a conversation's title when it has none


@dataclass(frozen=True, slots=True)
class ConversationOverview:
    """A conversation as a list of conversations shows it."""

    id: str
    channel: str
    title: str  # the title the user gave it, else the start of its first message ("" while it has none)
    created_at: datetime
    updated_at: datetime
    messages: int  # the messages a person sees (``ConversationRepository.shown_messages``)


@dataclass(frozen=True, slots=True)
class ConversationPage:
    conversations: list[ConversationOverview]  # most recently updated first
    has_more: bool


@dataclass(frozen=True, slots=True)
class MessagePage:
    conversation: ConversationRecord
    messages: list[MessageRecord]  # oldest first
    has_more: bool


class ConversationViews:
    """The conversations of one user as a client shows them; each method is one ``Database`` transaction."""

    def __init__(self, db: Database, rows: ConversationRows) -> None:
        self._db = db
        self._rows = rows

    async def conversation_page(self, user_id: int, *, limit: int = 50, before: str | None = None
                                ) -> ConversationPage:
        """The user's conversations, most recently updated first, ``limit`` at a time; ``before`` is the
        id of the last conversation of the previous page (``InvalidRequest(code="bad_cursor")`` when it is
        not one of the user's)."""
        return await self._db.read(self._conversation_page_tx, user_id, max(limit, 0), before)

    def _conversation_page_tx(self, conn: Connection, /, user_id: int, limit: int, before: str | None
                              ) -> ConversationPage:
        params: dict[str, Any] = {"user_id": user_id, "limit": limit + 1}
        if before is None:
            rows = conn.execute(sql.LIST_CONVERSATIONS, params).all()
        else:
            if conn.execute(sql.OWNED, {"id": before, "user_id": user_id}).first() is None:
                raise InvalidRequest(f"'before' is not one of your conversations: {before[:64]!r}", code="bad_cursor")
            rows = conn.execute(sql.CONVERSATIONS_BEFORE, {**params, "before": before}).all()
        found = [self._rows.conversation(row) for row in rows[:limit]]
        ids = [c.id for c in found]
        counts: dict[str, int] = {}
        firsts: dict[str, bytes] = {}
        if ids:
            counts = {row[0]: int(row[1]) for row in conn.execute(sql.COUNT_SHOWN, {"ids": ids})}
            untitled = [c.id for c in found if not c.title]
            if untitled:
                firsts = {row[0]: row[1] for row in conn.execute(sql.FIRST_USER_MESSAGES, {"ids": untitled})}
        overviews = []
        for c in found:
            title = c.title or (title_from(self._rows.decode(firsts[c.id])) if c.id in firsts else "")
            overviews.append(ConversationOverview(c.id, c.channel, title, c.created_at, c.updated_at,
                                                  counts.get(c.id, 0)))
        return ConversationPage(overviews, len(rows) > limit)

    async def shown_messages(self, user_id: int, conversation_id: str, *, limit: int = 50,
                             before: int | None = None) -> MessagePage:
        """The messages a person sees in the user's conversation, the newest ``limit`` before the message
        ``before``, oldest first: user messages (pending and failed ones too), notices, and each turn's
        answer (its last assistant message), in turn order; not tool calls or tool results.

        ``NotFound`` for a conversation that is not the user's; ``InvalidRequest(code="bad_cursor")``
        when ``before`` is not a message of it.
        """
        return await self._db.read(self._shown_messages_tx, user_id, conversation_id, max(limit, 0), before)

    def _shown_messages_tx(self, conn: Connection, /, user_id: int, conversation_id: str, limit: int,
                           before: int | None) -> MessagePage:
        row = conn.execute(sql.OWNED, {"id": conversation_id, "user_id": user_id}).first()
        if row is None:
            raise NotFound(f"conversation {conversation_id[:64]} not found")
        before_turn = before_id = sql.NO_UPPER_ID
        if before is not None:
            turn = conn.execute(sql.TURN_OF, {"id": before, "conversation_id": conversation_id}).scalar_one_or_none()
            if turn is None:
                raise InvalidRequest(f"'before' is not a message of this conversation: {before}", code="bad_cursor")
            before_turn, before_id = int(turn), before
        rows = conn.execute(sql.SHOWN_BEFORE, {"conversation_id": conversation_id, "before_turn": before_turn,
                                                "before_id": before_id, "limit": limit + 1}).all()
        shown = [self._rows.message(r) for r in reversed(rows[:limit])]
        return MessagePage(self._rows.conversation(row), shown, len(rows) > limit)

    async def rename_conversation(self, user_id: int, conversation_id: str, title: str | None
                                  ) -> ConversationRecord:
        """Set the title of the user's conversation (``None`` or blank: back to its first message)."""
        params = {"p_id": conversation_id, "p_user_id": user_id, "p_title": (title or "").strip() or None}
        record = await self._db.write(self._rename_tx, params)
        if record is None:
            raise NotFound(f"conversation {conversation_id[:64]} not found")
        return record

    def _rename_tx(self, conn: Connection, /, params: dict[str, Any]) -> ConversationRecord | None:
        row = conn.execute(sql.RENAME, params).first()
        return None if row is None else self._rows.conversation(row)

    async def delete_conversation(self, user_id: int, conversation_id: str) -> int:
        """Delete the user's conversation with all its messages (its pending questions and scheduled
        messages go with it; its files stay, no longer tied to it); returns how many messages went.
        ``NotFound`` for a conversation that is not the user's."""
        return await self._db.write(self._delete_conversation_tx, user_id, conversation_id)

    def _delete_conversation_tx(self, conn: Connection, /, user_id: int, conversation_id: str) -> int:
        if conn.execute(sql.OWNED, {"id": conversation_id, "user_id": user_id}).first() is None:
            raise NotFound(f"conversation {conversation_id[:64]} not found")
        deleted = int(conn.execute(sql.DELETE_MESSAGES_OF, {"conversation_id": conversation_id}).rowcount)
        conn.execute(sql.DELETE_CONVERSATION, {"id": conversation_id})
        return deleted


def title_from(text: str) -> str:
    """A title from a first message: its first line of words (not a line naming an attached file), cut."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    words = [line for line in lines if line and not line.startswith("[attached file ")]
    title = next(iter(words or [line for line in lines if line]), "")
    return title if len(title) <= TITLE_LENGTH else title[: TITLE_LENGTH - 1].rstrip() + "…"
