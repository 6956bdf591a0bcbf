"""Migrations: to head, the same schema as ``schema.metadata``, and safe when replicas race."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from hearth.store import Database, current_revision, head_revision, upgrade
from hearth.store.schema import metadata


def _schema_diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
    return list(compare_metadata(context, metadata))


def _index_names(conn: Connection) -> set[str]:
    inspector = inspect(conn)
    return {str(index["name"]) for table in metadata.tables for index in inspector.get_indexes(table)}


async def test_upgrade_to_head_matches_the_metadata(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert await current_revision(db) is None
        await upgrade(db)
        assert await current_revision(db) == head_revision() == "0003"
        assert await db.read(_schema_diff) == []
        assert {"ix_messages_status", "ix_messages_conversation_id_id"} <= await db.read(_index_names)
        await upgrade(db)  # at head: nothing to do
        assert await current_revision(db) == head_revision()
    finally:
        await db.aclose()


UPGRADE = """
import asyncio, sys
from hearth.store import Database, upgrade

async def main():
    db = Database(sys.argv[1])
    try:
        await upgrade(db)
    finally:
        await db.aclose()

asyncio.run(main())
"""


async def test_four_processes_upgrading_at_once(database_url: str) -> None:
    processes = [
        subprocess.Popen([sys.executable, "-c", UPGRADE, database_url], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=60)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0], outputs
    db = Database(database_url)
    try:
        assert await current_revision(db) == head_revision()
        assert await db.read(_schema_diff) == []
    finally:
        await db.aclose()


def test_columns_are_in_record_field_order() -> None:
    # The repositories build records positionally from rows, for speed.
    from dataclasses import fields

    from hearth.store import records, schema

    pairs = [(schema.users, records.UserRecord), (schema.api_keys, records.ApiKeyRecord),
             (schema.channel_identities, records.IdentityRecord),
             (schema.conversations, records.ConversationRecord), (schema.messages, records.MessageRecord)]
    for table, record in pairs:
        assert [column.name for column in table.c] == [field.name for field in fields(record)], table.name


async def test_0002_fills_last_turn_for_existing_conversations(database_url: str) -> None:
    """A database from before 0002, with a finished and a pending turn, keeps working after the upgrade."""
    from alembic import command
    from sqlalchemy import text

    from hearth.store import ConversationRepository, PlainTextCodec
    from hearth.store.migrate import alembic_config

    db = Database(database_url)
    try:
        await db.write(lambda conn: command.upgrade(alembic_config(conn), "0001"))
        await db.write(lambda conn: conn.execute(text(
            "INSERT INTO users (id, name, role, disabled, created_at) VALUES (1, 'ada', 'user', false, '2026-01-01')")))
        await db.write(lambda conn: conn.execute(text(
            "INSERT INTO conversations (id, user_id, channel, created_at, updated_at) "
            "VALUES ('c1', 1, 'test', '2026-01-01', '2026-01-01')")))
        for mid, role, status, reply_to in ((10, "user", "done", None), (11, "assistant", None, 10),
                                            (12, "user", "pending", None)):
            await db.write(lambda conn, mid=mid, role=role, status=status, reply_to=reply_to: conn.execute(text(
                "INSERT INTO messages (id, conversation_id, role, content, meta, status, reply_to, attempts, "
                "created_at) VALUES (:id, 'c1', :role, :content, '{}', :status, :reply_to, 0, '2026-01-01')"),
                {"id": mid, "role": role, "content": b"x", "status": status, "reply_to": reply_to}))
        await upgrade(db)
        assert await current_revision(db) == head_revision()
        conversation = await ConversationRepository(db, PlainTextCodec()).get_conversation("c1")
        assert conversation is not None and conversation.last_turn == 10
    finally:
        await db.aclose()
