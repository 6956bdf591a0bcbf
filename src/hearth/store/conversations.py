"""Conversations and their messages: the inbox's durable half and the memory's source.

A *turn* is one user message and what hearth produced for it. The user message is stored first,
``pending``, by ``accept_message`` - before the sender gets an acknowledgement, and deduplicated
by the platform's own message id - so a crash loses nothing accepted; start-up finds unfinished
turns with ``pending_turns``. ``complete_turn`` then stores the replies and closes the turn in
one transaction, or ``fail_turn`` closes it with an error. ``history`` shows only finished
turns, so a model never sees a question without its answer, or half a tool exchange.

This is on the path of every message, hence Core statements built once at import, one
``RETURNING`` statement where a look-up would otherwise follow a write, and status literals in
the SQL (not parameters) so that both databases can use the partial index of pending turns.
Text goes through the ``MessageCodec`` in both directions and nowhere else.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import ColumnClause, Executable

from hearth.errors import InvalidRequest, NotFound, StorageError
from hearth.store.codec import MessageCodec
from hearth.store.engine import ConstraintViolation, Database
from hearth.store.fastpath import SqliteTurns
from hearth.store.records import Accepted, ConversationRecord, MessageRecord, NewMessage
from hearth.store.schema import conversations, messages, users, utcnow

__all__ = ["ConversationOverview", "ConversationPage", "ConversationRepository", "MessagePage"]

PURGE_BATCH = 2000  # rows per purge transaction, so that other writers get the lock in between
_NO_UPPER_ID = 2**63 - 1

_PENDING: ColumnClause[str] = literal_column("'pending'")
_DONE: ColumnClause[str] = literal_column("'done'")
_FAILED: ColumnClause[str] = literal_column("'failed'")
_ASSISTANT: ColumnClause[str] = literal_column("'assistant'")

_MSG = tuple(messages.c)  # column order == MessageRecord's field order
_CONV = tuple(conversations.c)  # column order == ConversationRecord's field order
_NM = len(_MSG)
_m, _c = messages.c, conversations.c
_parent = messages.alias("parent")

_USER_EXISTS = select(users.c.id).where(users.c.id == bindparam("user_id"))

# --- conversations ---------------------------------------------------------------------------
_INSERT_CONVERSATION = insert(conversations).returning(*_CONV)
_CONVERSATION = select(*_CONV).where(_c.id == bindparam("id"))
_CONVERSATION_BY_REF = select(*_CONV).where(
    _c.user_id == bindparam("user_id"), _c.channel == bindparam("channel"), _c.external_ref == bindparam("external_ref")
)
_LIST_CONVERSATIONS = (
    select(*_CONV)
    .where(_c.user_id == bindparam("user_id"))
    .order_by(_c.updated_at.desc(), _c.id.desc())
    .limit(bindparam("limit"))
)
# The UPDATEs double as look-ups: one round trip finds, checks ownership of and bumps a conversation.
# In UPDATEs a parameter may not share a column's name: those are prefixed "p_".
_TOUCH_OWNED = (
    update(conversations)
    .where(_c.id == bindparam("p_id"), _c.user_id == bindparam("p_user_id"))
    .values(updated_at=bindparam("now"))
    .returning(*_CONV)
)
_TOUCH_BY_REF = (
    update(conversations)
    .where(_c.user_id == bindparam("p_user_id"), _c.channel == bindparam("p_channel"),
           _c.external_ref == bindparam("p_external_ref"))
    .values(updated_at=bindparam("now"))
    .returning(*_CONV)
)
_TOUCH = update(conversations).where(_c.id == bindparam("p_id")).values(updated_at=bindparam("now"))
# Closing a turn records it as the conversation's last completed one (turns of a conversation complete
# in order; the comparison keeps the larger id should a recovered turn ever finish late).
_TOUCH_DONE = (
    update(conversations)
    .where(_c.id == bindparam("p_id"))
    .values(updated_at=bindparam("now"),
            last_turn=func.coalesce(case((_c.last_turn > bindparam("p_turn"), _c.last_turn)), bindparam("p_turn")))
)
_SET_SUMMARY = (
    update(conversations)
    .where(_c.id == bindparam("p_id"))
    .values(summary=bindparam("p_summary"), summary_upto=bindparam("p_summary_upto"))
)

# --- messages --------------------------------------------------------------------------------
_INSERT_MESSAGE = insert(messages).returning(*_MSG)
_INSERT_PRODUCED = insert(messages).returning(*_MSG, sort_by_parameter_order=True)
_MESSAGE = select(*_MSG).where(_m.id == bindparam("id"))
_BY_DEDUP_KEY = select(*_MSG).where(_m.dedup_key == bindparam("dedup_key"))
_DEDUP_WITH_CONVERSATION = (
    select(*_MSG, *_CONV)
    .join_from(messages, conversations, _m.conversation_id == _c.id)
    .where(_m.dedup_key == bindparam("dedup_key"))
)
_REPLY_FOR = (
    select(*_MSG)
    .where(_m.reply_to == bindparam("id"), _m.role == _ASSISTANT)
    .order_by(_m.id.desc())
    .limit(1)
)
# Newest first (the index is walked backwards and stops at the limit); reversed in Python.
# A message's turn is its user message: its own id for a user message, ``reply_to`` for the rest.
# History is read in turn order, not id order: turn B may be accepted (and get its id) while turn A
# is still being answered, so A's answer can have a larger id than B's question.
_TURN = func.coalesce(_m.reply_to, _m.id)
_HISTORY = (
    select(*_MSG)
    .select_from(messages.outerjoin(_parent, _parent.c.id == _m.reply_to))
    .where(
        _m.conversation_id == bindparam("conversation_id"),
        bindparam("after_id") < _TURN,
        bindparam("before_id") > _TURN,
        or_(_m.status.is_(None), _m.status == _DONE),
        or_(_parent.c.status.is_(None), _parent.c.status == _DONE),
    )
    .order_by(_TURN.desc(), _m.id.desc())
    .limit(bindparam("limit"))
)
_PENDING_TURNS = select(*_MSG).where(_m.status == _PENDING).order_by(_m.id)
_STATUS = select(_m.status).where(_m.id == bindparam("id"))
_CLOSE_TURN = (
    update(messages)
    .where(_m.id == bindparam("p_id"), _m.status == _PENDING)
    .values(status=_DONE)
    .returning(_m.conversation_id)
)
_FAIL_TURN = (
    update(messages)
    .where(_m.id == bindparam("p_id"), _m.status == _PENDING)
    .values(status=_FAILED, error_code=bindparam("code"), error_message=bindparam("message"))
)
_START_ATTEMPT = (
    update(messages).where(_m.id == bindparam("p_id")).values(attempts=_m.attempts + 1).returning(_m.attempts)
)
_COUNT_ALL = select(func.count()).select_from(messages)
_COUNT_IN = select(func.count()).select_from(messages).where(_m.conversation_id == bindparam("conversation_id"))

# --- retention -------------------------------------------------------------------------------
# Batches are found through the created_at / updated_at indexes, so that the last (short) batch
# does not scan every message that is young enough to stay.
_PURGE_MESSAGES = delete(messages).where(
    _m.id.in_(
        select(_parent.c.id)
        .where(
            _parent.c.created_at < bindparam("cutoff"),
            or_(_parent.c.status.is_(None), _parent.c.status != _PENDING),
        )
        .limit(bindparam("batch"))
    )
)
_CLEAR_STALE_SUMMARIES = (
    update(conversations)
    .where(
        _c.summary_upto.is_not(None),
        ~exists().where(_m.conversation_id == _c.id, func.coalesce(_m.reply_to, _m.id) <= _c.summary_upto),
    )
    .values(summary=None, summary_upto=None)
)
_old = conversations.alias("old")
_PURGE_CONVERSATIONS = delete(conversations).where(
    _c.id.in_(
        select(_old.c.id)
        .where(_old.c.updated_at < bindparam("cutoff"), ~exists().where(_m.conversation_id == _old.c.id))
        .limit(bindparam("batch"))
    )
)

# --- what people see: the list of conversations and a conversation's messages, page by page ----------
_USER: ColumnClause[str] = literal_column("'user'")
_later = messages.alias("later")
# A person sees user messages, notices and each turn's answer: the turn's last assistant message (the
# ones before it carried tool calls, and tool messages are the tools' own).
_SHOWN = or_(
    _m.role == _USER,
    and_(_m.role == _ASSISTANT, or_(_m.reply_to.is_(None), ~exists().where(
        _later.c.reply_to == _m.reply_to, _later.c.role == _ASSISTANT, _later.c.id > _m.id))),
)
_OWNED = select(*_CONV).where(_c.id == bindparam("id"), _c.user_id == bindparam("user_id"))
_cursor = conversations.alias("cursor")
_CURSOR_UPDATED = (
    select(_cursor.c.updated_at)
    .where(_cursor.c.id == bindparam("before"), _cursor.c.user_id == bindparam("user_id"))
    .scalar_subquery()
)
_CONVERSATIONS_BEFORE = (
    select(*_CONV)
    .where(_c.user_id == bindparam("user_id"),
           or_(_c.updated_at < _CURSOR_UPDATED, and_(_c.updated_at == _CURSOR_UPDATED, _c.id < bindparam("before"))))
    .order_by(_c.updated_at.desc(), _c.id.desc())
    .limit(bindparam("limit"))
)
_COUNT_SHOWN = (
    select(_m.conversation_id, func.count())
    .where(_m.conversation_id.in_(bindparam("ids", expanding=True)), _SHOWN)
    .group_by(_m.conversation_id)
)
_first = messages.alias("first")
_FIRST_USER_MESSAGES = select(_m.conversation_id, _m.content).where(_m.id.in_(
    select(func.min(_first.c.id))
    .where(_first.c.conversation_id.in_(bindparam("ids", expanding=True)), _first.c.role == _USER)
    .group_by(_first.c.conversation_id)
))
_TURN_OF = select(_TURN).where(_m.id == bindparam("id"), _m.conversation_id == bindparam("conversation_id"))
# In turn order like ``_HISTORY``, newest first; the cursor is a message: everything shown before it.
_SHOWN_BEFORE = (
    select(*_MSG)
    .where(_m.conversation_id == bindparam("conversation_id"), _SHOWN,
           or_(bindparam("before_turn") > _TURN,
               and_(bindparam("before_turn") == _TURN, _m.id < bindparam("before_id"))))
    .order_by(_TURN.desc(), _m.id.desc())
    .limit(bindparam("limit"))
)
_RENAME = (
    update(conversations)
    .where(_c.id == bindparam("p_id"), _c.user_id == bindparam("p_user_id"))
    .values(title=bindparam("p_title"))
    .returning(*_CONV)
)
_DELETE_MESSAGES_OF = delete(messages).where(_m.conversation_id == bindparam("conversation_id"))
_DELETE_CONVERSATION = delete(conversations).where(_c.id == bindparam("id"))
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


class ConversationRepository:
    """Conversations, messages and turns. ``codec`` turns text into stored bytes and back.

    Each public method is one ``Database`` transaction; the ``_..._tx`` methods are their bodies,
    run where the database runs them (a worker thread for SQLite), so the codec must be
    thread-safe.
    """

    def __init__(self, db: Database, codec: MessageCodec) -> None:
        self._db = db
        self._codec = codec
        # SQLite file databases take the two per-message transactions on the fast path
        self._fast = SqliteTurns(codec) if db.inline_sqlite else None

    # --- conversations ------------------------------------------------------------------------

    async def create_conversation(
        self, user_id: int, channel: str, external_ref: str | None = None, title: str | None = None
    ) -> ConversationRecord:
        """Start a conversation. A second one with the same ``external_ref`` raises ``code="exists"``."""
        params = _new_conversation(user_id, channel, external_ref, title, utcnow())
        try:
            return await self._db.write(self._insert_conversation_tx, params)
        except ConstraintViolation as exc:
            if not await self._user_exists(user_id):
                raise NotFound(f"user {user_id} not found") from exc
            raise InvalidRequest(f"conversation {external_ref!r} already exists", code="exists") from exc

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        return await self._db.read(self._one_conversation_tx, _CONVERSATION, {"id": conversation_id})

    async def find_conversation(
        self, user_id: int, channel: str, external_ref: str
    ) -> ConversationRecord | None:
        params = {"user_id": user_id, "channel": channel, "external_ref": external_ref}
        return await self._db.read(self._one_conversation_tx, _CONVERSATION_BY_REF, params)

    async def list_conversations(self, user_id: int, limit: int = 50) -> list[ConversationRecord]:
        """A user's conversations, most recently updated first."""
        return await self._db.read(self._list_conversations_tx, {"user_id": user_id, "limit": max(limit, 0)})

    async def set_summary(self, conversation_id: str, summary: str, upto_id: int) -> None:
        """Store a summary of the conversation's turns up to and including the turn ``upto_id``
        (the id of the last summarised user message)."""
        params = {"p_id": conversation_id, "p_summary": self._codec.encode(summary), "p_summary_upto": upto_id}
        if not await self._db.write(_rowcount, _SET_SUMMARY, params):
            raise NotFound(f"conversation {conversation_id} not found")

    def _one_conversation_tx(
        self, conn: Connection, /, statement: Executable, params: dict[str, Any]
    ) -> ConversationRecord | None:
        row = conn.execute(statement, params).first()
        return None if row is None else self._conversation(row)

    def _insert_conversation_tx(self, conn: Connection, /, params: dict[str, Any]) -> ConversationRecord:
        return self._conversation(conn.execute(_INSERT_CONVERSATION, params).one())

    def _list_conversations_tx(self, conn: Connection, /, params: dict[str, Any]) -> list[ConversationRecord]:
        return [self._conversation(row) for row in conn.execute(_LIST_CONVERSATIONS, params)]

    # --- what people see -----------------------------------------------------------------------

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
            rows = conn.execute(_LIST_CONVERSATIONS, params).all()
        else:
            if conn.execute(_OWNED, {"id": before, "user_id": user_id}).first() is None:
                raise InvalidRequest(f"'before' is not one of your conversations: {before[:64]!r}", code="bad_cursor")
            rows = conn.execute(_CONVERSATIONS_BEFORE, {**params, "before": before}).all()
        found = [self._conversation(row) for row in rows[:limit]]
        ids = [c.id for c in found]
        counts: dict[str, int] = {}
        firsts: dict[str, bytes] = {}
        if ids:
            counts = {row[0]: int(row[1]) for row in conn.execute(_COUNT_SHOWN, {"ids": ids})}
            untitled = [c.id for c in found if not c.title]
            if untitled:
                firsts = {row[0]: row[1] for row in conn.execute(_FIRST_USER_MESSAGES, {"ids": untitled})}
        overviews = []
        for c in found:
            title = c.title or (_title_from(self._decode(firsts[c.id])) if c.id in firsts else "")
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
        row = conn.execute(_OWNED, {"id": conversation_id, "user_id": user_id}).first()
        if row is None:
            raise NotFound(f"conversation {conversation_id[:64]} not found")
        before_turn = before_id = _NO_UPPER_ID
        if before is not None:
            turn = conn.execute(_TURN_OF, {"id": before, "conversation_id": conversation_id}).scalar_one_or_none()
            if turn is None:
                raise InvalidRequest(f"'before' is not a message of this conversation: {before}", code="bad_cursor")
            before_turn, before_id = int(turn), before
        rows = conn.execute(_SHOWN_BEFORE, {"conversation_id": conversation_id, "before_turn": before_turn,
                                            "before_id": before_id, "limit": limit + 1}).all()
        shown = [self._message(r) for r in reversed(rows[:limit])]
        return MessagePage(self._conversation(row), shown, len(rows) > limit)

    async def rename_conversation(self, user_id: int, conversation_id: str, title: str | None
                                  ) -> ConversationRecord:
        """Set the title of the user's conversation (``None`` or blank: back to its first message)."""
        params = {"p_id": conversation_id, "p_user_id": user_id, "p_title": (title or "").strip() or None}
        record = await self._db.write(self._one_conversation_tx, _RENAME, params)
        if record is None:
            raise NotFound(f"conversation {conversation_id[:64]} not found")
        return record

    async def delete_conversation(self, user_id: int, conversation_id: str) -> int:
        """Delete the user's conversation with all its messages (its pending questions and scheduled
        messages go with it; its files stay, no longer tied to it); returns how many messages went.
        ``NotFound`` for a conversation that is not the user's."""
        return await self._db.write(self._delete_conversation_tx, user_id, conversation_id)

    def _delete_conversation_tx(self, conn: Connection, /, user_id: int, conversation_id: str) -> int:
        if conn.execute(_OWNED, {"id": conversation_id, "user_id": user_id}).first() is None:
            raise NotFound(f"conversation {conversation_id[:64]} not found")
        deleted = int(conn.execute(_DELETE_MESSAGES_OF, {"conversation_id": conversation_id}).rowcount)
        conn.execute(_DELETE_CONVERSATION, {"id": conversation_id})
        return deleted

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
        seen = conn.execute(_DEDUP_WITH_CONVERSATION, {"dedup_key": dedup_key}).first()
        if seen is not None:
            conversation = self._conversation(seen[_NM:])
            if conversation.user_id != user_id:
                raise InvalidRequest("this message id was already used by someone else", code="exists")
            return Accepted(self._message(seen), conversation, created=False)
        now = utcnow()
        row: Row[Any] | None
        if conversation_id is not None:
            params: dict[str, Any] = {"p_id": conversation_id, "p_user_id": user_id, "now": now}
            row = conn.execute(_TOUCH_OWNED, params).first()
            if row is None:
                raise NotFound(f"conversation {conversation_id} not found")
        else:
            row = None
            if external_ref is not None:
                params = {"p_user_id": user_id, "p_channel": channel, "p_external_ref": external_ref, "now": now}
                row = conn.execute(_TOUCH_BY_REF, params).first()
            if row is None:
                params = _new_conversation(user_id, channel, external_ref, None, now)
                row = conn.execute(_INSERT_CONVERSATION, params).one()
        conversation = self._conversation(row)
        message = conn.execute(_INSERT_MESSAGE, {
            "conversation_id": conversation.id, "role": "user", "content": content, "meta": meta,
            "dedup_key": dedup_key, "status": "pending", "reply_to": None, "error_code": None,
            "error_message": None, "attempts": attempts, "created_at": now,
        }).one()
        return Accepted(self._message(message), conversation, created=True)

    async def _user_exists(self, user_id: int) -> bool:
        return await self._db.read(_exists, _USER_EXISTS, {"user_id": user_id})

    # --- reading messages ---------------------------------------------------------------------

    async def get_message(self, message_id: int) -> MessageRecord | None:
        return await self._db.read(self._one_message_tx, _MESSAGE, {"id": message_id})

    async def find_by_dedup_key(self, dedup_key: str) -> MessageRecord | None:
        return await self._db.read(self._one_message_tx, _BY_DEDUP_KEY, {"dedup_key": dedup_key})

    async def reply_for(self, user_message_id: int) -> MessageRecord | None:
        """The final assistant message of a turn, or ``None`` if it has none (yet)."""
        return await self._db.read(self._one_message_tx, _REPLY_FOR, {"id": user_message_id})

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
            "before_id": _NO_UPPER_ID if before_id is None else before_id,
            "limit": max(limit, 0),
        }
        return await self._db.read(self._history_tx, params)

    async def pending_turns(self) -> list[MessageRecord]:
        """User messages whose turn is neither done nor failed, oldest first (for recovery)."""
        return await self._db.read(self._messages_tx, _PENDING_TURNS, {})

    async def count_messages(self, conversation_id: str | None = None) -> int:
        if conversation_id is None:
            return await self._db.read(_count, _COUNT_ALL, {})
        return await self._db.read(_count, _COUNT_IN, {"conversation_id": conversation_id})

    def _one_message_tx(
        self, conn: Connection, /, statement: Executable, params: dict[str, Any]
    ) -> MessageRecord | None:
        row = conn.execute(statement, params).first()
        return None if row is None else self._message(row)

    def _messages_tx(self, conn: Connection, /, statement: Executable, params: dict[str, Any]) -> list[MessageRecord]:
        return [self._message(row) for row in conn.execute(statement, params)]

    def _history_tx(self, conn: Connection, /, params: dict[str, Any]) -> list[MessageRecord]:
        rows = conn.execute(_HISTORY, params).all()
        return [self._message(row) for row in reversed(rows)]

    async def append_notice(self, conversation_id: str, text: str, meta: Mapping[str, Any] | None = None
                            ) -> MessageRecord:
        """Store an assistant message that answers no turn (a reminder, a notification)."""
        now = utcnow()
        row = {"conversation_id": conversation_id, "role": "assistant", "content": self._codec.encode(text),
               "meta": dict(meta or {}), "dedup_key": None, "status": None, "reply_to": None, "error_code": None,
               "error_message": None, "attempts": 0, "created_at": now}

        def tx(conn: Connection) -> MessageRecord:
            stored = self._message(conn.execute(_INSERT_MESSAGE, row).one())
            conn.execute(_TOUCH, {"p_id": conversation_id, "now": now})
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
        closed = conn.execute(_CLOSE_TURN, {"p_id": user_message_id}).first()
        if closed is None:
            status = conn.execute(_STATUS, {"id": user_message_id}).first()
            if status is None:
                raise NotFound(f"message {user_message_id} not found")
            raise InvalidRequest(f"turn {user_message_id} is already {status[0] or 'closed'}", code="turn_closed")
        conversation_id = closed[0]
        stored: list[MessageRecord] = []
        if rows:
            for row in rows:
                row["conversation_id"] = conversation_id
            stored = [self._message(row) for row in conn.execute(_INSERT_PRODUCED, rows)]
        conn.execute(_TOUCH_DONE, {"p_id": conversation_id, "now": now, "p_turn": user_message_id})
        return stored

    async def fail_turn(self, user_message_id: int, code: str, message: str) -> bool:
        """Close a pending turn as failed with an error for the user; ``False`` if it was not pending."""
        params = {"p_id": user_message_id, "code": code, "message": message}
        return bool(await self._db.write_inline(_rowcount, _FAIL_TURN, params))

    async def start_attempt(self, user_message_id: int) -> int:
        """Count one more attempt at a turn and return the count (1 for the first)."""
        attempts = await self._db.write_inline(_scalar, _START_ATTEMPT, {"p_id": user_message_id})
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
            batch = await self._db.write(_rowcount, _PURGE_MESSAGES, params)
            deleted += batch
            if batch < batch_size:
                break
        await self._db.write(_rowcount, _CLEAR_STALE_SUMMARIES, {})
        while await self._db.write(_rowcount, _PURGE_CONVERSATIONS, params) >= batch_size:
            pass
        return deleted

    # --- rows to records ----------------------------------------------------------------------

    def _message(self, row: Sequence[Any]) -> MessageRecord:
        return MessageRecord(
            row[0], row[1], row[2], self._decode(row[3]), row[4], row[5],
            row[6], row[7], row[8], row[9], row[10], row[11],
        )

    def _conversation(self, row: Sequence[Any]) -> ConversationRecord:
        summary = row[5]
        return ConversationRecord(
            row[0], row[1], row[2], row[3], row[4],
            None if summary is None else self._decode(summary), row[6], row[7], row[8], row[9],
        )

    def _decode(self, data: bytes) -> str:
        try:
            return self._codec.decode(data)
        except ValueError as exc:
            raise StorageError("a stored message could not be decoded (wrong codec or key?)") from exc


def _rowcount(conn: Connection, /, statement: Executable, params: dict[str, Any]) -> int:
    return int(conn.execute(statement, params).rowcount)


def _scalar(conn: Connection, /, statement: Executable, params: dict[str, Any]) -> Any:
    return conn.execute(statement, params).scalar_one_or_none()


def _count(conn: Connection, /, statement: Executable, params: dict[str, Any]) -> int:
    return int(conn.execute(statement, params).scalar_one())


def _exists(conn: Connection, /, statement: Executable, params: dict[str, Any]) -> bool:
    return conn.execute(statement, params).first() is not None


def _title_from(text: str) -> str:
    """A title from a first message: its first line of words (not a line naming an attached file), cut."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    words = [line for line in lines if line and not line.startswith("[attached file ")]
    title = next(iter(words or [line for line in lines if line]), "")
    return title if len(title) <= TITLE_LENGTH else title[: TITLE_LENGTH - 1].rstrip() + "…"


def _new_conversation(
    user_id: int, channel: str, external_ref: str | None, title: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex, "user_id": user_id, "channel": channel, "external_ref": external_ref,
        "title": title, "summary": None, "summary_upto": None, "created_at": now, "updated_at": now,
        "last_turn": None,
    }
