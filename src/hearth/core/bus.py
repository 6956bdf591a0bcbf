"""The event bus: every step emits typed ``Event``s; audit, metrics and traces subscribe.

Subscribers are plain callables run synchronously in ``emit`` — they must be cheap (a counter, a log
line, a queue put). A subscriber that raises is logged and never breaks the emitter: an audit hook
must not be able to fail a user's turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hearth.types import Event

Subscriber = Callable[[Event], None]

_log = logging.getLogger("hearth.bus")


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[tuple[str, Subscriber]] = []

    def subscribe(self, subscriber: Subscriber, prefix: str = "") -> Callable[[], None]:
        """Call ``subscriber`` for events whose name starts with ``prefix``; returns an unsubscribe."""
        entry = (prefix, subscriber)
        self._subscribers.append(entry)

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)

        return unsubscribe

    def emit(self, event: Event) -> None:
        for prefix, subscriber in tuple(self._subscribers):
            if event.name.startswith(prefix):
                try:
                    subscriber(event)
                except Exception:
                    _log.exception("event subscriber failed for %s", event.name)
