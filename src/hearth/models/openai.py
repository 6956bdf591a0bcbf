"""The OpenAI chat-completions API (``POST /v1/chat/completions``, SSE), which vLLM, llama.cpp,
LM Studio, LocalAI, TGI and the hosted APIs all speak.

OpenAI streams tool calls as fragments: the first names the call (``id``, ``function.name``), the
following ones carry pieces of ``function.arguments``, a JSON *string*, each keyed by ``index`` so
that parallel calls interleave. hearth's contract is whole calls, so they are assembled here and
emitted when ``finish_reason`` arrives. Usage comes in a chunk of its own after that (with
``stream_options.include_usage``), which is why the final chunk waits for ``[DONE]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import urlsplit

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
    ToolResultContent,
    Usage,
    UserContent,
)

__all__ = ["OpenAIProvider", "api_base"]


def api_base(url: str) -> str:
    """The API root: ``http://h:8000`` and ``http://h:8000/v1`` both mean ``http://h:8000/v1``."""
    base = url.rstrip("/")
    return base if urlsplit(base).path.endswith("/v1") else f"{base}/v1"


class OpenAIProvider:
    """A ``ChatProvider`` for one OpenAI-compatible server."""

    def __init__(
        self, endpoint: EndpointSettings, *, connect_timeout: float = 5.0, pool_size: int = 100,
    ) -> None:
        self.endpoint = endpoint
        self._http = HTTPClient(endpoint, connect_timeout=connect_timeout, pool_size=pool_size)
        base = api_base(endpoint.url)
        self._chat_url = f"{base}/chat/completions"
        self._models_url = f"{base}/models"

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        """The ``/chat/completions`` body for ``request``."""
        body: dict[str, Any] = {
            "model": request.model or self.endpoint.model,
            "messages": [_message(m) for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = tools_payload(request.tools)
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        model = request.model or self.endpoint.model
        decoder = _Decoder(self.endpoint.name)
        async with self._http.post(self._chat_url, dumps(self.payload(request)), model=model) as resp:
            async for chunk in decode_lines(resp, decoder, self.endpoint, unfinished="no [DONE]"):
                yield chunk

    async def probe(self) -> ProbeResult:
        result = await self._http.probe(self._models_url, _model_ids)
        if not result.ok:
            return result
        model = self.endpoint.model
        if _bare(model) in {_bare(m) for m in result.models}:
            return dataclasses.replace(result, detail=f"reachable; model {model!r} is served")
        served = ", ".join(result.models[:10]) or "none"
        return dataclasses.replace(
            result, ok=False, detail=f"reachable; model {model!r} is not served here (served: {served})")

    async def aclose(self) -> None:
        await self._http.aclose()


class _Decoder:
    """Turns the SSE lines of one completion stream into chunks, assembling tool-call fragments.

    Each ``data:`` line is decoded on its own rather than joining multi-line events: every
    OpenAI-compatible server sends one line of compact JSON per event, and some omit the blank
    line between events, which strict SSE decoding would turn into one undecodable event.
    """

    __slots__ = ("calls", "done", "finish", "had_calls", "name", "usage")

    def __init__(self, name: str) -> None:
        self.name = name
        self.done = False
        self.finish: str | None = None
        self.usage: Usage | None = None
        self.had_calls = False
        self.calls: dict[int, list[Any]] = {}  # index -> [id, name, argument pieces]

    def feed(self, line: bytes) -> list[ChatChunk]:
        if not line.startswith(b"data:"):
            return []  # blank separators, ": keep-alive" comments, event:/id:/retry: fields
        payload = line[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            final = self._flush()
            reason = self.finish or "stop"
            if self.had_calls and reason == "stop":
                reason = "tool_calls"
            final.append(ChatChunk(done=True, finish_reason=reason, usage=self.usage, endpoint=self.name))
            return final
        if not payload:
            return []
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise ModelError(f"{self.name}: undecodable event from the server: {payload[:120]!r}") from exc
        if type(obj) is not dict:
            raise ModelError(f"{self.name}: unexpected event from the server: {payload[:120]!r}")
        if error := obj.get("error"):
            message = error.get("message") if isinstance(error, dict) else error
            raise ModelUnavailable(f"{self.name}: the server failed mid-stream: {str(message)[:300]}")
        try:
            return self._chunks(obj)
        except (AttributeError, TypeError, KeyError) as exc:  # a field of the wrong shape
            raise ModelError(f"{self.name}: unexpected event from the server: {payload[:120]!r}") from exc

    def _chunks(self, obj: dict[str, Any]) -> list[ChatChunk]:
        if usage := obj.get("usage"):
            self.usage = Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0)
        choices = obj.get("choices")
        if not choices:
            return []
        choice = choices[0]
        chunks: list[ChatChunk] = []
        delta = choice.get("delta")
        if delta:
            if text := delta.get("content"):
                chunks.append(ChatChunk(text=text, endpoint=self.name))
            if fragments := delta.get("tool_calls"):
                self._collect(fragments)
        if reason := choice.get("finish_reason"):
            self.finish = reason
            chunks.extend(self._flush())
        return chunks

    def _collect(self, fragments: list[dict[str, Any]]) -> None:
        for fragment in fragments:
            function = fragment.get("function") or {}
            call_id = fragment.get("id")
            index = fragment.get("index")
            if index is None:  # some proxies omit it: a new id starts a new call
                index = len(self.calls) if call_id or not self.calls else max(self.calls)
            slot = self.calls.get(index)
            if slot is None:
                slot = self.calls[index] = [call_id, function.get("name") or "", []]
            else:
                slot[0] = slot[0] or call_id
                slot[1] = slot[1] or function.get("name") or ""
            arguments = function.get("arguments")
            if arguments:
                slot[2].append(arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode())

    def _flush(self) -> list[ChatChunk]:
        if not self.calls:
            return []
        calls = tuple(make_call(call_id, name, "".join(pieces))
                      for _, (call_id, name, pieces) in sorted(self.calls.items()))
        self.calls.clear()
        self.had_calls = True
        return [ChatChunk(tool_calls=calls, endpoint=self.name)]


def _message(message: ModelMessage) -> dict[str, Any]:
    if isinstance(message, SystemContent | UserContent):
        return {"role": message.role, "content": message.text}
    if isinstance(message, AssistantContent):
        if not message.tool_calls:
            return {"role": "assistant", "content": message.text}
        return {"role": "assistant", "content": message.text or None, "tool_calls": [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": dumps(c.arguments).decode()}}
            for c in message.tool_calls]}
    if isinstance(message, ToolResultContent):
        return {"role": "tool", "tool_call_id": message.call_id, "content": message.text}
    raise TypeError(f"not a model message: {message!r}")


def _model_ids(body: Any) -> list[str]:
    return [str(m["id"]) for m in body["data"]]


def _bare(name: str) -> str:
    # Ollama's OpenAI endpoint lists "llama3.2:latest" for a model configured as "llama3.2".
    return name.removesuffix(":latest")
