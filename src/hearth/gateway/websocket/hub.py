"""Which WebSocket sessions are open for which user, so that hearth can push to them.

A reminder or any other message hearth sends on its own goes to every open session of the user as a
``{"type": "notice", "conversation", "text", "message_id"}`` frame. With no session open, the message
is still in the conversation's history for the user's next visit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from hearth.gateway.base import Outbound

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Hub:
    def __init__(self) -> None:
        self._sessions: defaultdict[int, set[Send]] = defaultdict(set)

    def add(self, user_id: int, send: Send) -> None:
        self._sessions[user_id].add(send)

    def remove(self, user_id: int, send: Send) -> None:
        sessions = self._sessions.get(user_id)
        if sessions is not None:
            sessions.discard(send)
            if not sessions:
                del self._sessions[user_id]

    def count(self, user_id: int) -> int:
        return len(self._sessions.get(user_id, ()))

    async def deliver(self, message: Outbound) -> bool:
        sessions = list(self._sessions.get(message.user_id, ()))
        frame: dict[str, Any] = {"type": "notice", "conversation": message.conversation, "text": message.text,
                                 "message_id": message.message_id}
        if message.buttons:
            frame["buttons"] = [{"id": b.id, "label": b.label} for b in message.buttons]
        for send in sessions:
            await send(frame)
        return bool(sessions)
