"""Small shared pieces of the provider tests: a request, a stream collector, the key that must not leak."""

from __future__ import annotations

from hearth.models.base import ChatProvider
from hearth.types import ChatChunk, ChatRequest, UserContent

SECRET = "sk-test-DO-NOT-LEAK-7f3a9c"


def ask(text: str = "hello there", **kw: object) -> ChatRequest:
    return ChatRequest(messages=(UserContent(text),), **kw)  # type: ignore[arg-type]


async def collect(provider: ChatProvider, request: ChatRequest | None = None) -> list[ChatChunk]:
    return [chunk async for chunk in provider.stream(request or ask())]


async def drain(provider: ChatProvider, texts: list[str]) -> None:
    """Stream a reply, keeping the text that arrived before any failure."""
    async for chunk in provider.stream(ask()):
        texts.append(chunk.text)
