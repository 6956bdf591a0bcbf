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
import logging.handlers
import os
import re
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(token|secret|password|passwd|api_key|apikey|authorization|cookie|signature)",
                          re.IGNORECASE)
_KEY_PATTERN = re.compile(r"hth_[A-Za-z0-9]{12}_[A-Za-z0-9]{32}")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"']+")
_TELEGRAM_TOKEN = re.compile(r"(?<![0-9])[0-9]{5,}:[A-Za-z0-9_-]{30,}")  # a bot token: <bot id>:<35 characters>
MASK = "[redacted]"
AUDIT_LOGGER = "hearth.audit"
AUDIT_FILE = "audit.log"  # in the data directory
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


def configure(level: str = "info", fmt: str = "console", audit_file: Path | None = None) -> None:
    """Route stdlib and structlog records through one renderer; safe to call more than once.

    With ``audit_file``, the ``hearth.audit`` records are also appended to that file as JSON lines (made
    owner-only), whatever ``level`` is: the server and every CLI command write the same trail, so an
    admin action taken with ``hearth users pair`` is recorded like one taken over the management API. The
    file is opened per write position (``WatchedFileHandler``), so logrotate may move it.
    """
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
    audit = logging.getLogger(AUDIT_LOGGER)
    for old in audit.handlers:
        old.close()
    audit.handlers.clear()
    audit.setLevel(logging.NOTSET)
    audit.propagate = True
    if audit_file is not None:
        audit.setLevel(logging.INFO)
        try:
            audit.addHandler(_audit_handler(audit_file, shared))
        except OSError as exc:  # the command still runs; its audit entries go to the console instead
            logging.getLogger("hearth").warning("the audit log %s cannot be written (%s): audit entries go to "
                                                "the console only", audit_file, exc)
            return
        # on the console only when the console shows INFO (the server); a CLI command's stays quiet
        audit.propagate = root.level <= logging.INFO


def _audit_handler(path: Path, shared: list[Any]) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))  # owner-only from the start
    handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                                              structlog.processors.JSONRenderer()]))
    return handler


def configure_in(data_dir: Path, level: str = "info", fmt: str = "console") -> None:
    """``configure`` for a process working on ``data_dir``: its audit trail is ``data_dir/audit.log``."""
    configure(level, fmt, data_dir / AUDIT_FILE)
