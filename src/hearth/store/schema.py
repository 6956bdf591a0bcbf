"""The tables, as SQLAlchemy Core metadata: one definition for SQLite and PostgreSQL.

This is what the repositories query and what Alembic autogenerate compares against; the
migrations in ``migrations/versions`` create it explicitly and a test keeps the two identical.
Constraint names come from a naming convention so that later migrations can address them on
both databases (SQLite's batch mode needs names).

Two column types carry rules of their own:

* ids are ``BIGINT`` on PostgreSQL and ``INTEGER`` on SQLite, where only ``INTEGER PRIMARY KEY``
  is the rowid; ``AUTOINCREMENT`` there means an id is never handed out twice, as on PostgreSQL,
  so ids stay usable as cursors (``history(after_id=...)``) even after a purge;
* ``UTCDateTime`` stores UTC and always returns an aware UTC ``datetime``. SQLite has no time
  zone type and hands back naive values; PostgreSQL returns aware ones. Callers see one kind.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MESSAGE_ROLES = ("user", "assistant", "tool")
TURN_STATUSES = ("pending", "done", "failed")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE`` that reads back aware UTC on every database.

    A naive value written to it is taken to be UTC already.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        # SQLite stores the wall-clock fields as text: they must be UTC's.
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        if value.tzinfo is not UTC:
            return value.astimezone(UTC)  # type: ignore[no-any-return]
        return value  # type: ignore[no-any-return]


Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("role", sa.String(32), nullable=False, server_default="user"),
    sa.Column("timezone", sa.String(64), nullable=True),
    sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    sa.UniqueConstraint("name"),
    sqlite_autoincrement=True,
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("prefix", sa.String(), nullable=False),
    sa.Column("secret_hash", sa.String(), nullable=False),
    sa.Column("label", sa.String(), nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("prefix"),
    sa.Index(None, "user_id"),
    sqlite_autoincrement=True,
)

channel_identities = sa.Table(
    "channel_identities",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("channel", sa.String(), nullable=False),
    sa.Column("external_id", sa.String(), nullable=False),
    sa.Column("display_name", sa.String(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    sa.UniqueConstraint("channel", "external_id"),
    sa.Index(None, "user_id"),
    sqlite_autoincrement=True,
)

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("channel", sa.String(), nullable=False),
    sa.Column("external_ref", sa.String(), nullable=True),
    sa.Column("title", sa.Text(), nullable=True),
    sa.Column("summary", sa.LargeBinary(), nullable=True),
    sa.Column("summary_upto", Id, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    sa.Column("updated_at", UTCDateTime(), nullable=False, default=utcnow),
    sa.Column("last_turn", Id, nullable=True),
    sa.UniqueConstraint("user_id", "channel", "external_ref"),
    sa.Index(None, "updated_at"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column(
        "conversation_id",
        sa.String(32),
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("content", sa.LargeBinary(), nullable=False),
    sa.Column("meta", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    sa.Column("dedup_key", sa.String(), nullable=True),
    sa.Column("status", sa.String(16), nullable=True),
    sa.Column("reply_to", Id, nullable=True),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("error_message", sa.Text(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    sa.UniqueConstraint("dedup_key"),
    sa.CheckConstraint("role IN ('user', 'assistant', 'tool')", name="role"),
    sa.CheckConstraint("status IN ('pending', 'done', 'failed')", name="status"),
    sa.Index(None, "conversation_id", "id"),
    # Only pending turns are ever looked up by status, and there are few of them at any time.
    sa.Index(
        None,
        "status",
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    ),
    sa.Index(None, "reply_to"),
    sa.Index(None, "created_at"),
    sqlite_autoincrement=True,
)

# --- skills -------------------------------------------------------------------------------------

skill_state = sa.Table(
    "skill_state",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("config", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    sa.Column("granted", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
    sa.Column("updated_at", UTCDateTime(), nullable=False, default=utcnow),
)

skill_kv = sa.Table(
    "skill_kv",
    metadata,
    sa.Column("skill", sa.String(64), primary_key=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("value", sa.JSON(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False, default=utcnow),
)

pending_actions = sa.Table(
    "pending_actions",
    metadata,
    sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("tool", sa.String(128), nullable=False),
    sa.Column("params", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    sa.Column("missing", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
    sa.Column("prompt", sa.Text(), nullable=False),
    sa.Column("token", sa.String(32), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint("kind IN ('confirm', 'clarify')", name="kind"),
)

scheduled_messages = sa.Table(
    "scheduled_messages",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("skill", sa.String(64), nullable=True),
    sa.Column("text", sa.LargeBinary(), nullable=False),
    sa.Column("due_at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    sa.Column("sent_at", UTCDateTime(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'sent', 'cancelled', 'failed')", name="status"),
    sa.Index(None, "status", "due_at"),
    sa.Index(None, "user_id"),
    sqlite_autoincrement=True,
)

files = sa.Table(
    "files",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id", ondelete="SET NULL"),
              nullable=True),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("media_type", sa.String(128), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("path", sa.String(512), nullable=False),
    sa.Column("text", sa.LargeBinary(), nullable=True),
    sa.Column("pages", sa.Integer(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    sa.CheckConstraint("status IN ('ready', 'failed')", name="status"),
    sa.Index(None, "user_id", "created_at"),
)

calendar_events = sa.Table(
    "calendar_events",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("starts_at", UTCDateTime(), nullable=False),
    sa.Column("ends_at", UTCDateTime(), nullable=False),
    sa.Column("location", sa.String(500), nullable=True),
    sa.Column("description", sa.Text(), nullable=True),
    sa.Column("uid", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    sa.Column("updated_at", UTCDateTime(), nullable=False, default=utcnow),
    sa.Column("cancelled_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("uid"),
    sa.Index(None, "user_id", "starts_at"),
)

# --- channels -----------------------------------------------------------------------------------

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("address", sa.String(255), nullable=False),
    sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id", ondelete="SET NULL"),
              nullable=True),
    sa.Column("payload", sa.LargeBinary(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("platform_id", sa.String(255), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    sa.Column("sent_at", UTCDateTime(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'sent', 'dead')", name="status"),
    sa.Index(None, "status", "next_attempt_at"),
    sa.Index(None, "channel", "address", "id"),
    sqlite_autoincrement=True,
)

channel_receipts = sa.Table(
    "channel_receipts",
    metadata,
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("external_id", sa.String(255), primary_key=True),
    sa.Column("received_at", UTCDateTime(), nullable=False, default=utcnow),
    sa.Index(None, "received_at"),
)

pairing_codes = sa.Table(
    "pairing_codes",
    metadata,
    sa.Column("code", sa.String(16), primary_key=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("external_id", sa.String(255), nullable=False),
    sa.Column("display_name", sa.String(255), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("approved_user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    sa.Column("approved_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("channel", "external_id"),
)
