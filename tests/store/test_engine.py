"""The engine's promises: SQLite settings, write transactions that take the lock up front, errors mapped."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from hearth.errors import StorageError
from hearth.store import Database, UserRepository, upgrade
from tests.support.postgres import PostgresServer


def _pragmas(conn: Connection) -> dict[str, object]:
    names = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
    return {name: conn.execute(text(f"PRAGMA {name}")).scalar() for name in names}


async def test_sqlite_connections_are_configured(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'new' / 'dir' / 'hearth.db'}")
    try:
        assert db.dialect == "sqlite"
        assert await db.read(_pragmas) == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1,
                                           "busy_timeout": 30000}
        assert await db.write(_pragmas) == await db.read(_pragmas)
        assert (tmp_path / "new" / "dir" / "hearth.db").exists()
    finally:
        await db.aclose()


async def test_sqlite_write_takes_the_write_lock_at_begin_and_reads_take_none(tmp_path: Path) -> None:
    path = tmp_path / "hearth.db"
    db = Database(f"sqlite:///{path}")
    await db.write(lambda conn: conn.execute(text("CREATE TABLE t (x INTEGER)")))
    other = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
    try:
        def probe(conn: Connection) -> str:
            # Inside write(), before this transaction has written anything, nobody else may write...
            try:
                other.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                return str(exc)
            other.execute("ROLLBACK")
            return "not locked"

        assert await db.write(probe) == "database is locked"

        def read_probe(conn: Connection) -> str:
            # ... while inside read() another connection can take the write lock at once.
            conn.execute(text("SELECT count(*) FROM t")).scalar()
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO t VALUES (1)")
            other.execute("COMMIT")
            return "written"

        assert await db.read(read_probe) == "written"
        assert await db.read(lambda conn: conn.execute(text("SELECT count(*) FROM t")).scalar()) == 1
    finally:
        other.close()
        await db.aclose()


async def test_sqlite_writers_wait_for_each_other_instead_of_failing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hearth.db'}"
    first, second = Database(url), Database(url)  # two pools: as good as two processes
    try:
        await first.write(lambda conn: conn.execute(text("CREATE TABLE t (x INTEGER)")))

        def add(conn: Connection, value: int) -> None:
            conn.execute(text("SELECT count(*) FROM t")).scalar()
            conn.execute(text("INSERT INTO t VALUES (:x)"), {"x": value})

        await asyncio.gather(*(db.write(add, i) for i in range(25) for db in (first, second)))
        assert await first.read(lambda conn: conn.execute(text("SELECT count(*) FROM t")).scalar()) == 50
    finally:
        await first.aclose()
        await second.aclose()


async def test_write_rolls_back_when_the_function_raises(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.write(lambda conn: conn.execute(text("CREATE TABLE t (x INTEGER)")))

        def insert_then_fail(conn: Connection) -> None:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            raise ValueError("changed my mind")

        with pytest.raises(ValueError, match="changed my mind"):
            await db.write(insert_then_fail)
        assert await db.read(lambda conn: conn.execute(text("SELECT count(*) FROM t")).scalar()) == 0
    finally:
        await db.aclose()


async def test_ping_and_close(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.ping()
    finally:
        await db.aclose()
    with pytest.raises(StorageError, match="closed"):
        await db.ping()
    await db.aclose()  # twice is fine


async def test_storage_error_when_the_sqlite_database_is_gone(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'data' / 'hearth.db'}")
    await upgrade(db)
    repo = UserRepository(db)
    await repo.create_user("alice")
    await db.aclose()
    shutil.rmtree(tmp_path / "data")
    reopened = Database(f"sqlite:///{tmp_path / 'data' / 'hearth.db'}")
    (tmp_path / "data").rmdir()  # the directory is gone again: nothing can be opened
    try:
        with pytest.raises(StorageError) as caught:
            await UserRepository(reopened).get_user_by_name("alice")
        assert "unable to open database file" in str(caught.value)
        with pytest.raises(StorageError):
            await reopened.ping()
    finally:
        await reopened.aclose()
    with pytest.raises(StorageError, match="closed"):
        await repo.count_users()


async def test_storage_error_when_the_postgresql_database_is_gone(postgres_server: PostgresServer) -> None:
    name = postgres_server.create_database()
    db = Database(postgres_server.url(name))
    try:
        await upgrade(db)
        repo = UserRepository(db)
        await repo.create_user("alice")
        postgres_server.drop_database(name)
        with pytest.raises(StorageError) as caught:
            await repo.get_user_by_name("alice")
        assert caught.value.code == "storage_error"
        with pytest.raises(StorageError):
            await repo.create_user("bob")
    finally:
        await db.aclose()


async def test_storage_error_when_postgresql_is_unreachable(postgres_server: PostgresServer) -> None:
    from tests.support.postgres import free_port

    db = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing")
    try:
        with pytest.raises(StorageError):
            await db.ping()
    finally:
        await db.aclose()


async def test_errors_never_carry_parameters(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'hearth.db'}")
    try:
        with pytest.raises(StorageError) as caught:
            await db.write(lambda conn: conn.execute(text("INSERT INTO nowhere VALUES (:x)"), {"x": "s3cret"}))
        assert "s3cret" not in str(caught.value)
        assert "no such table" in str(caught.value)
    finally:
        await db.aclose()


async def test_inline_writes_wait_in_the_thread_when_another_writer_holds_the_lock(tmp_path: Path) -> None:
    """The event loop never waits for SQLite's write lock: a busy lock sends the write to the writer thread."""
    import asyncio
    import sqlite3

    from hearth.store import ConversationRepository, PlainTextCodec

    path = tmp_path / "hearth.db"
    db = Database(f"sqlite:///{path}")
    await upgrade(db)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        user = await UserRepository(db).create_user("alice")
        repo = ConversationRepository(db, PlainTextCodec())
        other.execute("BEGIN IMMEDIATE")  # another process's writer
        accepting = asyncio.create_task(repo.accept_message(
            conversation_id=None, user_id=user.id, channel="t", external_ref=None, dedup_key="k", text="hi"))
        ticks = 0
        while not accepting.done() and ticks < 20:  # the loop keeps running meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not accepting.done()
        other.execute("COMMIT")
        accepted = await asyncio.wait_for(accepting, 5)
        assert accepted.created and accepted.message.content == "hi"
        # and the inline path works again afterwards
        again = await repo.accept_message(conversation_id=None, user_id=user.id, channel="t", external_ref=None,
                                          dedup_key="k2", text="again")
        assert again.created
    finally:
        other.close()
        await db.aclose()


async def test_inline_writes_are_checkpointed_off_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from hearth.store import ConversationRepository, PlainTextCodec
    from hearth.store import engine as engine_module

    monkeypatch.setattr(engine_module, "CHECKPOINT_EVERY", 5)
    db = Database(f"sqlite:///{tmp_path / 'hearth.db'}")
    checkpoints: list[str] = []
    original = db._checkpoint

    def counting() -> None:
        import threading

        checkpoints.append(threading.current_thread().name)
        original()

    monkeypatch.setattr(db, "_checkpoint", counting)
    await upgrade(db)
    try:
        user = await UserRepository(db).create_user("alice")
        repo = ConversationRepository(db, PlainTextCodec())
        for i in range(12):
            await repo.accept_message(conversation_id=None, user_id=user.id, channel="t", external_ref=None,
                                      dedup_key=f"k{i}", text="x")
        await asyncio.sleep(0.2)
        assert len(checkpoints) == 2
        assert all(name.startswith("hearth-db-write") for name in checkpoints)
    finally:
        await db.aclose()
