"""Fixtures shared by the whole suite live in ``tests/support`` and are registered here."""

pytest_plugins = ["tests.support.hearth", "tests.support.runtime", "tests.support.postgres"]
