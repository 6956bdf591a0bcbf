"""The SQL of conversations and messages, and its rows as records.

The statements are SQLAlchemy Core, built once at import: they are on the path of every message. One
``RETURNING`` statement stands where a look-up would otherwise follow a write, and status literals are in
the SQL (not parameters) so that both databases can use the partial index of pending turns. In UPDATEs a
parameter may not share a column's name: those are prefixed ``p_``.

A message's *turn* is its user message: its own id for a user message, ``reply_to`` for the rest.
Statements return the columns in the order of the record's fields, which ``ConversationRows`` relies on;
text goes through the ``MessageCodec`` there and nowhere else.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
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

from hearth.errors import StorageError
from hearth.store.codec import MessageCodec
from hearth.store.records import ConversationRecord, MessageRecord
from hearth.store.schema import conversations, messages, users

NO_UPPER_ID = 2**63 - 1  # "before_id" when there is no upper bound

_PENDING: ColumnClause[str] = literal_column("'pending'")
_DONE: ColumnClause[str] = literal_column("'done'")
_FAILED: ColumnClause[str] = literal_column("'failed'")
_ASSISTANT: ColumnClause[str] = literal_column("'assistant'")

_MSG = tuple(messages.c)  # column order == MessageRecord's field order
_CONV = tuple(conversations.c)  # column order == ConversationRecord's field order
MESSAGE_WIDTH = len(_MSG)  # in a row of a message joined with its conversation, where the conversation starts
_m, _c = messages.c, conversations.c
_parent = messages.alias("parent")

USER_EXISTS = select(users.c.id).where(users.c.id == bindparam("user_id"))

# --- conversations ---------------------------------------------------------------------------
INSERT_CONVERSATION = insert(conversations).returning(*_CONV)
CONVERSATION = select(*_CONV).where(_c.id == bindparam("id"))
CONVERSATION_BY_REF = select(*_CONV).where(
    _c.user_id == bindparam("user_id"), _c.channel == bindparam("channel"), _c.external_ref == bindparam("external_ref")
)
LIST_CONVERSATIONS = (
    select(*_CONV)
    .where(_c.user_id == bindparam("user_id"))
    .order_by(_c.updated_at.desc(), _c.id.desc())
    .limit(bindparam("limit"))
)
# The UPDATEs double as look-ups: one round trip finds, checks ownership of and bumps a conversation.
# In UPDATEs a parameter may not share a column's name: those are prefixed "p_".
TOUCH_OWNED = (
    update(conversations)
    .where(_c.id == bindparam("p_id"), _c.user_id == bindparam("p_user_id"))
    .values(updated_at=bindparam("now"))
    .returning(*_CONV)
)
TOUCH_BY_REF = (
    update(conversations)
    .where(_c.user_id == bindparam("p_user_id"), _c.channel == bindparam("p_channel"),
           _c.external_ref == bindparam("p_external_ref"))
    .values(updated_at=bindparam("now"))
    .returning(*_CONV)
)
TOUCH = update(conversations).where(_c.id == bindparam("p_id")).values(updated_at=bindparam("now"))
# Closing a turn records it as the conversation's last completed one (turns of a conversation complete
# in order; the comparison keeps the larger id should a recovered turn ever finish late).
TOUCH_DONE = (
    update(conversations)
    .where(_c.id == bindparam("p_id"))
    .values(updated_at=bindparam("now"),
            last_turn=func.coalesce(case((_c.last_turn > bindparam("p_turn"), _c.last_turn)), bindparam("p_turn")))
)
SET_SUMMARY = (
    update(conversations)
    .where(_c.id == bindparam("p_id"))
    .values(summary=bindparam("p_summary"), summary_upto=bindparam("p_summary_upto"))
)

# --- messages --------------------------------------------------------------------------------
INSERT_MESSAGE = insert(messages).returning(*_MSG)
INSERT_PRODUCED = insert(messages).returning(*_MSG, sort_by_parameter_order=True)
MESSAGE = select(*_MSG).where(_m.id == bindparam("id"))
BY_DEDUP_KEY = select(*_MSG).where(_m.dedup_key == bindparam("dedup_key"))
DEDUP_WITH_CONVERSATION = (
    select(*_MSG, *_CONV)
    .join_from(messages, conversations, _m.conversation_id == _c.id)
    .where(_m.dedup_key == bindparam("dedup_key"))
)
REPLY_FOR = (
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
HISTORY = (
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
PENDING_TURNS = select(*_MSG).where(_m.status == _PENDING).order_by(_m.id)
STATUS = select(_m.status).where(_m.id == bindparam("id"))
CLOSE_TURN = (
    update(messages)
    .where(_m.id == bindparam("p_id"), _m.status == _PENDING)
    .values(status=_DONE)
    .returning(_m.conversation_id)
)
FAIL_TURN = (
    update(messages)
    .where(_m.id == bindparam("p_id"), _m.status == _PENDING)
    .values(status=_FAILED, error_code=bindparam("code"), error_message=bindparam("message"))
)
START_ATTEMPT = (
    update(messages).where(_m.id == bindparam("p_id")).values(attempts=_m.attempts + 1).returning(_m.attempts)
)
COUNT_ALL = select(func.count()).select_from(messages)
COUNT_IN = select(func.count()).select_from(messages).where(_m.conversation_id == bindparam("conversation_id"))

# --- retention -------------------------------------------------------------------------------
# Batches are found through the created_at / updated_at indexes, so that the last (short) batch
# does not scan every message that is young enough to stay.
PURGE_MESSAGES = delete(messages).where(
    _m.id.in_(
        select(_parent.c.id)
        .where(
            _parent.c.created_at < bindparam("cutoff"),
            or_(_parent.c.status.is_(None), _parent.c.status != _PENDING),
        )
        .limit(bindparam("batch"))
    )
)
CLEAR_STALE_SUMMARIES = (
    update(conversations)
    .where(
        _c.summary_upto.is_not(None),
        ~exists().where(_m.conversation_id == _c.id, func.coalesce(_m.reply_to, _m.id) <= _c.summary_upto),
    )
    .values(summary=None, summary_upto=None)
)
_old = conversations.alias("old")
PURGE_CONVERSATIONS = delete(conversations).where(
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
OWNED = select(*_CONV).where(_c.id == bindparam("id"), _c.user_id == bindparam("user_id"))
_cursor = conversations.alias("cursor")
_CURSOR_UPDATED = (
    select(_cursor.c.updated_at)
    .where(_cursor.c.id == bindparam("before"), _cursor.c.user_id == bindparam("user_id"))
    .scalar_subquery()
)
CONVERSATIONS_BEFORE = (
    select(*_CONV)
    .where(_c.user_id == bindparam("user_id"),
           or_(_c.updated_at < _CURSOR_UPDATED, and_(_c.updated_at == _CURSOR_UPDATED, _c.id < bindparam("before"))))
    .order_by(_c.updated_at.desc(), _c.id.desc())
    .limit(bindparam("limit"))
)
COUNT_SHOWN = (
    select(_m.conversation_id, func.count())
    .where(_m.conversation_id.in_(bindparam("ids", expanding=True)), _SHOWN)
    .group_by(_m.conversation_id)
)
_first = messages.alias("first")
FIRST_USER_MESSAGES = select(_m.conversation_id, _m.content).where(_m.id.in_(
    select(func.min(_first.c.id))
    .where(_first.c.conversation_id.in_(bindparam("ids", expanding=True)), _first.c.role == _USER)
    .group_by(_first.c.conversation_id)
))
TURN_OF = select(_TURN).where(_m.id == bindparam("id"), _m.conversation_id == bindparam("conversation_id"))
# In turn order like ``HISTORY``, newest first; the cursor is a message: everything shown before it.
SHOWN_BEFORE = (
    select(*_MSG)
    .where(_m.conversation_id == bindparam("conversation_id"), _SHOWN,
           or_(bindparam("before_turn") > _TURN,
               and_(bindparam("before_turn") == _TURN, _m.id < bindparam("before_id"))))
    .order_by(_TURN.desc(), _m.id.desc())
    .limit(bindparam("limit"))
)
RENAME = (
    update(conversations)
    .where(_c.id == bindparam("p_id"), _c.user_id == bindparam("p_user_id"))
    .values(title=bindparam("p_title"))
    .returning(*_CONV)
)
DELETE_MESSAGES_OF = delete(messages).where(_m.conversation_id == bindparam("conversation_id"))
DELETE_CONVERSATION = delete(conversations).where(_c.id == bindparam("id"))


class ConversationRows:
    """Rows of these statements as records, their text decoded by ``codec``."""

    def __init__(self, codec: MessageCodec) -> None:
        self._codec = codec

    def message(self, row: Sequence[Any]) -> MessageRecord:
        return MessageRecord(
            row[0], row[1], row[2], self.decode(row[3]), row[4], row[5],
            row[6], row[7], row[8], row[9], row[10], row[11],
        )

    def conversation(self, row: Sequence[Any]) -> ConversationRecord:
        summary = row[5]
        return ConversationRecord(
            row[0], row[1], row[2], row[3], row[4],
            None if summary is None else self.decode(summary), row[6], row[7], row[8], row[9],
        )

    def decode(self, data: bytes) -> str:
        try:
            return self._codec.decode(data)
        except ValueError as exc:
            raise StorageError("a stored message could not be decoded (wrong codec or key?)") from exc


# --- one statement as a whole transaction body (for ``Database.read`` and ``Database.write``) ---------------


def rowcount(conn: Connection, /, statement: Executable, params: dict[str, Any]) -> int:
    return int(conn.execute(statement, params).rowcount)


def scalar(conn: Connection, /, statement: Executable, params: dict[str, Any]) -> Any:
    return conn.execute(statement, params).scalar_one_or_none()


def count(conn: Connection, /, statement: Executable, params: dict[str, Any]) -> int:
    return int(conn.execute(statement, params).scalar_one())


def found(conn: Connection, /, statement: Executable, params: dict[str, Any]) -> bool:
    return conn.execute(statement, params).first() is not None


def new_conversation(
    user_id: int, channel: str, external_ref: str | None, title: str | None, now: datetime
) -> dict[str, Any]:
    """The parameters of ``INSERT_CONVERSATION`` for a new conversation."""
    return {
        "id": uuid.uuid4().hex, "user_id": user_id, "channel": channel, "external_ref": external_ref,
        "title": title, "summary": None, "summary_upto": None, "created_at": now, "updated_at": now,
        "last_turn": None,
    }
