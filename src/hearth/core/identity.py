"""Who is calling: API keys to ``Actor``s, and the creation of users and keys.

A key check costs an argon2 verification (tens of milliseconds, on a worker thread), so successful
checks are cached for ``cache_seconds`` by a keyed fingerprint of the token: a revoked key stops
working within that time. Failed checks are not cached as successes and cost the caller the full
verification, which is what makes guessing expensive.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Protocol

from hearth.errors import InvalidRequest, Unauthenticated
from hearth.security.apikeys import ApiKeyHasher, fingerprint, parse_prefix
from hearth.store.channels import PairingCode
from hearth.store.records import IdentityRecord, UserRecord
from hearth.types import Actor, Event

from .permissions import ROLES
from .ports import EventSink, UserStore

CACHE_SIZE = 10_000
TOUCH_EVERY = 60.0


def actor_for(user: UserRecord, *, channel: str = "", identity: str = "") -> Actor:
    return Actor(user.id, user.name, frozenset({user.role}), channel=channel, identity=identity,
                 timezone=user.timezone)


@dataclass(frozen=True, slots=True)
class CreatedUser:
    user: UserRecord
    api_key: str


class Authenticator:
    def __init__(self, users: UserStore, hasher: ApiKeyHasher, *, cache_seconds: float = 60.0) -> None:
        self._users = users
        self._hasher = hasher
        self._cache_seconds = cache_seconds
        self._cache: OrderedDict[str, tuple[Actor, int, float]] = OrderedDict()
        self._touched: dict[int, float] = {}
        self._verifying: dict[str, asyncio.Future[tuple[Actor, int]]] = {}

    async def authenticate(self, token: str | None, *, channel: str = "") -> Actor:
        """The actor a key belongs to; ``Unauthenticated`` for a missing, malformed, wrong or revoked key."""
        if not token:
            raise Unauthenticated("no API key given")
        now = time.monotonic()
        key = fingerprint(token)
        cached = self._cache.get(key)
        if cached is not None and cached[2] > now:
            self._cache.move_to_end(key)
            actor, key_id, _ = cached
            await self._touch(key_id, now)
            return actor if actor.channel == channel else _with_channel(actor, channel)
        # Many connections presenting one key at once (a client reconnecting its sessions after a
        # restart) share one argon2 verification instead of paying one each.
        pending = self._verifying.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._verify(token, key))
            self._verifying[key] = pending
            pending.add_done_callback(lambda _: self._verifying.pop(key, None))
        actor, key_id = await asyncio.shield(pending)
        await self._touch(key_id, time.monotonic())
        return actor if actor.channel == channel else _with_channel(actor, channel)

    async def _verify(self, token: str, key: str) -> tuple[Actor, int]:
        prefix = parse_prefix(token)
        if prefix is None:
            raise Unauthenticated("malformed API key")
        found = await self._users.find_api_key(prefix)
        if found is None:
            raise Unauthenticated("unknown or revoked API key")
        record, user = found
        if not await asyncio.to_thread(self._hasher.verify, record.secret_hash, token):
            raise Unauthenticated("wrong API key")
        actor = actor_for(user)
        self._cache[key] = (actor, record.id, time.monotonic() + self._cache_seconds)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return actor, record.id

    def forget(self) -> None:
        """Drop every cached verification (after a revocation or a role change)."""
        self._cache.clear()

    async def _touch(self, key_id: int, now: float) -> None:
        if now - self._touched.get(key_id, -TOUCH_EVERY) >= TOUCH_EVERY:
            self._touched[key_id] = now
            await self._users.touch_api_key(key_id)

    async def create_user(self, name: str, role: str = "user", *, label: str = "") -> CreatedUser:
        """Create a user with a first API key; the key is returned once and only its hash is kept."""
        name = name.strip()
        if not name or len(name) > 64 or not all(c.isalnum() or c in "._-@" for c in name):
            raise InvalidRequest("a user name is 1-64 letters, digits or . _ - @", code="bad_name")
        if role not in ROLES:
            raise InvalidRequest(f"unknown role {role!r}; roles are {', '.join(ROLES)}", code="bad_role")
        user = await self._users.create_user(name, role)
        token = await self.add_key(user.id, label=label or "created with the user")
        return CreatedUser(user, token)

    async def add_key(self, user_id: int, *, label: str = "") -> str:
        new = await asyncio.to_thread(self._hasher.new_key)
        await self._users.add_api_key(user_id, new.prefix, new.secret_hash, label)
        return new.token


def _with_channel(actor: Actor, channel: str) -> Actor:
    return Actor(actor.user_id, actor.name, actor.roles, channel=channel, identity=actor.identity,
                 timezone=actor.timezone)


# --- people on chat platforms ----------------------------------------------------------------------------

SenderPolicy = Literal["pairing", "allowlist", "open"]
SENDER_POLICIES: tuple[SenderPolicy, ...] = ("pairing", "allowlist", "open")
PAIRING_TTL = timedelta(hours=24)
PAIR_PRIVATELY = ("Hi! This assistant does not know you yet. Send me a private message to get a pairing code: "
                  "I never post one where others can read it.")
_UNSAFE_NAME = re.compile(r"[^a-z0-9_.-]+")


class IdentityStore(Protocol):
    async def find_identity(self, channel: str, external_id: str) -> tuple[IdentityRecord, UserRecord] | None: ...
    async def link_identity(self, user_id: int, channel: str, external_id: str,
                            display_name: str | None = None) -> IdentityRecord: ...
    async def create_user(self, name: str, role: str = "user", timezone: str | None = None) -> UserRecord: ...
    async def get_user_by_name(self, name: str) -> UserRecord | None: ...


class PairingStore(Protocol):
    async def pairing_code(self, channel: str, external_id: str, display_name: str | None, *,
                           ttl: timedelta) -> PairingCode: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """An unknown sender that may not talk yet; ``text`` is what they are told (None: nothing)."""

    text: str | None
    code: str | None = None


class ChannelIdentities:
    """Maps a platform account to a hearth user, by the channel's policy for senders it does not know.

    * ``pairing`` (the default): the sender gets a one-time code; an admin approves it with
      ``hearth users pair CODE``, which links the account to a user, new or existing. The code is given
      only where the sender alone reads it (``private``): in a group or a channel anyone could read it and
      hand it to the owner as their own, so there the sender is asked to write to the bot privately and
      no code is made.
    * ``allowlist``: accounts listed for the channel get a user of their own on first contact; others get
      no answer at all (a bot that answers strangers confirms it exists).
    * ``open``: every account gets a user of its own on first contact.

    A disabled user's accounts are refused without an answer.
    """

    def __init__(self, users: IdentityStore, pairing: PairingStore, events: EventSink) -> None:
        self._users = users
        self._pairing = pairing
        self._events = events

    async def resolve(self, channel: str, external_id: str, display_name: str | None, *, policy: str,
                      allowlist: frozenset[str] = frozenset(), private: bool = True) -> Actor | Refusal:
        """The hearth user behind a platform account, or what an account that may not talk yet is told.

        ``private`` is False when the message came from a group or a channel: a pairing code is then not
        made, and the refusal says to ask for one in a private chat."""
        if policy not in SENDER_POLICIES:
            raise InvalidRequest(f"unknown sender policy {policy!r}; use one of {', '.join(SENDER_POLICIES)}",
                                 code="invalid")
        found = await self._users.find_identity(channel, external_id)
        if found is not None:
            _, user = found
            if user.disabled:
                return Refusal(None)
            return actor_for(user, channel=channel, identity=external_id)
        if policy == "open" or (policy == "allowlist" and external_id in allowlist):
            user = await self.new_user(channel, external_id, display_name)
            await self._users.link_identity(user.id, channel, external_id, display_name)
            self._events.emit(Event("identity.linked", None, {"channel": channel, "user": user.name,
                                                              "by": policy}))
            return actor_for(user, channel=channel, identity=external_id)
        if policy == "allowlist":
            self._events.emit(Event("identity.refused", None, {"channel": channel}))
            return Refusal(None)
        if not private:
            self._events.emit(Event("identity.refused", None, {"channel": channel, "reason": "not_private"}))
            return Refusal(PAIR_PRIVATELY)
        code = await self._pairing.pairing_code(channel, external_id, display_name, ttl=PAIRING_TTL)
        self._events.emit(Event("identity.pairing", None, {"channel": channel}))
        return Refusal(f"Hi! This assistant does not know you yet. Ask its owner to approve you with this "
                       f"code: {code.code}\n(on the server: hearth users pair {code.code})", code=code.code)

    async def new_user(self, channel: str, external_id: str, display_name: str | None, *,
                       role: str = "user") -> UserRecord:
        """A new user for a platform account, named after it (``telegram-ann``, ``telegram-ann-2``, ...)."""
        if role not in ROLES:
            raise InvalidRequest(f"unknown role {role!r}; choose one of {', '.join(sorted(ROLES))}", code="invalid")
        base = _UNSAFE_NAME.sub("-", f"{channel}-{(display_name or external_id).lower()}").strip("-.")[:48]
        name = base or channel
        for n in range(2, 1000):
            if await self._users.get_user_by_name(name) is None:
                try:
                    return await self._users.create_user(name, role)
                except InvalidRequest as exc:
                    if exc.code != "exists":
                        raise
            name = f"{base[:44]}-{n}"
        raise InvalidRequest(f"no free user name for {channel} account {external_id}", code="exists")
