"""Ollama's native API (``POST /api/chat``, NDJSON stream), for the most common self-hosted server.

The native API rather than Ollama's OpenAI-compatible one because only the native one takes
``options.num_ctx``: without it Ollama silently truncates the prompt to its default window, and
hearth's memory budget (``AI_MODEL_CONTEXT_TOKENS``) would be a lie. Ollama sends tool calls whole,
with ``arguments`` already an object, and does not name them, so ids are made here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from hearth.errors import ModelError, ModelUnavailable
from hearth.models._http import HTTPClient, decode_lines, dumps, make_call, tools_payload
from hearth.models.base import ProbeResult
from hearth.settings import EndpointSettings
from hearth.types import (
    AssistantContent,
    ChatChunk,
    ChatRequest,
    ModelMessage,
    SystemContent,
    ToolCall,
    ToolResultContent,
    Usage,
    UserContent,
)

__all__ = ["OllamaProvider"]


class OllamaProvider:
    """A ``ChatProvider`` for one Ollama server (or a proxy in front of it)."""

    def __init__(
        self,
        endpoint: EndpointSettings,
        *,
        connect_timeout: float = 5.0,
        context_tokens: int | None = None,
        pool_size: int = 100,
    ) -> None:
        self.endpoint = endpoint
        self.context_tokens = context_tokens
        self._http = HTTPClient(endpoint, connect_timeout=connect_timeout, pool_size=pool_size)
        base = endpoint.url.rstrip("/")
        self._chat_url = f"{base}/api/chat"
        self._tags_url = f"{base}/api/tags"

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        """The ``/api/chat`` body for ``request``."""
        body: dict[str, Any] = {
            "model": request.model or self.endpoint.model,
            "messages": [_message(m) for m in request.messages],
            "stream": True,
        }
        if request.tools:
            body["tools"] = tools_payload(request.tools)
        options: dict[str, Any] = {}
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if self.context_tokens is not None:
            options["num_ctx"] = self.context_tokens
        if options:
            body["options"] = options
        return body

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        model = request.model or self.endpoint.model
        decoder = _Decoder(self.endpoint.name)
        async with self._http.post(self._chat_url, dumps(self.payload(request)), model=model) as resp:
            async for chunk in decode_lines(resp, decoder, self.endpoint, unfinished="no final message"):
                yield chunk

    async def probe(self) -> ProbeResult:
        result = await self._http.probe(self._tags_url, _tag_names)
        if not result.ok:
            return result
        model = self.endpoint.model
        if _tag(model) in {_tag(m) for m in result.models}:
            return dataclasses.replace(result, detail=f"reachable; model {model!r} is available")
        return dataclasses.replace(
            result, ok=False, detail=f"reachable; model {model!r} is not pulled: run `ollama pull {model}`")

    async def aclose(self) -> None:
        await self._http.aclose()


class _Decoder:
    """Turns NDJSON lines of one ``/api/chat`` stream into chunks."""

    __slots__ = ("done", "had_calls", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.done = False
        self.had_calls = False

    def feed(self, line: bytes) -> list[ChatChunk]:
        if not line or line.isspace():
            return []
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ModelError(f"{self.name}: undecodable line from the server: {line[:120]!r}") from exc
        if type(obj) is not dict:
            raise ModelError(f"{self.name}: unexpected line from the server: {line[:120]!r}")
        if error := obj.get("error"):
            raise ModelUnavailable(f"{self.name}: the server failed mid-stream: {str(error)[:300]}")
        try:
            return self._chunks(obj)
        except (AttributeError, TypeError) as exc:  # a field of the wrong shape
            raise ModelError(f"{self.name}: unexpected line from the server: {line[:120]!r}") from exc

    def _chunks(self, obj: dict[str, Any]) -> list[ChatChunk]:
        chunks: list[ChatChunk] = []
        message = obj.get("message")
        if message:
            if text := message.get("content"):
                chunks.append(ChatChunk(text=text, endpoint=self.name))
            if calls := message.get("tool_calls"):
                self.had_calls = True
                chunks.append(ChatChunk(tool_calls=tuple(_call(c) for c in calls), endpoint=self.name))
        if obj.get("done"):
            self.done = True
            reason = obj.get("done_reason") or "stop"
            if self.had_calls and reason == "stop":
                reason = "tool_calls"  # Ollama says "stop" after tool calls; hearth's contract says which
            prompt, completion = obj.get("prompt_eval_count"), obj.get("eval_count")
            usage = None if prompt is None and completion is None else Usage(prompt or 0, completion or 0)
            chunks.append(ChatChunk(done=True, finish_reason=reason, usage=usage, endpoint=self.name))
        return chunks


def _call(raw: dict[str, Any]) -> ToolCall:
    function = raw.get("function") or {}
    return make_call(raw.get("id"), function.get("name"), function.get("arguments"))


def _message(message: ModelMessage) -> dict[str, Any]:
    if isinstance(message, SystemContent | UserContent):
        return {"role": message.role, "content": message.text}
    if isinstance(message, AssistantContent):
        out: dict[str, Any] = {"role": "assistant", "content": message.text}
        if message.tool_calls:
            out["tool_calls"] = [{"function": {"name": c.name, "arguments": c.arguments}}
                                 for c in message.tool_calls]
        return out
    if isinstance(message, ToolResultContent):
        return {"role": "tool", "content": message.text, "tool_name": message.name}
    raise TypeError(f"not a model message: {message!r}")


def _tag_names(body: Any) -> list[str]:
    return [str(m.get("name") or m.get("model")) for m in body["models"]]


def _tag(name: str) -> str:
    """``llama3.2`` and ``llama3.2:latest`` are the same model to Ollama."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
