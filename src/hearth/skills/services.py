"""The capability objects behind ``SkillContext``, and the context of one call.

A skill's context holds working objects only for the capabilities it may use: built-in skills get all
of them; a skill from a package or the skills folder gets those its manifest asks for *and* an admin
granted (``hearth skills grant``), the rest are ``Denied`` stand-ins. Messages and files are services of
the control plane, given to the registry by the composition root as the protocols below.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp

from hearth.sdk import HttpResponse, SkillContext, SkillConversation, SkillUser
from hearth.sdk.context import Denied
from hearth.types import Actor, utcnow

MAX_RESPONSE = 5 * 1024 * 1024


class SkillStateLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def config(self) -> Mapping[str, Any]: ...
    @property
    def granted(self) -> tuple[str, ...]: ...


class SkillStore(Protocol):
    """Where skill state and per-user skill storage are kept (the database, wired by the runtime)."""

    async def states(self) -> Mapping[str, SkillStateLike]: ...
    async def set_state(self, name: str, *, enabled: bool | None = None, config: Mapping[str, Any] | None = None,
                        granted: list[str] | None = None) -> SkillStateLike: ...
    async def kv_get(self, skill: str, user_id: int, key: str) -> Any: ...
    async def kv_set(self, skill: str, user_id: int, key: str, value: Any) -> None: ...
    async def kv_delete(self, skill: str, user_id: int, key: str) -> None: ...
    async def kv_keys(self, skill: str, user_id: int, prefix: str = "") -> list[str]: ...


class Messenger(Protocol):
    """Sends messages to a conversation now or later (the control plane's delivery)."""

    async def send(self, conversation_id: str, text: str, *, skill: str | None = None) -> bool: ...
    async def send_later(self, conversation_id: str, user_id: int, text: str, at: datetime, *,
                         skill: str | None = None) -> str: ...
    async def cancel(self, scheduled_id: str, user_id: int) -> bool: ...
    async def scheduled(self, user_id: int, skill: str | None = None) -> list[Mapping[str, Any]]: ...


class FileStore(Protocol):
    """Files users sent, with their extracted text."""

    async def text(self, user_id: int, file_id: str) -> str: ...
    async def recent(self, user_id: int, limit: int = 5) -> list[Mapping[str, Any]]: ...


class KeyValue:
    """``Storage`` over the ``skill_kv`` table, scoped to one skill and one user."""

    def __init__(self, repository: SkillStore, skill: str, user_id: int) -> None:
        self._repository = repository
        self._skill = skill
        self._user = user_id

    async def get(self, key: str, default: Any = None) -> Any:
        value = await self._repository.kv_get(self._skill, self._user, _key(key))
        return default if value is None else value

    async def set(self, key: str, value: Any) -> None:
        await self._repository.kv_set(self._skill, self._user, _key(key), value)

    async def delete(self, key: str) -> None:
        await self._repository.kv_delete(self._skill, self._user, _key(key))

    async def keys(self, prefix: str = "") -> list[str]:
        return await self._repository.kv_keys(self._skill, self._user, prefix)


def _key(key: str) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= 256:
        raise ValueError("storage keys are strings of 1-256 characters")
    return key


class Web:
    """``Http`` over one shared aiohttp session; bodies are capped at 5 MB."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def request(self, method: str, url: str, *, json: Any = None, data: bytes | str | None = None,
                      headers: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
                      timeout: float = 30.0) -> HttpResponse:  # noqa: ASYNC109 - the request's own limit
        if not url.startswith(("http://", "https://")):
            raise ValueError("only http:// and https:// URLs can be fetched")
        async with self._session.request(method, url, json=json, data=data, headers=headers, params=params,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            body = await response.content.read(MAX_RESPONSE + 1)
            if len(body) > MAX_RESPONSE:
                raise ValueError("the response is larger than 5 MB")
            return HttpResponse(response.status, dict(response.headers), body.decode(response.charset or "utf-8",
                                                                                    "replace"))


class ConversationMessages:
    """``Messages`` bound to the conversation a call came from."""

    def __init__(self, messenger: Messenger, conversation_id: str, user_id: int, skill: str) -> None:
        self._messenger = messenger
        self._conversation = conversation_id
        self._user = user_id
        self._skill = skill

    async def send(self, text: str) -> None:
        await self._messenger.send(self._conversation, text, skill=self._skill)

    async def send_later(self, text: str, *, at: datetime) -> str:
        if at.tzinfo is None:
            raise ValueError("send_later needs an aware datetime")
        return await self._messenger.send_later(self._conversation, self._user, text, at, skill=self._skill)

    async def cancel(self, scheduled_id: str) -> bool:
        return await self._messenger.cancel(scheduled_id, self._user)

    async def scheduled(self) -> list[Mapping[str, Any]]:
        return await self._messenger.scheduled(self._user, self._skill)


class UserFiles:
    def __init__(self, store: FileStore, user_id: int) -> None:
        self._store = store
        self._user = user_id

    async def text(self, file_id: str) -> str:
        return await self._store.text(self._user, file_id)

    async def recent(self, limit: int = 5) -> list[Mapping[str, Any]]:
        return await self._store.recent(self._user, limit)


def zone(name: str | None) -> ZoneInfo:
    """The user's time zone, or UTC when unset or unknown."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


class ContextFactory:
    """Builds each call's ``SkillContext`` from the skill's granted capabilities."""

    def __init__(self, repository: SkillStore, messenger: Messenger | None, files: FileStore | None,
                 session: aiohttp.ClientSession | None) -> None:
        self.repository = repository
        self.messenger = messenger
        self.files = files
        self.session = session

    def build(self, *, skill: str, actor: Actor, conversation_id: str, channel: str, config: Mapping[str, Any],
              capabilities: Iterable[str], now: datetime | None = None) -> SkillContext:
        granted = set(capabilities)
        tz = zone(actor.timezone)
        storage: Any = KeyValue(self.repository, skill, actor.user_id) if "storage" in granted else Denied(
            "storage", skill)
        http: Any = Web(self.session) if "network" in granted and self.session else Denied("network", skill)
        messages: Any = (ConversationMessages(self.messenger, conversation_id, actor.user_id, skill)
                         if "messages" in granted and self.messenger else Denied("messages", skill))
        files: Any = UserFiles(self.files, actor.user_id) if "files" in granted and self.files else Denied(
            "files", skill)
        moment = (now or utcnow()).astimezone(tz)
        return SkillContext(
            user=SkillUser(actor.user_id, actor.name, str(tz), frozenset(actor.roles)),
            conversation=SkillConversation(conversation_id, channel),
            config=dict(config), storage=storage, http=http, messages=messages, files=files, tz=tz, now=moment,
            skill=skill,
        )
