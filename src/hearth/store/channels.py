"""What the chat platforms' channels keep: the outbox, the receipts of platform deliveries, pairing codes.

* **Outbox** — every message hearth sends to Telegram, Slack or WhatsApp is first written here (its
  payload through the ``MessageCodec``: it is message content), then sent by the outbox worker. A row is
  ``pending`` until the platform accepted it (``sent``), or ``dead`` after too many failures, where an
  operator can see it and send it again. Rows for one address go out in id order.
* **Receipts** — the platform's own id of each inbound delivery (Telegram's ``update_id``, Slack's
  ``event_id``, WhatsApp's message id), so that a redelivery is recognised and processed once.
* **Pairing codes** — an unknown sender on a channel whose policy is ``pairing`` gets a one-time code;
  an admin approves it (``hearth users pair CODE``), which links the platform account to a user.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from hearth.errors import InvalidRequest, NotFound
from hearth.store.codec import MessageCodec
from hearth.store.engine import ConstraintViolation, Database
from hearth.store.schema import channel_identities, channel_receipts, outbox, pairing_codes, utcnow

__all__ = ["ChannelRepository", "OutboxItem", "PairingCode"]

_o, _r, _p = outbox.c, channel_receipts.c, pairing_codes.c
# no 0/O, 1/I/L: a code is read aloud or typed from a phone
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One message waiting for (or done with) its platform."""

    id: int
    channel: str
    address: str
    conversation_id: str | None
    payload: Mapping[str, Any]
    status: str  # pending | sent | dead
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    platform_id: str | None
    created_at: datetime
    sent_at: datetime | None = None  # when the platform accepted it (status ``sent``)


@dataclass(frozen=True, slots=True)
class PairingCode:
    code: str
    channel: str
    external_id: str
    display_name: str | None
    created_at: datetime
    expires_at: datetime
    approved_user_id: int | None


_OUTBOX_COLUMNS = (_o.id, _o.channel, _o.address, _o.conversation_id, _o.payload, _o.status, _o.attempts,
                   _o.next_attempt_at, _o.last_error, _o.platform_id, _o.created_at, _o.sent_at)
_PAIRING_COLUMNS = (_p.code, _p.channel, _p.external_id, _p.display_name, _p.created_at, _p.expires_at,
                    _p.approved_user_id)


