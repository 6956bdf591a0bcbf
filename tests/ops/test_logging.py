"""Logging as ``hearth serve`` sets it up: HTTP clients' request lines (whose URLs can hold a bot token) are
not written at level info, hearth's own lines are, and a secret in a line is masked."""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog

from hearth.ops import logging as hearth_logging
from hearth.ops.audit import AuditLog
from hearth.types import Actor, Event

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"


@pytest.fixture
def configured() -> Iterator[None]:
    """``configure`` changes the process's logging: put it back for the rest of the suite."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in hearth_logging.QUIET_LOGGERS}
    yield
    root.handlers[:], root.level = handlers, level
    for name, was in quiet.items():
        logging.getLogger(name).setLevel(was)
    audit = logging.getLogger(hearth_logging.AUDIT_LOGGER)
    for handler in audit.handlers:
        handler.close()
    audit.handlers.clear()
    audit.setLevel(logging.NOTSET)
    audit.propagate = True
    structlog.reset_defaults()


async def test_httpx_request_lines_are_not_logged_at_info(configured: None, capsys: pytest.CaptureFixture[str]) -> None:
    hearth_logging.configure("info", "json")
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True}))
    async with httpx.AsyncClient(transport=transport) as client:
        answer = await client.post(f"https://api.telegram.org/bot{TOKEN}/sendMessage", json={"text": "hi"})
    assert answer.status_code == 200
    logging.getLogger("hearth.channels.telegram").info("sent through %s", f"/bot{TOKEN}/sendMessage")
    logged = capsys.readouterr().err
    assert "HTTP Request" not in logged and "api.telegram.org" not in logged
    assert "sent through /bot[redacted]/sendMessage" in logged  # hearth's own line, with the token masked
    assert TOKEN not in logged and "AAHdqTcv" not in logged


def test_an_httpx_warning_still_gets_through(configured: None, capsys: pytest.CaptureFixture[str]) -> None:
    hearth_logging.configure("info", "console")
    logging.getLogger("httpx").warning("connection pool is full")
    logging.getLogger("httpcore").info("connect_tcp.started host='api.telegram.org'")
    logged = capsys.readouterr().err
    assert "connection pool is full" in logged and "connect_tcp" not in logged


def test_scrub_masks_keys_bearer_tokens_and_bot_tokens() -> None:
    key = "hth_abcdefABCDEF_" + "x" * 32
    text = f"key {key}, Authorization: Bearer s3cr3t to https://api.telegram.org/bot{TOKEN}/getMe"
    assert hearth_logging.scrub(text) == ("key hth_[redacted], Authorization: Bearer [redacted] to "
                                         "https://api.telegram.org/bot[redacted]/getMe")
    assert hearth_logging.scrub("2026-04-03T12:00:00+00:00 message 1234567 of 12345678") == (
        "2026-04-03T12:00:00+00:00 message 1234567 of 12345678")


def test_the_audit_trail_is_a_file_whatever_the_console_shows(configured: None, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    trail = tmp_path / "data" / "audit.log"
    admin = Actor(7, "ann", frozenset({"admin"}), channel="cli")
    hearth_logging.configure("warning", "console", trail)  # as a CLI command sets it up
    AuditLog().on_event(Event("identity.paired", admin, {"channel": "telegram", "user": "carol",
                                                         "token": "s3cret-value"}))
    AuditLog().on_event(Event("turn.completed", admin, {}))  # not audit material
    assert capsys.readouterr().err == ""  # the console of a CLI command stays quiet
    [line] = trail.read_text(encoding="utf-8").splitlines()
    entry = json.loads(line)
    assert (entry["event"], entry["actor"], entry["user"], entry["token"]) == ("identity.paired", "ann", "carol",
                                                                             "[redacted]")
    assert stat.S_IMODE(trail.stat().st_mode) == 0o600

    hearth_logging.configure("info", "json", trail)  # as hearth serve sets it up: the console shows it too
    AuditLog().on_event(Event("admin.user_created", admin, {"user": "dave", "role": "user"}))
    assert '"admin.user_created"' in capsys.readouterr().err
    assert [json.loads(x)["event"] for x in trail.read_text(encoding="utf-8").splitlines()] == [
        "identity.paired", "admin.user_created"]


def test_an_audit_log_that_cannot_be_written_sends_entries_to_the_console(configured: None, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data").write_text("a file where the data directory should be")
    hearth_logging.configure("warning", "console", tmp_path / "data" / "audit.log")
    AuditLog().on_event(Event("identity.paired", Actor(7, "ann", frozenset({"admin"}), channel="cli"),
                              {"channel": "telegram", "user": "carol"}))
    logged = capsys.readouterr().err
    assert "cannot be written" in logged and "identity.paired" in logged
