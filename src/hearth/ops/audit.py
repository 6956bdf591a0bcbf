"""The audit log: who did what, as structured log lines on the ``hearth.audit`` logger.

Subscribed to the event bus for the events an operator must be able to reconstruct later (sign-ins
that failed, admin actions, permission denials, turn failures, model outages, chat-platform webhooks
refused for a bad signature, and who got in through a channel: accounts linked, paired, refused or sent a
pairing code). Entries carry the actor and the event's properties, never message content or secrets.
Delivery receipts (``whatsapp.status``) and the outbox's own progress are events for metrics, not audit.
"""

from __future__ import annotations

import logging

from hearth.types import Event

AUDITED_PREFIXES = ("admin.", "auth.", "permission.", "channel.refused", "identity.", "turn.failed",
                    "turn.recovered", "model.unavailable", "model.breaker", "memory.summary_failed")


_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class AuditLog:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("hearth.audit")

    def on_event(self, event: Event) -> None:
        if not event.name.startswith(AUDITED_PREFIXES):
            return
        actor = event.actor
        extra = {f"p_{k}" if k in _RESERVED else k: v for k, v in event.properties.items()}
        if actor is not None:
            extra.update(actor=actor.name, user_id=actor.user_id, actor_channel=actor.channel)
        self._log.info(event.name, extra=extra)
