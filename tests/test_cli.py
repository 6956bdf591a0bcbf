"""The ``hearth`` command, run as users run it: a separate process, real environment, real database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.testing.modelsim import ModelSimulator
from tests.support.process import Server


def hearth(*args: str, env: dict[str, str], stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hearth.cli", *args], env={**os.environ, **env}, input=stdin,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"HEARTH_DATA_DIR": str(tmp_path / "data"), "AI_MODEL_ENDPOINT": "http://127.0.0.1:9",
            "AI_MODEL_CONNECT_TIMEOUT": "1", "COLUMNS": "200", "HEARTH_LOG_LEVEL": "warning"}


def test_a_bad_setting_stops_start_up_with_one_line(env: dict[str, str]) -> None:
    result = hearth("serve", env={**env, "HEARTH_HTTP_PORT": "eighty"})
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("hearth: configuration error: HEARTH_HTTP_PORT:")
    assert not (Path(env["HEARTH_DATA_DIR"]) / "hearth.db").exists()


def test_a_taken_port_is_reported(env: dict[str, str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = hearth("serve", env={**env, "HEARTH_HTTP_PORT": str(port), "HEARTH_WS_PORT": "0",
                                      "HEARTH_ADMIN_PORT": "0"})
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and "in use" in result.stderr


def test_users_add_prints_the_key_once_and_list_shows_them(env: dict[str, str]) -> None:
    added = hearth("users", "add", "alice", "--role", "user", env=env)
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip().splitlines()[-1]
    assert key.startswith("hth_") and len(key) == 49
    listed = hearth("users", "list", env=env)
    assert listed.returncode == 0
    # no user is made behind the operator's back: the first admin comes only from `serve` on an empty database
    assert "alice" in listed.stdout and "admin" not in listed.stdout
    assert key not in listed.stdout
    again = hearth("users", "add", "alice", env=env)
    assert again.returncode == 1 and "already" in again.stderr
    bad = hearth("users", "add", "bob", "--role", "emperor", env=env)
    assert bad.returncode == 1 and "unknown role" in bad.stderr


def test_db_upgrade(env: dict[str, str]) -> None:
    result = hearth("db", "upgrade", env=env)
    assert result.returncode == 0
    assert "database is at revision 0003" in result.stdout


def test_doctor_reports_each_part(env: dict[str, str], sim_process: str) -> None:
    healthy = hearth("doctor", env={**env, "AI_MODEL_ENDPOINT": sim_process})
    assert healthy.returncode == 0, healthy.stdout
    assert "model 'llama3.2' is available" in healthy.stdout
    assert "schema at 0003" in healthy.stdout or "schema at none" in healthy.stdout
    down = hearth("doctor", env=env)
    assert down.returncode == 1
    assert "connection refused" in down.stdout and "no endpoint is usable" in down.stdout
    broken = hearth("doctor", env={**env, "AI_MODEL_PROVIDER": "gpt"})
    assert broken.returncode == 1 and "AI_MODEL_PROVIDER" in broken.stdout


def test_chat_in_process(env: dict[str, str], sim_process: str) -> None:
    result = hearth("chat", env={**env, "AI_MODEL_ENDPOINT": sim_process}, stdin="hello there\nand again\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["You said: hello there", "You said: and again"]


def test_chat_in_process_without_a_model_says_so(env: dict[str, str]) -> None:
    result = hearth("chat", env=env, stdin="anyone?\n")
    assert result.returncode == 0
    assert "No language model is reachable" in result.stdout


async def test_chat_against_a_running_server(sim: ModelSimulator, tmp_path: Path) -> None:
    import asyncio

    server = Server(tmp_path / "data", sim.url)
    await server.start()
    try:
        env = {"HEARTH_URL": server.url, "HEARTH_API_KEY": server.key}
        result = await asyncio.to_thread(hearth, "chat", env=env, stdin="hi remote\n/quit\n")
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines() == ["You said: hi remote"]
        wrong = await asyncio.to_thread(hearth, "chat", env={**env, "HEARTH_API_KEY": "hth_nope"}, stdin="x\n")
        assert wrong.returncode == 1
        assert "authentication failed: malformed API key" in wrong.stdout
    finally:
        server.stop()


@pytest.fixture
def sim_process() -> Iterator[str]:
    """A model simulator in its own process, for commands that run in another process too."""
    process = subprocess.Popen([sys.executable, "-m", "hearth.testing.modelsim", "--port", "0", "--ttft", "0",
                                "--tokens", "0"], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    url = line.strip().rsplit(" ", 1)[-1]
    yield url
    process.terminate()
    process.wait(5)


def test_users_pair_links_a_platform_account_and_dead_letters_are_retried(env: dict[str, str]) -> None:
    import asyncio
    from datetime import timedelta

    from hearth.store import Database, PlainTextCodec, upgrade
    from hearth.store.channels import ChannelRepository

    assert hearth("users", "add", "carol", env=env).returncode == 0

    async def seed() -> tuple[str, int]:
        db = Database(f"sqlite:///{Path(env['HEARTH_DATA_DIR']) / 'hearth.db'}")
        try:
            await upgrade(db)
            store = ChannelRepository(db, PlainTextCodec())
            code = await store.pairing_code("telegram", "4242", "Ann", ttl=timedelta(hours=1))
            [item] = await store.enqueue("telegram", "4242", [{"text": "hi"}])
            await store.mark_failed(item, "Forbidden: bot was blocked by the user", retry_at=None)
            return code.code, item
        finally:
            await db.aclose()

    code, item = asyncio.run(seed())
    unknown = hearth("users", "pair", "ZZZZ9999", env=env)
    assert unknown.returncode == 1 and "no pending pairing code" in unknown.stderr
    paired = hearth("users", "pair", code.lower(), "--user", "carol", env=env)
    assert paired.returncode == 0, paired.stderr
    assert "paired telegram account Ann with user carol" in paired.stdout
    # the CLI's admin actions are in the same audit trail as the management API's
    trail = (Path(env["HEARTH_DATA_DIR"]) / "audit.log").read_text(encoding="utf-8")
    assert '"event": "identity.paired"' in trail and '"user": "carol"' in trail
    assert hearth("users", "pair", code, env=env).returncode == 1  # used

    dead = hearth("channels", "outbox", "--dead", env=env)
    assert dead.returncode == 0 and "blocked by the user" in dead.stdout
    retried = hearth("channels", "retry", str(item), env=env)
    assert retried.returncode == 0 and f"message {item} to telegram:4242 is queued again" in retried.stdout
    assert "blocked" not in hearth("channels", "outbox", "--dead", env=env).stdout
    again = hearth("channels", "retry", str(item), env=env)
    assert again.returncode == 1 and "not dead" in again.stderr


async def test_channels_telegram_set_webhook_registers_the_url_with_the_secret(env: dict[str, str]) -> None:
    import asyncio

    from hearth.testing.fake_telegram import DEFAULT_TOKEN, FakeTelegram

    async with FakeTelegram(lifetime=60) as telegram:
        settings = {**env, "TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN, "TELEGRAM_WEBHOOK_SECRET": "s3cret-value",
                    "TELEGRAM_API_BASE": telegram.api_base}
        url = "https://hearth.example.org/channels/telegram/webhook"
        done = await asyncio.to_thread(hearth, "channels", "telegram", "set-webhook", url, env=settings)
        assert done.returncode == 0, done.stderr
        assert telegram.webhook["url"] == url and telegram.webhook["secret_token"] == "s3cret-value"
        wrong = await asyncio.to_thread(hearth, "channels", "telegram", "set-webhook", "http://x/hook", env=settings)
        assert wrong.returncode == 1 and "https://" in wrong.stderr
        no_secret = await asyncio.to_thread(hearth, "serve", env={**settings, "TELEGRAM_WEBHOOK_SECRET": ""})
        assert no_secret.returncode == 2 and "TELEGRAM_WEBHOOK_SECRET" in no_secret.stderr
    assert DEFAULT_TOKEN not in done.stdout + done.stderr
