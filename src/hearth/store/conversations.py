"""Conversations and their messages: the inbox's durable half and the memory's source.

A *turn* is one user message and what hearth produced for it. The user message is stored first,
``pending``, by ``accept_message`` - before the sender gets an acknowledgement, and deduplicated
by the platform's own message id - so a crash loses nothing accepted; start-up finds unfinished
turns with ``pending_turns``. ``complete_turn`` then stores the replies and closes the turn in
one transaction, or ``fail_turn`` closes it with an error. ``history`` shows only finished
turns, so a model never sees a question without its answer, or half a tool exchange.

The statements are in ``conversation_sql``; what a client shows of a user's conversations (pages,
titles, renaming, deleting) is ``conversation_views``, offered here too so that this repository
stays the one way in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import Executable

from hearth.errors import InvalidRequest, NotFound
from hearth.store import conversation_sql as sql
from hearth.store.codec import MessageCodec
from hearth.store.conversation_sql import ConversationRows
from hearth.store.conversation_views import ConversationOverview, ConversationPage, ConversationViews, MessagePage
from hearth.store.engine import ConstraintViolation, Database
from hearth.store.fastpath import SqliteTurns
from hearth.store.records import Accepted, ConversationRecord, MessageRecord, NewMessage
from hearth.store.schema import utcnow

__all__ = ["ConversationOverview", "ConversationPage", "ConversationRepository", "MessagePage"]

PURGE_BATCH = 2000  # rows per purge transaction, so that other writers get the lock in between


class ConversationRepository:
    """Conversations, messages and turns. ``codec`` turns text into stored bytes and back.

    Each public method is one ``Database`` transaction; the ``_..._tx`` methods are their bodies,
    run where the database runs them (a worker thread for SQLite), so the codec must be
    thread-safe.
    """

    def __init__(self, db: Database, codec: MessageCodec) -> None:
        self._db = db
        self._codec = codec
        self._rows = ConversationRows(codec)
        self._views = ConversationViews(db, self._rows)
        # SQLite file databases take the two per-message transactions on the fast path
        self._fast = SqliteTurns(codec) if db.inline_sqlite else None

    # --- conversations ------------------------------------------------------------------------

    async def create_conversation(
        self, user_id: int, channel: str, external_ref: str | None = None, title: str | None = None
    ) -> ConversationRecord:
        """Start a conversation. A second one with the same ``external_ref`` raises ``code="exists"``."""
        params = sql.new_conversation(user_id, channel, external_ref, title, utcnow())
        try:
            return await self._db.write(self._insert_conversation_tx, params)
        except ConstraintViolation as exc:
            if not await self._user_exists(user_id):
                raise NotFound(f"user {user_id} not found") from exc
            raise InvalidRequest(f"conversation {external_ref!r} already exists", code="exists") from exc

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        return await self._db.read(self._one_conversation_tx, sql.CONVERSATION, {"id": conversation_id})

    async def find_conversation(
        self, user_id: int, channel: str, external_ref: str
    ) -> ConversationRecord | None:
        params = {"user_id": user_id, "channel": channel, "external_ref": external_ref}
        return await self._db.read(self._one_conversation_tx, sql.CONVERSATION_BY_REF, params)

    async def list_conversations(self, user_id: int, limit: int = 50) -> list[ConversationRecord]:
        """A user's conversations, most recently updated first."""
        return await self._db.read(self._list_conversations_tx, {"user_id": user_id, "limit": max(limit, 0)})

    async def set_summary(self, conversation_id: str, summary: str, upto_id: int) -> None:
        """Store a summary of the conversation's turns up to and including the turn ``upto_id``
        (the id of the last summarised user message)."""
        params = {"p_id": conversation_id, "p_summary": self._codec.encode(summary), "p_summary_upto": upto_id}
        if not await self._db.write(sql.rowcount, sql.SET_SUMMARY, params):
            raise NotFound(f"conversation {conversation_id} not found")

    def _one_conversation_tx(
        self, conn: Connection, /, statement: Executable, params: dict[str, Any]
    ) -> ConversationRecord | None:
        row = conn.execute(statement, params).first()
        return None if row is None else self._rows.conversation(row)

    def _insert_conversation_tx(self, conn: Connection, /, params: dict[str, Any]) -> ConversationRecord:
        return self._rows.conversation(conn.execute(sql.INSERT_CONVERSATION, params).one())

    def _list_conversations_tx(self, conn: Connection, /, params: dict[str, Any]) -> list[ConversationRecord]:
        return [self._rows.conversation(row) for row in conn.execute(sql.LIST_CONVERSATIONS, params)]

    # --- what people see (``ConversationViews``) ----------------------------------------------------

    async def conversation_page(self, user_id: int, *, limit: int = 50, before: str | None = None
                                ) -> ConversationPage:
        """See ``ConversationViews.conversation_page``."""
        return await self._views.conversation_page(user_id, limit=limit, before=before)

    async def shown_messages(self, user_id: int, conversation_id: str, *, limit: int = 50,
                             before: int | None = None) -> MessagePage:
        """See ``ConversationViews.shown_messages``."""
        return await self._views.shown_messages(user_id, conversation_id, limit=limit, before=before)

    async def rename_conversation(self, user_id: int, conversation_id: str, title: str | None
                                  ) -> ConversationRecord:
        """See ``ConversationViews.rename_conversation``."""
        return await self._views.rename_conversation(user_id, conversation_id, title)

    async def delete_conversation(self, user_id: int, conversation_id: str) -> int:
        """See ``ConversationViews.delete_conversation``."""
        return await self._views.delete_conversation(user_id, conversation_id)

    # --- accepting messages -------------------------------------------------------------------

    async def accept_message(
        self,
        *,
        conversation_id: str | None,
        user_id: int,
        channel: str,
        external_ref: str | None,
        dedup_key: str,
        text: str,
        meta: Mapping[str, Any] | None = None,
        attempts: int = 0,
    ) -> Accepted:
        """Store a user message as a pending turn, exactly once per ``dedup_key``.

        ``attempts`` is stored as the turn's attempt count: a caller that starts the turn right away
        passes 1 and saves the ``start_attempt`` write.

        A key seen before returns the stored message with ``created=False``, whatever the other
        arguments say. Otherwise the conversation is ``conversation_id`` (which must exist and
        belong to ``user_id``, else ``NotFound`` and nothing is stored), or the one with
        ``external_ref`` on this channel (created if new), or a new one. A key already used by
        another user's message raises ``InvalidRequest(code="exists")`` rather than revealing it.
        """
        content = self._codec.encode(text)
        meta_value = dict(meta) if meta else {}
        for attempt in range(3):
            try:
                if self._fast is not None:
                    accepted = await self._db.write_sqlite(
                        self._fast.accept, conversation_id, user_id, channel, external_ref, dedup_key, content,
                        meta_value, attempts, utcnow())
                    if accepted is not None:
                        return accepted
                return await self._db.write_inline(
                    self._accept_tx, conversation_id, user_id, channel, external_ref, dedup_key, content, meta_value,
                    attempts,
                )
            except ConstraintViolation as exc:
                # SQLite serialises writers, so there this means a missing user. On PostgreSQL a
                # concurrent transaction may have committed the same key or the same external_ref
                # conversation first: run again and find it.
                if not await self._user_exists(user_id):
                    raise NotFound(f"user {user_id} not found") from exc
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _accept_tx(
        self,
        conn: Connection,
        /,
        conversation_id: str | None,
        user_id: int,
        channel: str,
        external_ref: str | None,
        dedup_key: str,
        content: bytes,
        meta: dict[str, Any],
        attempts: int,
    ) -> Accepted:
        seen = conn.execute(sql.DEDUP_WITH_CONVERSATION, {"dedup_key": dedup_key}).first()
        if seen is not None:
            conversation = self._rows.conversation(seen[sql.MESSAGE_WIDTH:])
            if conversation.user_id != user_id:
                raise InvalidRequest("this message id was already used by someone else", code="exists")
            return Accepted(self._rows.message(seen), conversation, created=False)
        now = utcnow()
        row: Row[Any] | None
        if conversation_id is not None:
            params: dict[str, Any] = {"p_id": conversation_id, "p_user_id": user_id, "now": now}
            row = conn.execute(sql.TOUCH_OWNED, params).first()
            if row is None:
                raise NotFound(f"conversation {conversation_id} not found")
        else:
            row = None
            if external_ref is not None:
                params = {"p_user_id": user_id, "p_channel": channel, "p_external_ref": external_ref, "now": now}
                row = conn.execute(sql.TOUCH_BY_REF, params).first()
            if row is None:
                params = sql.new_conversation(user_id, channel, external_ref, None, now)
                row = conn.execute(sql.INSERT_CONVERSATION, params).one()
        conversation = self._rows.conversation(row)
        message = conn.execute(sql.INSERT_MESSAGE, {
            "conversation_id": conversation.id, "role": "user", "content": content, "meta": meta,
            "dedup_key": dedup_key, "status": "pending", "reply_to": None, "error_code": None,
            "error_message": None, "attempts": attempts, "created_at": now,
        }).one()
        return Accepted(self._rows.message(message), conversation, created=True)

    async def _user_exists(self, user_id: int) -> bool:
        return await self._db.read(sql.found, sql.USER_EXISTS, {"user_id": user_id})

    # --- reading messages ---------------------------------------------------------------------

    async def get_message(self, message_id: int) -> MessageRecord | None:
        return await self._db.read(self._one_message_tx, sql.MESSAGE, {"id": message_id})

    async def find_by_dedup_key(self, dedup_key: str) -> MessageRecord | None:
        return await self._db.read(self._one_message_tx, sql.BY_DEDUP_KEY, {"dedup_key": dedup_key})

    async def reply_for(self, user_message_id: int) -> MessageRecord | None:
        """The final assistant message of a turn, or ``None`` if it has none (yet)."""
        return await self._db.read(self._one_message_tx, sql.REPLY_FOR, {"id": user_message_id})

    async def history(
        self,
        conversation_id: str,
        *,
        after_id: int | None = None,
        before_id: int | None = None,
        limit: int = 200,
    ) -> list[MessageRecord]:
        """The newest ``limit`` messages of finished turns whose turn lies in ``(after_id, before_id)``.

        A message's turn is the id of the user message it answers (its own id for a user message);
        the result is in turn order, oldest first, each turn's messages in the order they were stored.
        User messages still pending (or failed), and anything belonging to such a turn, are left out.
        """
        params = {
            "conversation_id": conversation_id,
            "after_id": -1 if after_id is None else after_id,
            "before_id": sql.NO_UPPER_ID if before_id is None else before_id,
            "limit": max(limit, 0),
        }
        return await self._db.read(self._history_tx, params)

    async def pending_turns(self) -> list[MessageRecord]:
        """User messages whose turn is neither done nor failed, oldest first (for recovery)."""
        return await self._db.read(self._messages_tx, sql.PENDING_TURNS, {})

    async def count_messages(self, conversation_id: str | None = None) -> int:
        if conversation_id is None:
            return await self._db.read(sql.count, sql.COUNT_ALL, {})
        return await self._db.read(sql.count, sql.COUNT_IN, {"conversation_id": conversation_id})

    def _one_message_tx(
        self, conn: Connection, /, statement: Executable, params: dict[str, Any]
    ) -> MessageRecord | None:
        row = conn.execute(statement, params).first()
        return None if row is None else self._rows.message(row)

    def _messages_tx(self, conn: Connection, /, statement: Executable, params: dict[str, Any]) -> list[MessageRecord]:
        return [self._rows.message(row) for row in conn.execute(statement, params)]

    def _history_tx(self, conn: Connection, /, params: dict[str, Any]) -> list[MessageRecord]:
        rows = conn.execute(sql.HISTORY, params).all()
        return [self._rows.message(row) for row in reversed(rows)]

    async def append_notice(self, conversation_id: str, text: str, meta: Mapping[str, Any] | None = None
                            ) -> MessageRecord:
        """Store an assistant message that answers no turn (a reminder, a notification)."""
        now = utcnow()
        row = {"conversation_id": conversation_id, "role": "assistant", "content": self._codec.encode(text),
               "meta": dict(meta or {}), "dedup_key": None, "status": None, "reply_to": None, "error_code": None,
               "error_message": None, "attempts": 0, "created_at": now}

        def tx(conn: Connection) -> MessageRecord:
            stored = self._rows.message(conn.execute(sql.INSERT_MESSAGE, row).one())
            conn.execute(sql.TOUCH, {"p_id": conversation_id, "now": now})
            return stored

        try:
            return await self._db.write(tx)
        except ConstraintViolation as exc:
            raise NotFound(f"conversation {conversation_id} not found") from exc

    # --- turns ----------------------------------------------------------------------------------

    async def complete_turn(self, user_message_id: int, produced: Sequence[NewMessage]) -> list[MessageRecord]:
        """Store what the turn produced (replies, tool calls and results, in order) and mark it done.

        All or nothing. A turn that is not pending (already done, failed) raises
        ``InvalidRequest(code="turn_closed")`` and changes nothing; an unknown id ``NotFound``.
        """
        now = utcnow()
        rows = []
        for item in produced:
            if item.role not in ("assistant", "tool"):
                raise InvalidRequest(f"a turn produces assistant and tool messages, not {item.role!r} ones")
            rows.append({
                "role": item.role, "content": self._codec.encode(item.content), "meta": dict(item.meta),
                "dedup_key": None, "status": None, "reply_to": user_message_id, "error_code": None,
                "error_message": None, "attempts": 0, "created_at": now,
            })
        if self._fast is not None:
            stored = await self._db.write_sqlite(self._fast.complete, user_message_id, rows, now)
            if stored is not None:
                return stored
        return await self._db.write_inline(self._complete_turn_tx, user_message_id, rows, now)

    def _complete_turn_tx(
        self, conn: Connection, /, user_message_id: int, rows: list[dict[str, Any]], now: datetime
    ) -> list[MessageRecord]:
        closed = conn.execute(sql.CLOSE_TURN, {"p_id": user_message_id}).first()
        if closed is None:
            status = conn.execute(sql.STATUS, {"id": user_message_id}).first()
            if status is None:
                raise NotFound(f"message {user_message_id} not found")
            raise InvalidRequest(f"turn {user_message_id} is already {status[0] or 'closed'}", code="turn_closed")
        conversation_id = closed[0]
        stored: list[MessageRecord] = []
        if rows:
            for row in rows:
                row["conversation_id"] = conversation_id
            stored = [self._rows.message(row) for row in conn.execute(sql.INSERT_PRODUCED, rows)]
        conn.execute(sql.TOUCH_DONE, {"p_id": conversation_id, "now": now, "p_turn": user_message_id})
        return stored

    async def fail_turn(self, user_message_id: int, code: str, message: str) -> bool:
        """Close a pending turn as failed with an error for the user; ``False`` if it was not pending."""
        params = {"p_id": user_message_id, "code": code, "message": message}
        return bool(await self._db.write_inline(sql.rowcount, sql.FAIL_TURN, params))

    async def start_attempt(self, user_message_id: int) -> int:
        """Count one more attempt at a turn and return the count (1 for the first)."""
        attempts = await self._db.write_inline(sql.scalar, sql.START_ATTEMPT, {"p_id": user_message_id})
        if attempts is None:
            raise NotFound(f"message {user_message_id} not found")
        return int(attempts)

    # --- retention ----------------------------------------------------------------------------

    async def purge_before(self, cutoff: datetime, *, batch_size: int = PURGE_BATCH) -> int:
        """Delete what is older than ``cutoff`` and return how many messages went.

        Messages created before it go (except turns still pending), then conversations left
        empty and not updated since, and summaries none of whose covered messages remain. Works
        in batches of ``batch_size`` rows, each its own transaction, so that new messages are
        never held up for long.
        """
        if cutoff.tzinfo is None:
            raise ValueError("cutoff must be timezone-aware")
        params = {"cutoff": cutoff, "batch": batch_size}
        deleted = 0
        while True:
            batch = await self._db.write(sql.rowcount, sql.PURGE_MESSAGES, params)
            deleted += batch
            if batch < batch_size:
                break
        await self._db.write(sql.rowcount, sql.CLEAR_STALE_SUMMARIES, {})
        while await self._db.write(sql.rowcount, sql.PURGE_CONVERSATIONS, params) >= batch_size:
            pass
        return deleted
