"""Fixtures shared by the whole suite live in ``tests/support`` and are registered here."""

import logging
from collections.abc import Iterator

import pytest

from hearth.ops.logging import AUDIT_LOGGER

pytest_plugins = ["tests.support.hearth", "tests.support.runtime", "tests.support.postgres"]


@pytest.fixture(autouse=True)
def _audit_logger_restored() -> Iterator[None]:
    """A CLI command run in-process points the audit logger at its data dir's file and off the console;
    the next test gets it back as it was (and the file is closed)."""
    audit = logging.getLogger(AUDIT_LOGGER)
    handlers, level, propagate = audit.handlers[:], audit.level, audit.propagate
    yield
    for handler in audit.handlers:
        if handler not in handlers:
            handler.close()
    audit.handlers[:], audit.propagate = handlers, propagate
    audit.setLevel(level)
