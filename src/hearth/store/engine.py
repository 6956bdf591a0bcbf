"""Opening the database, and transactions that behave alike on SQLite and PostgreSQL.

Repositories never open connections: they hand a plain function of a SQLAlchemy ``Connection``
to ``Database.read`` or ``Database.write``, which runs it in one transaction and returns its
result. The function is synchronous on purpose, because the two databases are reached in
different ways and this is the one shape both run fast:

* PostgreSQL goes through asyncpg, and the function runs under ``AsyncConnection.run_sync``
  (SQLAlchemy's greenlet bridge) on the event loop, without threads.
* SQLite is a C library that blocks. The async driver aiosqlite moves every cursor operation
  to a thread and back - about 17 thread round trips for one ``accept_message``, which measured
  2 ms of CPU per call here, too much for the path of every message. Instead the whole
  transaction runs in one worker thread on a plain ``sqlite3`` connection (SQLAlchemy's
  ``pysqlite`` dialect): one round trip per transaction, about a quarter of the cost. The event
  loop itself never waits on SQLite. ``sqlite+aiosqlite://`` URLs (a common spelling in
  async SQLAlchemy set-ups) are accepted and opened this way.

Transactions, and why they are split in two:

* SQLite allows one writer at a time. A transaction that starts as a reader (plain ``BEGIN``)
  and later writes must upgrade its lock, and if another connection wrote in the meantime the
  upgrade fails at once with "database is locked" - ``busy_timeout`` cannot help. So ``write``
  starts with ``BEGIN IMMEDIATE``: it takes the write lock up front, and another writer (a CLI
  command, another process) waits on ``busy_timeout`` instead of failing. This process's own
  writers queue in a single writer thread, first come first served, rather than in SQLite's
  sleep-and-retry busy handler. pysqlite is told to issue no ``BEGIN`` of its own
  (``isolation_level=None``) and a ``begin`` event emits ours - the recipe in SQLAlchemy's SQLite
  documentation - choosing ``IMMEDIATE`` by the ``hearth_write`` execution option.
* ``read`` takes no lock and emits no ``BEGIN``: each statement sees the latest committed data
  (WAL lets readers run beside the writer), in reader threads of their own. On PostgreSQL reads
  run in autocommit for the same meaning - READ COMMITTED - without ``BEGIN``/``COMMIT`` round
  trips.

Driver and SQLAlchemy exceptions stop here: they leave ``read``/``write`` as ``StorageError``, or
``ConstraintViolation`` for integrity errors, which repositories turn into ``InvalidRequest``
where a duplicate is the caller's mistake. Messages carry the driver's message, never SQL
parameters, which may hold message text or key hashes. A function cancelled while it runs in
the SQLite thread still finishes there (committing, for a write): callers dedup by key anyway.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from hearth.errors import ConfigError, StorageError

_log = logging.getLogger("hearth.store")
# Inline writes (see Database.write_inline) leave checkpoints to the writer thread, this often.
CHECKPOINT_EVERY = 500

__all__ = ["ConstraintViolation", "Database", "create_engine", "sqlite_path"]

P = ParamSpec("P")
T = TypeVar("T")

_WRITE_OPTION = "hearth_write"
SQLITE_READ_THREADS = 2

SQLITE_PRAGMAS = (
    "busy_timeout=30000",  # first: switching to WAL below may itself have to wait for a lock
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "foreign_keys=ON",
)


class ConstraintViolation(StorageError):
    """A statement broke a unique, foreign key or check constraint.

    Repositories catch it where it means "already exists" or "no such parent"; one that escapes
    is a storage error like any other.
    """


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


_COMMON: dict[str, Any] = {
    "json_serializer": _json_dumps,
    "json_deserializer": orjson.loads,
    # Parameters can hold message text and key hashes: keep them out of errors and logs.
    "hide_parameters": True,
}


def sqlite_path(url: str | URL) -> Path | None:
    """The database file of a SQLite URL; ``None`` for an in-memory database."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def create_engine(url: str) -> Engine | AsyncEngine:
    """The engine hearth uses for ``url``: async (asyncpg) for PostgreSQL, sync (sqlite3) for SQLite.

    See the module docstring for why SQLite gets a synchronous engine.
    """
    sa_url = make_url(url)
    backend = sa_url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(sa_url)
    if backend == "postgresql":
        return create_async_engine(
            sa_url.set(drivername="postgresql+asyncpg"),
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            pool_timeout=30,
            pool_recycle=1800,
            connect_args={"timeout": 10},
            **_COMMON,
        )
    raise ConfigError("HEARTH_DATABASE_URL", f"unsupported database {backend!r}: use SQLite or PostgreSQL")


