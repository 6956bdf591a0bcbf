"""A throwaway PostgreSQL server for the test session, and a fresh database for each test.

pytest-postgresql cannot be used here: PostgreSQL refuses to run as root, and CI runs as root.
So this plugin runs ``initdb``/``pg_ctl`` itself - as the ``postgres`` system user (made by the
Debian package) when the tests run as root - in a temporary directory, on 127.0.0.1 and a free
port, with durability switched off (``fsync``, ``full_page_writes``) because the data is thrown
away. The server is stopped and its directory removed at the end, whatever happened.

Fixtures:

* ``postgres_server`` (session): the running server; fails - never skips - without binaries.
* ``postgres_url``: ``postgresql+asyncpg://postgres@127.0.0.1:PORT/t_<uuid>``, a new database.
* ``database_url``: parametrized ``sqlite`` / ``postgresql``, for tests that run on both.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

MISSING = "PostgreSQL server binaries not found: run `make test`, which installs the postgresql package"
SYSTEM_USER = "postgres"
T = TypeVar("T")


@dataclass(frozen=True)
class PostgresServer:
    bin_dir: Path
    data_dir: Path
    host: str
    port: int
    user: str = "postgres"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self) -> str:
        """Create an empty database and return its name."""
        name = f"t_{uuid.uuid4().hex}"
        run_async(self._admin(f'CREATE DATABASE "{name}"'))
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever still uses it."""
        run_async(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(host=self.host, port=self.port, user=self.user, database="postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a private loop in a private thread.

    Fixtures here are synchronous, and the test's own event loop (pytest-asyncio's) must not
    be touched from them: a thread of our own keeps the two apart.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``initdb`` and ``pg_ctl``."""
    candidates = []
    for path in Path("/usr/lib/postgresql").glob("*/bin"):
        version = path.parent.name
        if re.fullmatch(r"\d+(\.\d+)?", version) and (path / "initdb").exists() and (path / "pg_ctl").exists():
            candidates.append((tuple(int(part) for part in version.split(".")), path))
    if candidates:
        return max(candidates)[1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", SYSTEM_USER, "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], log: Path | None = None) -> None:
    done = subprocess.run(_as_server_user(command), capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        detail = done.stdout + done.stderr
        if log is not None and log.exists():
            detail += "\n--- server log ---\n" + log.read_text(errors="replace")[-4000:]
        pytest.fail(f"{' '.join(command[:2])} failed ({done.returncode}):\n{detail}", pytrace=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.fail(MISSING, pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="hearth-pg-"))
    data, sockets, log = root / "data", root / "sockets", root / "server.log"
    sockets.mkdir()
    if os.geteuid() == 0:
        # PostgreSQL will not run as root: the server user must own (and reach) its directory.
        root.chmod(0o755)
        for path in (root, sockets):
            shutil.chown(path, SYSTEM_USER, SYSTEM_USER)
    started = False
    try:
        _run([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync",
              "-E", "UTF8", "--locale=C"])
        port = free_port()
        options = (f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c full_page_writes=off "
                   "-c synchronous_commit=off -c max_connections=200")
        started = True  # pg_ctl may have started the server even if it then reports a failure
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"],
             log=log)
        yield PostgresServer(bin_dir=bin_dir, data_dir=data, host="127.0.0.1", port=port)
    finally:
        if started:
            subprocess.run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                           capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'hearth.db'}"
    return str(request.getfixturevalue("postgres_url"))
