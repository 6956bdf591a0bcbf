"""Skill state (enabled, config, granted capabilities), per-user skill storage, pending actions and
scheduled messages.

Pending actions are what a conversation is waiting for from its user: a confirmation before an intent
with side effects runs, or the value of a slot that was missing. There is at most one per conversation;
a new one replaces it. Scheduled messages are reminders and ``send_later`` messages: they survive
restarts, and each is delivered once (``claim_due`` moves it out of ``pending`` before delivery).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection

from hearth.store.codec import MessageCodec
from hearth.store.engine import Database
from hearth.store.schema import pending_actions, scheduled_messages, skill_kv, skill_state, utcnow

__all__ = ["PendingAction", "ScheduledMessage", "SkillRepository", "SkillState"]


@dataclass(frozen=True, slots=True)
class SkillState:
    name: str
    enabled: bool
    config: Mapping[str, Any]
    granted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PendingAction:
    conversation_id: str
    kind: str  # "confirm" | "clarify"
    tool: str
    params: Mapping[str, Any]
    missing: tuple[str, ...]
    prompt: str
    token: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ScheduledMessage:
    id: int
    conversation_id: str
    user_id: int
    skill: str | None
    text: str
    due_at: datetime
    status: str
    attempts: int


_st, _kv, _pa, _sm = skill_state.c, skill_kv.c, pending_actions.c, scheduled_messages.c


class SkillRepository:
    def __init__(self, db: Database, codec: MessageCodec) -> None:
        self._db = db
        self._codec = codec

    # --- state ------------------------------------------------------------------------------------

    async def states(self) -> dict[str, SkillState]:
        rows = await self._db.read(lambda c: c.execute(select(skill_state)).all())
        return {r.name: SkillState(r.name, bool(r.enabled), dict(r.config or {}), tuple(r.granted or ())) for r in rows}

    async def set_state(self, name: str, *, enabled: bool | None = None, config: Mapping[str, Any] | None = None,
                        granted: list[str] | None = None) -> SkillState:
        def tx(conn: Connection) -> SkillState:
            row = conn.execute(select(skill_state).where(_st.name == name)).first()
            values: dict[str, Any] = {"updated_at": utcnow()}
            if enabled is not None:
                values["enabled"] = enabled
            if config is not None:
                values["config"] = dict(config)
            if granted is not None:
                values["granted"] = sorted(set(granted))
            if row is None:
                conn.execute(insert(skill_state).values(name=name, **{"enabled": True, "config": {}, "granted": [],
                                                                      **values}))
            else:
                conn.execute(update(skill_state).where(_st.name == name).values(**values))
            new = conn.execute(select(skill_state).where(_st.name == name)).one()
            return SkillState(new.name, bool(new.enabled), dict(new.config or {}), tuple(new.granted or ()))

        return await self._db.write(tx)

    # --- per-user storage ---------------------------------------------------------------------------

    async def kv_get(self, skill: str, user_id: int, key: str) -> Any:
        query = select(_kv.value).where(_kv.skill == skill, _kv.user_id == user_id, _kv.key == key)
        row = await self._db.read(lambda c: c.execute(query).first())
        return None if row is None else row[0]

    async def kv_set(self, skill: str, user_id: int, key: str, value: Any) -> None:
        def tx(conn: Connection) -> None:
            where = (_kv.skill == skill, _kv.user_id == user_id, _kv.key == key)
            changed = conn.execute(update(skill_kv).where(*where).values(value=value, updated_at=utcnow())).rowcount
            if not changed:
                conn.execute(insert(skill_kv).values(skill=skill, user_id=user_id, key=key, value=value,
                                                     updated_at=utcnow()))

        await self._db.write(tx)

    async def kv_delete(self, skill: str, user_id: int, key: str) -> None:
        statement = delete(skill_kv).where(_kv.skill == skill, _kv.user_id == user_id, _kv.key == key)
        await self._db.write(lambda c: c.execute(statement))

    async def kv_keys(self, skill: str, user_id: int, prefix: str = "") -> list[str]:
        query = select(_kv.key).where(_kv.skill == skill, _kv.user_id == user_id).order_by(_kv.key)
        rows = await self._db.read(lambda c: c.execute(query).all())
        return [r[0] for r in rows if r[0].startswith(prefix)]

    # --- pending actions -----------------------------------------------------------------------------

    async def pending(self, conversation_id: str) -> PendingAction | None:
        query = select(pending_actions).where(_pa.conversation_id == conversation_id)
        row = await self._db.read(lambda c: c.execute(query).first())
        if row is None:
            return None
        return PendingAction(row.conversation_id, row.kind, row.tool, dict(row.params or {}), tuple(row.missing or ()),
                             row.prompt, row.token, row.created_at, row.expires_at)

    async def set_pending(self, action: PendingAction) -> None:
        values = {"kind": action.kind, "tool": action.tool, "params": dict(action.params),
                  "missing": list(action.missing), "prompt": action.prompt, "token": action.token,
                  "created_at": action.created_at, "expires_at": action.expires_at}

        def tx(conn: Connection) -> None:
            conn.execute(delete(pending_actions).where(_pa.conversation_id == action.conversation_id))
            conn.execute(insert(pending_actions).values(conversation_id=action.conversation_id, **values))

        await self._db.write(tx)

    async def clear_pending(self, conversation_id: str, token: str | None = None) -> bool:
        """Remove the conversation's pending action (only if it has ``token``, when given)."""
        statement = delete(pending_actions).where(_pa.conversation_id == conversation_id)
        if token is not None:
            statement = statement.where(_pa.token == token)
        return bool(await self._db.write(lambda c: c.execute(statement).rowcount))

    # --- scheduled messages ----------------------------------------------------------------------------

    async def schedule(self, *, conversation_id: str, user_id: int, text: str, due_at: datetime,
                       skill: str | None = None) -> int:
        statement = insert(scheduled_messages).values(
            conversation_id=conversation_id, user_id=user_id, skill=skill, text=self._codec.encode(text),
            due_at=due_at, status="pending", attempts=0, created_at=utcnow()).returning(_sm.id)
        return int(await self._db.write(lambda c: c.execute(statement).scalar_one()))

    async def cancel_scheduled(self, message_id: int, user_id: int) -> bool:
        statement = (update(scheduled_messages)
                     .where(_sm.id == message_id, _sm.user_id == user_id, _sm.status == "pending")
                     .values(status="cancelled"))
        return bool(await self._db.write(lambda c: c.execute(statement).rowcount))

    async def scheduled_for(self, user_id: int, *, skill: str | None = None) -> list[ScheduledMessage]:
        query = select(scheduled_messages).where(_sm.user_id == user_id, _sm.status == "pending")
        if skill is not None:
            query = query.where(_sm.skill == skill)
        rows = await self._db.read(lambda c: c.execute(query.order_by(_sm.due_at)).all())
        return [self._scheduled(r) for r in rows]

    async def next_due(self) -> datetime | None:
        query = select(_sm.due_at).where(_sm.status == "pending").order_by(_sm.due_at).limit(1)
        row = await self._db.read(lambda c: c.execute(query).first())
        return None if row is None else row[0]

    async def due(self, now: datetime, limit: int = 50) -> list[ScheduledMessage]:
        """Pending messages due by ``now``, oldest first. Delivery is at least once: a message is marked
        sent (``mark_sent``) only after it was handed over durably, so a crash in between repeats it
        rather than losing it."""
        query = (select(scheduled_messages).where(_sm.status == "pending", _sm.due_at <= bindparam("now"))
                 .order_by(_sm.due_at).limit(limit))
        rows = await self._db.read(lambda c: c.execute(query, {"now": now}).all())
        return [self._scheduled(r) for r in rows]

    async def mark_sent(self, message_id: int) -> None:
        statement = (update(scheduled_messages).where(_sm.id == message_id, _sm.status == "pending")
                     .values(status="sent", sent_at=utcnow(), attempts=_sm.attempts + 1))
        await self._db.write(lambda c: c.execute(statement))

    async def mark_failed(self, message_id: int) -> None:
        statement = (update(scheduled_messages).where(_sm.id == message_id, _sm.status == "pending")
                     .values(status="failed", attempts=_sm.attempts + 1))
        await self._db.write(lambda c: c.execute(statement))

    def _scheduled(self, row: Any) -> ScheduledMessage:
        return ScheduledMessage(row.id, row.conversation_id, row.user_id, row.skill, self._codec.decode(row.text),
                                row.due_at, row.status, row.attempts)
