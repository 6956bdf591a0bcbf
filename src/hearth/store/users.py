"""People, their API keys and their identities on each channel.

``find_api_key`` and ``find_identity`` run on every authenticated request and every platform
message, so each is a single indexed statement; the rest is administration. A duplicate the
caller could have avoided (a taken name, an identity linked to someone else) is an
``InvalidRequest`` with ``code="exists"``; anything else the database refuses is a
``StorageError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import Executable

from hearth.errors import InvalidRequest, NotFound
from hearth.store.engine import ConstraintViolation, Database
from hearth.store.records import ApiKeyRecord, IdentityRecord, UserRecord
from hearth.store.schema import api_keys, channel_identities, users, utcnow

__all__ = ["UserRepository"]

_USER = tuple(users.c)  # column order == UserRecord's field order
_KEY = tuple(api_keys.c)
_IDENTITY = tuple(channel_identities.c)
_NK, _NI = len(_KEY), len(_IDENTITY)

_INSERT_USER = insert(users).returning(*_USER)
_USER_BY_ID = select(*_USER).where(users.c.id == bindparam("id"))
_USER_BY_NAME = select(*_USER).where(users.c.name == bindparam("name"))
_LIST_USERS = select(*_USER).order_by(users.c.id)
_COUNT_USERS = select(func.count()).select_from(users)
_SET_ROLE = update(users).where(users.c.id == bindparam("p_id")).values(role=bindparam("p_role")).returning(*_USER)
_SET_DISABLED = (
    update(users).where(users.c.id == bindparam("p_id")).values(disabled=bindparam("p_disabled")).returning(*_USER)
)

_INSERT_KEY = insert(api_keys).returning(*_KEY)
_FIND_KEY = (
    select(*_KEY, *_USER)
    .join_from(api_keys, users, api_keys.c.user_id == users.c.id)
    .where(api_keys.c.prefix == bindparam("prefix"), api_keys.c.revoked_at.is_(None), users.c.disabled.is_(False))
)
_TOUCH_KEY = update(api_keys).where(api_keys.c.id == bindparam("p_id")).values(last_used_at=bindparam("now"))
_REVOKE_KEY = (
    update(api_keys)
    .where(api_keys.c.id == bindparam("p_id"))
    .values(revoked_at=func.coalesce(api_keys.c.revoked_at, bindparam("now", type_=api_keys.c.revoked_at.type)))
)
_LIST_KEYS = select(*_KEY).where(api_keys.c.user_id == bindparam("user_id")).order_by(api_keys.c.id)

_INSERT_IDENTITY = insert(channel_identities).returning(*_IDENTITY)
_IDENTITY_BY_EXTERNAL = select(*_IDENTITY).where(
    channel_identities.c.channel == bindparam("channel"),
    channel_identities.c.external_id == bindparam("external_id"),
)
_SET_DISPLAY_NAME = (
    update(channel_identities)
    .where(channel_identities.c.id == bindparam("p_id"))
    .values(display_name=bindparam("p_display_name"))
    .returning(*_IDENTITY)
)
_FIND_IDENTITY = _IDENTITY_BY_EXTERNAL.add_columns(*_USER).join_from(
    channel_identities, users, channel_identities.c.user_id == users.c.id
)


def _user(row: Sequence[Any]) -> UserRecord:
    return UserRecord(*row)


def _key(row: Sequence[Any]) -> ApiKeyRecord:
    return ApiKeyRecord(*row)


def _identity(row: Sequence[Any]) -> IdentityRecord:
    return IdentityRecord(*row)


def _one_user(conn: Connection, /, statement: Executable, params: dict[str, Any]) -> UserRecord | None:
    row = conn.execute(statement, params).first()
    return None if row is None else _user(row)


def _all_users(conn: Connection, /) -> list[UserRecord]:
    return [_user(row) for row in conn.execute(_LIST_USERS)]


def _count_users(conn: Connection, /) -> int:
    return int(conn.execute(_COUNT_USERS).scalar_one())


def _insert_user(conn: Connection, /, params: dict[str, Any]) -> UserRecord:
    return _user(conn.execute(_INSERT_USER, params).one())


def _insert_key(conn: Connection, /, params: dict[str, Any]) -> ApiKeyRecord:
    return _key(conn.execute(_INSERT_KEY, params).one())


def _find_key(conn: Connection, /, prefix: str) -> tuple[ApiKeyRecord, UserRecord] | None:
    row = conn.execute(_FIND_KEY, {"prefix": prefix}).first()
    return None if row is None else (_key(row[:_NK]), _user(row[_NK:]))


def _list_keys(conn: Connection, /, user_id: int) -> list[ApiKeyRecord]:
    return [_key(row) for row in conn.execute(_LIST_KEYS, {"user_id": user_id})]


def _rowcount(conn: Connection, /, statement: Executable, params: dict[str, Any]) -> int:
    return int(conn.execute(statement, params).rowcount)


def _link_identity(
    conn: Connection, user_id: int, channel: str, external_id: str, display_name: str | None
) -> IdentityRecord:
    key = {"channel": channel, "external_id": external_id}
    row = conn.execute(_IDENTITY_BY_EXTERNAL, key).first()
    if row is None:
        params = {**key, "user_id": user_id, "display_name": display_name, "created_at": utcnow()}
        row = conn.execute(_INSERT_IDENTITY, params).one()
    elif row.user_id != user_id:
        raise InvalidRequest(f"this {channel} account is linked to another user", code="exists")
    elif display_name is not None and row.display_name != display_name:
        row = conn.execute(_SET_DISPLAY_NAME, {"p_id": row.id, "p_display_name": display_name}).one()
    return _identity(row)


def _find_identity(conn: Connection, /, channel: str, external_id: str) -> tuple[IdentityRecord, UserRecord] | None:
    row = conn.execute(_FIND_IDENTITY, {"channel": channel, "external_id": external_id}).first()
    return None if row is None else (_identity(row[:_NI]), _user(row[_NI:]))


class UserRepository:
    """Users, API keys and channel identities."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- users --------------------------------------------------------------------------------

    async def create_user(self, name: str, role: str = "user", timezone: str | None = None) -> UserRecord:
        """Add a user; a taken name raises ``InvalidRequest(code="exists")``."""
        params = {"name": name, "role": role, "timezone": timezone, "disabled": False, "created_at": utcnow()}
        try:
            return await self._db.write(_insert_user, params)
        except ConstraintViolation as exc:
            raise InvalidRequest(f"a user named {name!r} already exists", code="exists") from exc

    async def get_user(self, user_id: int) -> UserRecord | None:
        return await self._db.read(_one_user, _USER_BY_ID, {"id": user_id})

    async def get_user_by_name(self, name: str) -> UserRecord | None:
        return await self._db.read(_one_user, _USER_BY_NAME, {"name": name})

    async def list_users(self) -> list[UserRecord]:
        return await self._db.read(_all_users)

    async def count_users(self) -> int:
        return await self._db.read(_count_users)

    async def set_role(self, user_id: int, role: str) -> UserRecord:
        """Change a user's role; ``NotFound`` if there is no such user."""
        user = await self._db.write(_one_user, _SET_ROLE, {"p_id": user_id, "p_role": role})
        if user is None:
            raise NotFound(f"user {user_id} not found")
        return user

    async def set_disabled(self, user_id: int, disabled: bool) -> UserRecord:
        """Disable (or re-enable) a user: a disabled user's API keys stop working at once."""
        user = await self._db.write(_one_user, _SET_DISABLED, {"p_id": user_id, "p_disabled": disabled})
        if user is None:
            raise NotFound(f"user {user_id} not found")
        return user

    # --- API keys -----------------------------------------------------------------------------

    async def add_api_key(self, user_id: int, prefix: str, secret_hash: str, label: str = "") -> ApiKeyRecord:
        """Store a key's public prefix and the hash of its secret (never the secret itself)."""
        params = {"user_id": user_id, "prefix": prefix, "secret_hash": secret_hash, "label": label,
                  "created_at": utcnow(), "last_used_at": None, "revoked_at": None}
        try:
            return await self._db.write(_insert_key, params)
        except ConstraintViolation as exc:
            if await self.get_user(user_id) is None:
                raise NotFound(f"user {user_id} not found") from exc
            raise InvalidRequest("an API key with this prefix already exists", code="exists") from exc

    async def find_api_key(self, prefix: str) -> tuple[ApiKeyRecord, UserRecord] | None:
        """The live key with this prefix and its user; ``None`` if revoked or the user is disabled."""
        return await self._db.read(_find_key, prefix)

    async def touch_api_key(self, key_id: int) -> None:
        """Record that the key was just used."""
        await self._db.write(_rowcount, _TOUCH_KEY, {"p_id": key_id, "now": utcnow()})

    async def revoke_api_key(self, key_id: int) -> None:
        """Revoke a key for good (revoking twice keeps the first time); ``NotFound`` if unknown."""
        if not await self._db.write(_rowcount, _REVOKE_KEY, {"p_id": key_id, "now": utcnow()}):
            raise NotFound(f"API key {key_id} not found")

    async def list_api_keys(self, user_id: int) -> list[ApiKeyRecord]:
        """All of a user's keys, revoked ones included, oldest first."""
        return await self._db.read(_list_keys, user_id)

    # --- channel identities -------------------------------------------------------------------

    async def link_identity(
        self, user_id: int, channel: str, external_id: str, display_name: str | None = None
    ) -> IdentityRecord:
        """Tie a platform account to a user. Linking it to the same user again returns the link
        (updating a given display name); linking it to another user raises ``code="exists"``."""
        try:
            return await self._db.write(_link_identity, user_id, channel, external_id, display_name)
        except ConstraintViolation:
            if await self.get_user(user_id) is None:
                raise NotFound(f"user {user_id} not found") from None
        # Another writer linked it between our look and our insert (PostgreSQL): look again.
        return await self._db.write(_link_identity, user_id, channel, external_id, display_name)

    async def find_identity(self, channel: str, external_id: str) -> tuple[IdentityRecord, UserRecord] | None:
        """The user behind a platform account, or ``None`` if it is not linked (disabled users included)."""
        return await self._db.read(_find_identity, channel, external_id)
