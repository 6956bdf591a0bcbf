"""Logging: structlog over the standard library, one line per event, secrets scrubbed.

``console`` output is for people; ``json`` output is one JSON object per line for Filebeat, Logstash
or any log shipper. Every record goes through ``redact``: a value under a key that names a secret
(token, key, password, authorization, ...) is replaced, and anything shaped like a hearth API key is
masked wherever it appears (so is a Telegram bot token), so a secret that slips into a message still
does not reach the log. HTTP client libraries log each request's URL at INFO, and some URLs carry a secret
(Telegram's ``https://api.telegram.org/bot<TOKEN>/...``): their loggers are held at WARNING.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(token|secret|password|passwd|api_key|apikey|authorization|cookie|signature)",
                          re.IGNORECASE)
_KEY_PATTERN = re.compile(r"hth_[A-Za-z0-9]{12}_[A-Za-z0-9]{32}")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"']+")
_TELEGRAM_TOKEN = re.compile(r"(?<![0-9])[0-9]{5,}:[A-Za-z0-9_-]{30,}")  # a bot token: <bot id>:<35 characters>
MASK = "[redacted]"
QUIET_LOGGERS = ("hypercorn.access", "asyncio", "alembic", "httpx", "httpcore")


def scrub(text: str) -> str:
    text = _TELEGRAM_TOKEN.sub(MASK, _KEY_PATTERN.sub("hth_" + MASK, text))
    return _BEARER.sub(r"\1" + MASK, text)


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key != "event" and _SECRET_KEYS.search(key):
            event[key] = MASK
        elif isinstance(value, str):
            event[key] = scrub(value)
    return event


def configure(level: str = "info", fmt: str = "console") -> None:
    """Route stdlib and structlog records through one renderer; safe to call more than once."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        structlog.processors.format_exc_info,
        redact,
    ]
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=[*shared[:1], structlog.stdlib.filter_by_level, *shared[1:],
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                                              renderer])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # the servers' own access logs are replaced by hearth's events; httpx/httpcore would log every request
    # URL at INFO, and a Telegram Bot API URL holds the bot token (scrub masks it too, should one get through)
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
