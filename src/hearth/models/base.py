"""The seam between the router and a model server: one protocol, one implementation per wire format.

A provider speaks one endpoint's wire protocol (Ollama's ``/api/chat`` NDJSON, or OpenAI's
``/v1/chat/completions`` SSE) and translates hearth's typed ``ChatRequest``/``ChatChunk`` to and from
it. It maps every transport and HTTP failure onto ``hearth.errors`` (``ModelUnavailable`` for refused,
reset, connect timeout and 5xx; ``RateLimited`` with ``retry_after`` for 429; ``ContextTooLong``;
``ModelError`` for other rejections). Retries, fail-over, concurrency limits, first-token and total
timeouts are the router's job, not the provider's.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from hearth.settings import EndpointSettings
from hearth.types import ChatChunk, ChatRequest


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What a cheap health probe of an endpoint found."""

    ok: bool
    detail: str
    models: tuple[str, ...] = ()
    latency_ms: float = 0.0


class ChatProvider(Protocol):
    """One model endpoint."""

    endpoint: EndpointSettings

    def stream(self, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        """Send ``request`` and yield the answer as it arrives; the last chunk has ``done=True``."""
        ...

    async def probe(self) -> ProbeResult:
        """Check that the server answers and serves the configured model; never raises."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
