"""A migrated database on each backend (``database_url`` runs every test on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from hearth.store import ConversationRepository, Database, PlainTextCodec, UserRecord, UserRepository, upgrade


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await upgrade(database)
    yield database
    await database.aclose()


@pytest.fixture
def users(db: Database) -> UserRepository:
    return UserRepository(db)


@pytest.fixture
def conversations(db: Database) -> ConversationRepository:
    return ConversationRepository(db, PlainTextCodec())


@pytest.fixture
async def alice(users: UserRepository) -> UserRecord:
    return await users.create_user("alice")
