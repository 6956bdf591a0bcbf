"""Logging as ``hearth serve`` sets it up: HTTP clients' request lines (whose URLs can hold a bot token) are
not written at level info, hearth's own lines are, and a secret in a line is masked."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
import structlog

from hearth.ops import logging as hearth_logging

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