class ChannelRepository:
    """The outbox, the receipts and the pairing codes."""

    def __init__(self, db: Database, codec: MessageCodec) -> None:
        self._db = db
        self._codec = codec

    def _item(self, row: Any) -> OutboxItem:
        payload = orjson.loads(self._codec.decode(row.payload))
        return OutboxItem(row.id, row.channel, row.address, row.conversation_id, payload, row.status, row.attempts,
                          row.next_attempt_at, row.last_error, row.platform_id, row.created_at, row.sent_at)

    # --- outbox -------------------------------------------------------------------------------------

    async def enqueue(self, channel: str, address: str, payloads: list[Mapping[str, Any]], *,
                      conversation_id: str | None = None) -> list[int]:
        """Store messages for ``address`` (in this order), due now; their ids. One transaction: all or none."""
        now = utcnow()
        rows = [{"channel": channel, "address": address, "conversation_id": conversation_id,
                 "payload": self._codec.encode(orjson.dumps(dict(p)).decode()), "status": "pending",
                 "attempts": 0, "next_attempt_at": now, "created_at": now} for p in payloads]

        def tx(conn: Connection) -> list[int]:
            return [int(conn.execute(insert(outbox).values(**row).returning(_o.id)).scalar_one()) for row in rows]

        return await self._db.write(tx)

    async def due(self, now: datetime, limit: int = 50) -> list[OutboxItem]:
        """Pending messages whose time has come and that are first in line for their address (an earlier
        message to the same address that is still pending holds the later ones back: order is kept)."""
        earlier = outbox.alias("earlier")
        blocked = (select(earlier.c.id)
                   .where(earlier.c.channel == _o.channel, earlier.c.address == _o.address,
                          earlier.c.status == "pending", earlier.c.id < _o.id)
                   .exists())
        query = (select(*_OUTBOX_COLUMNS)
                 .where(_o.status == "pending", _o.next_attempt_at <= now, ~blocked)
                 .order_by(_o.next_attempt_at, _o.id).limit(limit))
        rows = await self._db.read(lambda c: c.execute(query).all())
        return [self._item(r) for r in rows]

    async def next_attempt(self) -> datetime | None:
        """When the next pending message is due (None when nothing is pending)."""
        query = select(func.min(_o.next_attempt_at)).where(_o.status == "pending")
        value: datetime | None = await self._db.read(lambda c: c.execute(query).scalar())
        return value

    async def mark_sent(self, item_id: int, platform_id: str | None) -> None:
        statement = (update(outbox).where(_o.id == item_id, _o.status == "pending")
                     .values(status="sent", sent_at=utcnow(), platform_id=platform_id, attempts=_o.attempts + 1,
                             last_error=None))
        await self._db.write(lambda c: c.execute(statement))

    async def mark_failed(self, item_id: int, error: str, *, retry_at: datetime | None) -> None:
        """Count a failed attempt: try again at ``retry_at``, or give up (``dead``) when it is None."""
        values: dict[str, Any] = {"attempts": _o.attempts + 1, "last_error": error[:2000]}
        if retry_at is None:
            values["status"] = "dead"
        else:
            values["next_attempt_at"] = retry_at
        statement = update(outbox).where(_o.id == item_id, _o.status == "pending").values(**values)
        await self._db.write(lambda c: c.execute(statement))

    async def postpone(self, item_id: int, until: datetime) -> None:
        """Hold one pending message until ``until`` (the platform asked to wait), without counting an attempt."""
        statement = update(outbox).where(_o.id == item_id, _o.status == "pending").values(next_attempt_at=until)
        await self._db.write(lambda c: c.execute(statement))

    async def postpone_channel(self, channel: str, until: datetime) -> None:
        """Hold every pending message of ``channel`` until ``until`` (a platform-wide rate limit), without
        counting an attempt."""
        statement = (update(outbox).where(_o.channel == channel, _o.status == "pending", _o.next_attempt_at < until)
                     .values(next_attempt_at=until))
        await self._db.write(lambda c: c.execute(statement))

    async def get(self, item_id: int) -> OutboxItem:
        query = select(*_OUTBOX_COLUMNS).where(_o.id == item_id)
        row = await self._db.read(lambda c: c.execute(query).first())
        if row is None:
            raise NotFound(f"no outbox message {item_id}")
        return self._item(row)

    async def list(self, *, status: str | None = None, channel: str | None = None,
                   limit: int = 100) -> list[OutboxItem]:
        """Messages newest first, optionally of one status (``dead`` for the dead-letter list) or channel."""
        query = select(*_OUTBOX_COLUMNS).order_by(_o.id.desc()).limit(max(1, min(limit, 1000)))
        if status is not None:
            query = query.where(_o.status == status)
        if channel is not None:
            query = query.where(_o.channel == channel)
        rows = await self._db.read(lambda c: c.execute(query).all())
        return [self._item(r) for r in rows]

    async def retry(self, item_id: int) -> OutboxItem:
        """Send a dead message again: it becomes pending, due now, with a fresh count of attempts."""
        statement = (update(outbox).where(_o.id == item_id, _o.status == "dead")
                     .values(status="pending", attempts=0, next_attempt_at=utcnow()))

        def tx(conn: Connection) -> int:
            return int(conn.execute(statement).rowcount)

        if not await self._db.write(tx):
            item = await self.get(item_id)  # NotFound if there is no such message
            raise InvalidRequest(f"outbox message {item_id} is {item.status}, not dead; only dead messages are "
                                 "retried by hand", code="not_dead")
        return await self.get(item_id)

    async def purge_sent(self, before: datetime) -> int:
        statement = delete(outbox).where(_o.status == "sent", _o.sent_at < before)
        return int(await self._db.write(lambda c: c.execute(statement).rowcount))

    # --- receipts ----------------------------------------------------------------------------------

    async def first_receipt(self, channel: str, external_id: str) -> bool:
        """Record that the platform delivered ``external_id``; False when it had been delivered before."""
        statement = insert(channel_receipts).values(channel=channel, external_id=external_id[:255],
                                                    received_at=utcnow())
        try:
            await self._db.write(lambda c: c.execute(statement))
        except ConstraintViolation:
            return False
        return True

    async def forget_receipt(self, channel: str, external_id: str) -> None:
        """Forget one delivery (it could not be taken: its redelivery must be processed)."""
        statement = delete(channel_receipts).where(_r.channel == channel, _r.external_id == external_id[:255])
        await self._db.write(lambda c: c.execute(statement))

    async def forget_receipts(self, before: datetime) -> int:
        """Drop receipts older than ``before`` (platforms stop redelivering after hours, not days)."""
        statement = delete(channel_receipts).where(_r.received_at < before)
        return int(await self._db.write(lambda c: c.execute(statement).rowcount))

    # --- pairing ------------------------------------------------------------------------------------

    async def pairing_code(self, channel: str, external_id: str, display_name: str | None, *,
                           ttl: timedelta) -> PairingCode:
        """The sender's unexpired, unapproved code, or a new one (an expired one is replaced)."""
        now = utcnow()

        def tx(conn: Connection) -> PairingCode:
            row = conn.execute(select(*_PAIRING_COLUMNS).where(_p.channel == channel,
                                                               _p.external_id == external_id)).first()
            if row is not None and row.approved_user_id is None and row.expires_at > now:
                return PairingCode(*row)
            if row is not None:
                conn.execute(delete(pairing_codes).where(_p.code == row.code))
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            record = PairingCode(code, channel, external_id, display_name, now, now + ttl, None)
            conn.execute(insert(pairing_codes).values(code=code, channel=channel, external_id=external_id,
                                                      display_name=display_name, created_at=now,
                                                      expires_at=now + ttl))
            return record

        return await self._db.write(tx)

    async def pending_pairings(self) -> builtins.list[PairingCode]:
        now = utcnow()
        query = (select(*_PAIRING_COLUMNS).where(_p.approved_user_id.is_(None), _p.expires_at > now)
                 .order_by(_p.created_at))
        return [PairingCode(*r) for r in await self._db.read(lambda c: c.execute(query).all())]

    async def approve_pairing(self, code: str, user_id: int) -> PairingCode:
        """Link the code's platform account to ``user_id``; ``NotFound`` for an unknown or expired code,
        ``InvalidRequest(code="exists")`` when that account is already linked to someone else."""
        wanted = code.strip().upper().replace("-", "").replace(" ", "")
        now = utcnow()

        def tx(conn: Connection) -> PairingCode:
            row = conn.execute(select(*_PAIRING_COLUMNS).where(_p.code == wanted)).first()
            if row is None or row.expires_at <= now or row.approved_user_id is not None:
                raise NotFound(f"no pending pairing code {code!r} (codes expire; ask the person to write again "
                               "for a new one)")
            linked = conn.execute(select(channel_identities.c.user_id).where(
                and_(channel_identities.c.channel == row.channel,
                     channel_identities.c.external_id == row.external_id))).scalar()
            if linked is not None and linked != user_id:
                raise InvalidRequest("that account is already linked to another user", code="exists")
            if linked is None:
                conn.execute(insert(channel_identities).values(
                    user_id=user_id, channel=row.channel, external_id=row.external_id,
                    display_name=row.display_name, created_at=now))
            conn.execute(update(pairing_codes).where(_p.code == wanted)
                         .values(approved_user_id=user_id, approved_at=now))
            return PairingCode(row.code, row.channel, row.external_id, row.display_name, row.created_at,
                               row.expires_at, user_id)

        return await self._db.write(tx)
