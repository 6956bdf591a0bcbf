"""``SkillContext``: what a handler may use besides its parameters.

Each capability is an object with a small async interface. hearth gives a skill a working object only
for the capabilities its manifest asks for and an admin granted (built-ins are trusted); the others
raise ``CapabilityDenied`` when used, with a message naming the capability to grant. For a skill
running in its own worker process the objects forward each call to hearth, which checks it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Protocol

from .skill import SkillConversation, SkillUser


class CapabilityDenied(PermissionError):
    """The skill used a capability it was not granted."""

    def __init__(self, capability: str, skill: str = "") -> None:
        who = f"skill {skill!r}" if skill else "this skill"
        super().__init__(f"{who} may not use {capability!r}: list it in the skill's permissions and have an "
                         f"admin grant it (hearth skills grant {skill or 'SKILL'} {capability})")
        self.capability = capability


class Storage(Protocol):
    """Key-value storage of JSON values, private to the skill and the user."""

    async def get(self, key: str, default: Any = None) -> Any: ...
    async def set(self, key: str, value: Any) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def keys(self, prefix: str = "") -> list[str]: ...


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    text: str

    def json(self) -> Any:
        import json

        return json.loads(self.text)


class Http(Protocol):
    """Outbound HTTP (capability ``network``)."""

    async def request(self, method: str, url: str, *, json: Any = None, data: bytes | str | None = None,
                      headers: Mapping[str, str] | None = None, params: Mapping[str, str] | None = None,
                      timeout: float = 30.0) -> HttpResponse:  # noqa: ASYNC109 - an HTTP client's own limit
        ...


class Messages(Protocol):
    """Messages to the conversation the request came from (capability ``messages``)."""

    async def send(self, text: str) -> None:
        """Send ``text`` now, on the conversation's channel."""
        ...

    async def send_later(self, text: str, *, at: datetime) -> str:
        """Send ``text`` at ``at`` (an aware datetime), even across restarts; returns an id."""
        ...

    async def cancel(self, scheduled_id: str) -> bool:
        """Cancel a message scheduled by ``send_later``; False if it was sent or unknown."""
        ...

    async def scheduled(self) -> list[Mapping[str, Any]]:
        """This skill's messages still to be sent to this user: id, text, at (aware datetime)."""
        ...


class Files(Protocol):
    """Files users sent (capability ``files``)."""

    async def text(self, file_id: str) -> str:
        """The extracted text of a file the user owns."""
        ...

    async def recent(self, limit: int = 5) -> list[Mapping[str, Any]]:
        """The user's latest files: id, name, media type, size, when."""
        ...


@dataclass(frozen=True)
class SkillContext:
    """The request's user and conversation, the skill's config, and its granted capabilities."""

    user: SkillUser
    conversation: SkillConversation
    config: Mapping[str, Any]
    storage: Storage
    http: Http
    messages: Messages
    files: Files
    tz: tzinfo
    now: datetime
    skill: str = ""
    extras: Mapping[str, Any] = field(default_factory=dict)


class Denied:
    """Stands in for a capability that was not granted: every call raises ``CapabilityDenied``."""

    def __init__(self, capability: str, skill: str) -> None:
        self._capability = capability
        self._skill = skill

    def __getattr__(self, name: str) -> Any:
        async def refuse(*args: Any, **kwargs: Any) -> Any:
            raise CapabilityDenied(self._capability, self._skill)

        return refuse
