"""Bringing a database to the schema this code expects, safely from several processes at once.

Every replica calls ``upgrade`` at start-up, so two (or ten) may race on a fresh database. The
migrating connection first takes a lock that the others wait on, and only then reads the current
revision: the winner migrates, the rest find the database at head and do nothing.

* PostgreSQL: ``pg_advisory_xact_lock`` on the migrating connection. It is the transaction-scoped
  form of ``pg_advisory_lock``, held for exactly as long as the migration transaction and
  released by COMMIT or ROLLBACK, so a failed migration cannot leave it behind on a pooled
  connection. DDL is transactional there: a migration applies completely or not at all.
* SQLite: an ``fcntl.flock`` on ``<database>.migrate.lock``, taken in a worker thread (it
  blocks), then the migration runs in one ``BEGIN IMMEDIATE`` write transaction (SQLite's DDL
  is transactional too). The file lock keeps a long migration from running other processes out of
  ``busy_timeout``; the kernel drops it if the process dies.

Alembic runs inside ``Database.write`` (which is ``AsyncConnection.run_sync`` on PostgreSQL),
with the connection handed over in ``config.attributes["connection"]`` (see
``migrations/env.py``); there is no ``alembic.ini``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from hearth.errors import StorageError
from hearth.store.engine import Database, sqlite_path

__all__ = ["alembic_config", "current_revision", "head_revision", "upgrade"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Any fixed 64-bit number; this one is b"hearthdb" read as an integer.
ADVISORY_LOCK_KEY = int.from_bytes(b"hearthdb", "big") & 0x7FFF_FFFF_FFFF_FFFF


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for hearth's migrations, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The revision this code's schema corresponds to."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "hearth ships at least one migration"
    return head


async def current_revision(db: Database) -> str | None:
    """The database's revision, or ``None`` if it has never been migrated."""
    return await db.read(_current_revision)


def _current_revision(connection: Connection, /) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(db: Database) -> None:
    """Apply every migration the database lacks; a no-op at head. Raises ``StorageError``."""
    if db.dialect == "postgresql":
        await db.write(_upgrade_postgresql)
        return
    path = sqlite_path(db.url)
    try:
        async with _file_lock(path.with_name(path.name + ".migrate.lock") if path else None):
            await db.write(_upgrade)
    except OSError as exc:
        raise StorageError(f"cannot lock the database for migration: {exc}") from exc


def _upgrade_postgresql(connection: Connection, /) -> None:
    connection.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
    _upgrade(connection)


def _upgrade(connection: Connection, /) -> None:
    command.upgrade(alembic_config(connection), "head")


@contextlib.asynccontextmanager
async def _file_lock(path: Path | None) -> AsyncIterator[None]:
    """An exclusive ``flock`` on ``path`` (nothing for an in-memory database)."""
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    acquire = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX))
    try:
        await asyncio.shield(acquire)
    except BaseException:
        # Cancelled while the thread still waits: closing the file once it has the lock
        # releases it again; closing it now could hand the descriptor number to someone else.
        acquire.add_done_callback(lambda _: os.close(fd))
        raise
    try:
        yield
    finally:
        os.close(fd)  # releases the lock