def _sqlite_engine(sa_url: URL) -> Engine:
    path = sqlite_path(sa_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    # An in-memory database lives in one connection, which every thread must then share.
    pool: dict[str, Any] = (
        {"pool_size": SQLITE_READ_THREADS + 1, "max_overflow": 2} if path else {"poolclass": sa.StaticPool}
    )
    engine = sa.create_engine(
        sa_url.set(drivername="sqlite+pysqlite"),
        # isolation_level=None: sqlite3 emits no BEGIN of its own; _begin below does.
        # check_same_thread=False: pooled connections move between the worker threads.
        connect_args={"isolation_level": None, "timeout": 30.0, "check_same_thread": False},
        **pool,
        **_COMMON,
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for pragma in SQLITE_PRAGMAS:
                cursor.execute(f"PRAGMA {pragma}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Reads carry no BEGIN at all: each statement is its own snapshot.
        if conn.get_execution_options().get(_WRITE_OPTION):
            # straight to sqlite3: this runs for every write, and needs no result handling
            conn.connection.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]

    return engine


class Database:
    """The database of one hearth process: shared by every repository, ``aclose()`` at shutdown.

    ``read``/``write`` run ``fn(connection, *args, **kwargs)`` in one transaction and return
    what it returns; ``write`` commits if it returns and rolls back if it raises.
    """

    def __init__(self, url: str) -> None:
        engine = create_engine(url)
        self.engine = engine
        self.url: URL = engine.url
        self.dialect: str = engine.dialect.name
        self._closed = False
        if isinstance(engine, AsyncEngine):
            self._async_write = engine.execution_options(**{_WRITE_OPTION: True})
            self._async_read = engine.execution_options(isolation_level="AUTOCOMMIT")
        else:
            self._sync_write = engine.execution_options(**{_WRITE_OPTION: True})
            # the writer thread keeps one connection: no pool checkout per transaction
            self._write_conn: Connection | None = None
            # and the event loop one of its own, for write_inline; file databases only
            self._inline_conn: Connection | None = None
            self._inline_ok = sqlite_path(self.url) is not None
            self._since_checkpoint = 0
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="hearth-db-write")
            # The one connection of an in-memory database must not be used by two threads at once.
            self._readers = (
                ThreadPoolExecutor(SQLITE_READ_THREADS, thread_name_prefix="hearth-db-read")
                if sqlite_path(self.url) else self._writer
            )

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    async def read(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn`` on a connection whose statements each see the latest committed data."""

        def call(conn: Connection) -> T:
            return fn(conn, *args, **kwargs)

        self._check_open()
        with _storage_errors():
            if isinstance(self.engine, AsyncEngine):
                async with self._async_read.connect() as conn:
                    return await conn.run_sync(call)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._readers, _run_read, self.engine, call)

    async def write(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn`` in one transaction that holds the write lock from its start."""

        def call(conn: Connection) -> T:
            return fn(conn, *args, **kwargs)

        self._check_open()
        with _storage_errors():
            if isinstance(self.engine, AsyncEngine):
                async with self._async_write.begin() as conn:
                    return await conn.run_sync(call)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._writer, self._run_write, call)

    async def write_inline(
        self, fn: Callable[Concatenate[Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Like ``write``, for the short transactions on the path of every message.

        On SQLite the transaction runs right here on the event loop when the write lock is free:
        a thread hand-off (future, wake-up, GIL switch) costs about as much CPU as the transaction
        itself. The connection used here never waits for a lock (``busy_timeout=0``): when another
        writer holds it, the call goes to the writer thread like ``write``. It never checkpoints
        either: every ``CHECKPOINT_EVERY`` commits a passive checkpoint runs on the writer thread,
        so the event loop never does checkpoint I/O. Only for statements that touch a few rows.
        """
        if isinstance(self.engine, AsyncEngine) or not self._inline_ok:
            return await self.write(fn, *args, **kwargs)
        conn = self._inline_connection()

        def run(raw: sqlite3.Connection) -> T:
            with conn.begin():  # emits no BEGIN of its own (no write option): commits ours
                return fn(conn, *args, **kwargs)

        return await self._inline(run, lambda: self.write(fn, *args, **kwargs))

    async def write_sqlite(
        self, fn: Callable[Concatenate[sqlite3.Connection, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``write_inline`` for a function of the sqlite3 connection itself (``store.fastpath``).

        SQLite only. The function runs inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` if it
        raises), on the event loop when the lock is free, else in the writer thread.
        """
        if isinstance(self.engine, AsyncEngine):
            raise TypeError("write_sqlite is for SQLite databases")

        def in_thread(conn: Connection) -> T:
            raw = conn.connection.driver_connection
            assert isinstance(raw, sqlite3.Connection)
            return fn(raw, *args, **kwargs)

        if not self._inline_ok:
            return await self.write(in_thread)
        self._inline_connection()

        def run(raw: sqlite3.Connection) -> T:
            try:
                result = fn(raw, *args, **kwargs)
            except BaseException:
                if raw.in_transaction:  # some errors (a full disk) have already ended it
                    raw.execute("ROLLBACK")
                raise
            raw.execute("COMMIT")
            return result

        return await self._inline(run, lambda: self.write(in_thread))

    @property
    def inline_sqlite(self) -> bool:
        """True for a SQLite file database, where ``write_inline``/``write_sqlite`` run on the loop."""
        return not isinstance(self.engine, AsyncEngine) and self._inline_ok

    def _inline_connection(self) -> Connection:
        self._check_open()
        conn = self._inline_conn
        if conn is None:
            conn = self._inline_conn = self.engine.connect()  # type: ignore[assignment]
            assert conn is not None
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute("PRAGMA busy_timeout=0")
            raw.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    async def _inline(self, run: Callable[[sqlite3.Connection], T], fallback: Callable[[], Any]) -> T:
        conn = self._inline_connection()
        raw = conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        try:
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return await fallback()  # type: ignore[no-any-return]  # another writer: wait in the thread
            self._drop_inline_conn()
            raise StorageError(_describe(exc)) from exc
        try:
            result = run(raw)
        except (IntegrityError, sqlite3.IntegrityError) as exc:
            raise ConstraintViolation(_describe(exc)) from exc
        except (SQLAlchemyError, OSError, sqlite3.Error) as exc:
            self._drop_inline_conn()
            raise StorageError(_describe(exc)) from exc
        self._since_checkpoint += 1
        if self._since_checkpoint >= CHECKPOINT_EVERY:
            self._since_checkpoint = 0
            asyncio.get_running_loop().run_in_executor(self._writer, self._checkpoint).add_done_callback(
                _log_checkpoint_failure)
        return result

    def _checkpoint(self) -> None:
        engine = self.engine
        assert isinstance(engine, Engine), "SQLite only"
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def _drop_inline_conn(self) -> None:
        if self._inline_conn is not None:
            try:
                if self._inline_conn.connection.driver_connection is not None:
                    self._inline_conn.connection.driver_connection.rollback()
            except sqlite3.Error:
                pass
            self._inline_conn.invalidate()
            self._inline_conn = None

    def _run_write(self, call: Callable[[Connection], T]) -> T:
        """In the writer thread: one transaction on its long-lived connection."""
        conn = self._write_conn
        if conn is None:
            conn = self._write_conn = self._sync_write.connect()
        try:
            with conn.begin():
                return call(conn)
        except BaseException:
            if conn.invalidated or conn.closed:  # a broken connection is replaced at the next write
                self._drop_write_conn()
            raise

    def _drop_write_conn(self) -> None:
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the database has been closed")

    async def ping(self) -> None:
        """Raise ``StorageError`` unless the database answers a query."""
        await self.read(_select_one)

    async def aclose(self) -> None:
        """Finish running transactions and close every pooled connection."""
        if self._closed:
            return
        self._closed = True
        if isinstance(self.engine, AsyncEngine):
            await self.engine.dispose()
            return
        engine = self.engine

        if self._inline_conn is not None:
            self._inline_conn.close()
            self._inline_conn = None

        def shut_down() -> None:
            self._writer.submit(self._drop_write_conn).result()
            try:
                self._checkpoint()  # leave a short WAL behind
            except (SQLAlchemyError, OSError) as exc:
                _log.warning("final WAL checkpoint failed: %s", _describe(exc))
            self._writer.shutdown(wait=True)
            self._readers.shutdown(wait=True)
            engine.dispose()

        await asyncio.to_thread(shut_down)


def _run_read(engine: Engine, call: Callable[[Connection], T]) -> T:
    with engine.connect() as conn:
        return call(conn)




def _log_checkpoint_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        _log.warning("WAL checkpoint failed: %s", future.exception())


def _select_one(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))


@contextmanager
def _storage_errors() -> Iterator[None]:
    """The driver's errors as hearth's: a broken constraint, or storage that failed."""
    try:
        yield
    except IntegrityError as exc:
        raise ConstraintViolation(_describe(exc)) from exc
    except (SQLAlchemyError, OSError) as exc:
        raise StorageError(_describe(exc)) from exc


def _describe(exc: BaseException) -> str:
    """The driver's own message (first line), without SQLAlchemy's SQL text and parameters."""
    origin: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        origin = exc.orig
    lines = str(origin).strip().splitlines()
    detail = f": {lines[0]}" if lines else ""
    return f"database error: {type(origin).__name__}{detail}"
