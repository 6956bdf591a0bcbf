"""The two transactions on the path of every message, on SQLite, without SQLAlchemy's per-statement work.

Accepting a message and completing its turn are the only transactions every message pays for. On
SQLite the database work in them is about 0.1 ms; going through SQLAlchemy's execution machinery
(compiled-cache look-up, parameter and result processing, transaction objects) cost about 0.5 ms more,
measured, which was the largest single part of hearth's CPU per message. So on SQLite these two run
on the sqlite3 connection directly:

* the SQL comes from the same Core statements as everywhere else, compiled once for SQLite's dialect
  at import, so the schema is still written down in one place (``schema.py``);
* values are stored exactly as SQLAlchemy stores them (timestamps as UTC text, ``meta`` as JSON text,
  content as a blob), and a test checks that what this path writes reads back identically through
  the general path;
* anything out of the ordinary - a message id seen before, a turn that is not pending - returns
  ``None`` before writing anything, and the caller takes the general path, which owns those rules.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import bindparam, case, func, insert, literal_column, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ClauseElement

from hearth.errors import NotFound
from hearth.store.codec import MessageCodec
from hearth.store.records import Accepted, ConversationRecord, MessageRecord
from hearth.store.schema import conversations, messages

_DIALECT = sqlite.dialect(paramstyle="named")
_m, _c = messages.c, conversations.c
_CONV = tuple(conversations.c)


def _sql(statement: ClauseElement) -> str:
    return str(statement.compile(dialect=_DIALECT))


_DEDUP = _sql(select(_m.id).where(_m.dedup_key == bindparam("dedup_key")))
_TOUCH_OWNED = _sql(update(conversations).where(_c.id == bindparam("p_id"), _c.user_id == bindparam("p_user_id"))
                    .values(updated_at=bindparam("now")).returning(*_CONV))
_TOUCH_BY_REF = _sql(update(conversations)
                     .where(_c.user_id == bindparam("p_user_id"), _c.channel == bindparam("p_channel"),
                            _c.external_ref == bindparam("p_external_ref"))
                     .values(updated_at=bindparam("now")).returning(*_CONV))
_INSERT_CONVERSATION = _sql(insert(conversations).values(
    id=bindparam("id"), user_id=bindparam("user_id"), channel=bindparam("channel"),
    external_ref=bindparam("external_ref"), created_at=bindparam("now"), updated_at=bindparam("now")))
_INSERT_MESSAGE = _sql(insert(messages).values(
    conversation_id=bindparam("conversation_id"), role=bindparam("role"), content=bindparam("content"),
    meta=bindparam("meta"), dedup_key=bindparam("dedup_key"), status=bindparam("status"),
    reply_to=bindparam("reply_to"), attempts=bindparam("attempts"), created_at=bindparam("now"),
).returning(_m.id))
_CLOSE_TURN = _sql(update(messages).where(_m.id == bindparam("p_id"), _m.status == literal_column("'pending'"))
                   .values(status=literal_column("'done'")).returning(_m.conversation_id))
_TOUCH_DONE = _sql(update(conversations).where(_c.id == bindparam("p_id")).values(
    updated_at=bindparam("now"),
    last_turn=func.coalesce(case((_c.last_turn > bindparam("p_turn"), _c.last_turn)), bindparam("p_turn"))))


def _stamp(value: datetime) -> str:
    """A timestamp as SQLAlchemy stores ``DateTime`` on SQLite: UTC wall-clock fields as text."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _read_stamp(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


class SqliteTurns:
    """``accept`` and ``complete`` for ``ConversationRepository`` on SQLite; each returns None to decline."""

    def __init__(self, codec: MessageCodec) -> None:
        self._codec = codec

    def accept(
        self, raw: sqlite3.Connection, /, conversation_id: str | None, user_id: int, channel: str,
        external_ref: str | None, dedup_key: str, content: bytes, meta: Mapping[str, Any], attempts: int,
        now: datetime,
    ) -> Accepted | None:
        if raw.execute(_DEDUP, {"dedup_key": dedup_key}).fetchone() is not None:
            return None  # seen before: the general path answers with the stored message
        stamp = _stamp(now)
        row: Sequence[Any] | None = None
        if conversation_id is not None:
            row = raw.execute(_TOUCH_OWNED, {"p_id": conversation_id, "p_user_id": user_id, "now": stamp}).fetchone()
            if row is None:
                raise NotFound(f"conversation {conversation_id} not found")
        elif external_ref is not None:
            row = raw.execute(_TOUCH_BY_REF, {"p_user_id": user_id, "p_channel": channel,
                                              "p_external_ref": external_ref, "now": stamp}).fetchone()
        if row is not None:
            conversation = self._conversation(row)
        else:
            new_id = uuid.uuid4().hex
            raw.execute(_INSERT_CONVERSATION, {"id": new_id, "user_id": user_id, "channel": channel,
                                               "external_ref": external_ref, "now": stamp})
            conversation = ConversationRecord(new_id, user_id, channel, external_ref, None, None, None, now, now, None)
        message_id = raw.execute(_INSERT_MESSAGE, {
            "conversation_id": conversation.id, "role": "user", "content": content, "meta": orjson.dumps(meta).decode(),
            "dedup_key": dedup_key, "status": "pending", "reply_to": None, "attempts": attempts, "now": stamp,
        }).fetchone()[0]
        message = MessageRecord(message_id, conversation.id, "user", self._codec.decode(content), meta, dedup_key,
                                "pending", None, None, None, attempts, now)
        return Accepted(message, conversation, created=True)

    def complete(
        self, raw: sqlite3.Connection, /, user_message_id: int, rows: Sequence[Mapping[str, Any]], now: datetime,
    ) -> list[MessageRecord] | None:
        closed = raw.execute(_CLOSE_TURN, {"p_id": user_message_id}).fetchone()
        if closed is None:
            return None  # unknown, or not pending: the general path says which
        conversation_id = closed[0]
        stamp = _stamp(now)
        stored = []
        for item in rows:
            meta = item["meta"]
            message_id = raw.execute(_INSERT_MESSAGE, {
                "conversation_id": conversation_id, "role": item["role"], "content": item["content"],
                "meta": orjson.dumps(meta).decode(), "dedup_key": None, "status": None, "reply_to": user_message_id,
                "attempts": 0, "now": stamp,
            }).fetchone()[0]
            stored.append(MessageRecord(message_id, conversation_id, item["role"], self._codec.decode(item["content"]),
                                        meta, None, None, user_message_id, None, None, 0, now))
        raw.execute(_TOUCH_DONE, {"p_id": conversation_id, "now": stamp, "p_turn": user_message_id})
        return stored

    def _conversation(self, row: Sequence[Any]) -> ConversationRecord:
        summary = row[5]
        return ConversationRecord(
            row[0], row[1], row[2], row[3], row[4], None if summary is None else self._codec.decode(summary), row[6],
            _read_stamp(row[7]), _read_stamp(row[8]), row[9],
        )
