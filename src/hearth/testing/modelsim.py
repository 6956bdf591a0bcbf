"""A scripted model server that speaks Ollama's and OpenAI's real wire protocols over a real socket.

hearth's tests and benchmarks need a model server that can be told exactly what to do — answer
these tokens, call this tool, wait 300 ms before the first byte, fail with 429, drop the connection
after two chunks — and that cannot be told apart from the real thing by a client: the official
``ollama`` and ``openai`` SDKs parse its answers (the tests in ``tests/models`` prove it).

* Ollama: ``POST /api/chat`` (NDJSON stream, or one JSON object with ``"stream": false``),
  ``GET /api/tags``, ``GET /api/version``, ``POST /api/show``.
* OpenAI: ``POST /v1/chat/completions`` (SSE with ``"stream": true``, including the usage chunk
  when ``stream_options.include_usage``; a ``chat.completion`` object otherwise), ``GET /v1/models``.

Each chat request takes the next scripted ``Turn`` (``sim.script(...)``); with none queued,
``sim.responder`` answers, or the default echo (``"You said: ..."``). Like the real servers, an
unknown model gets a 404, and on the OpenAI side a prompt longer than ``context_length`` (counted in
words) gets a 400 ``context_length_exceeded``.

Run ``python -m hearth.testing.modelsim --help`` for a standalone server (used by ``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import secrets
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal

import orjson
from aiohttp import web
from multidict import CIMultiDict

__all__ = ["ModelSimulator", "SimRequest", "Turn", "main"]

Protocol = Literal["ollama", "openai"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One scripted answer to one chat request.

    ``tokens`` are the exact content chunks (they override ``text``, which is split into words).
    ``ttft`` is the delay before the response starts (no headers either), ``gap`` the pause between
    chunks. ``status``/``error`` answer with that protocol's error body instead; ``retry_after`` sets
    the ``Retry-After`` header (seconds, or a string sent as is, e.g. an HTTP-date). ``hang`` never
    answers. ``drop_after`` closes the TCP connection after that many content chunks;
    ``stream_error_after`` sends the protocol's in-stream error object after that many and ends.
    """

    text: str | None = None
    tokens: Sequence[str] | None = None
    tool_calls: Sequence[tuple[str, Mapping[str, Any]]] = ()
    ttft: float = 0.0
    gap: float = 0.0
    status: int = 200
    error: str | None = None
    retry_after: float | str | None = None
    hang: bool = False
    drop_after: int | None = None
    stream_error_after: int | None = None
    usage: tuple[int, int] | None = None
    finish_reason: str | None = None

    def chunks(self) -> list[str]:
        if self.tokens is not None:
            return list(self.tokens)
        return word_tokens(self.text or "")

    @property
    def reason(self) -> str:
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")


@dataclass(frozen=True, slots=True)
class SimRequest:
    """A chat request as the simulator received it; ``headers`` look up case-insensitively."""

    protocol: Protocol
    path: str
    body: dict[str, Any]
    headers: Mapping[str, str] = field(repr=False)

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.body.get("messages") or []):
            if isinstance(message, dict) and message.get("role") == "user":
                return content_text(message.get("content"))
        return ""


Responder = Callable[[SimRequest], Turn]


def word_tokens(text: str) -> list[str]:
    """``"a b c"`` -> ``["a", " b", " c"]``: chunks that join back to the text, like a tokenizer's."""
    words = text.split(" ")
    return [words[0], *(" " + w for w in words[1:])] if text else []


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def echo(request: SimRequest) -> Turn:
    return Turn(text=f"You said: {request.last_user_text}")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _tag(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _prompt_words(body: Mapping[str, Any]) -> int:
    return sum(len(content_text(m.get("content")).split()) for m in body.get("messages") or []
               if isinstance(m, dict))


class ModelSimulator:
    """``async with ModelSimulator() as sim:`` serves on ``sim.url`` until the block ends."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Sequence[str] = ("llama3.2",),
        context_length: int = 8192,
        responder: Responder | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.models = tuple(models)
        self.context_length = context_length
        self.responder = responder
        self.requests: list[SimRequest] = []
        self.active = 0
        self.max_active = 0
        self._queue: deque[Turn] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    def script(self, *turns: Turn) -> None:
        """Queue answers; each chat request (either protocol) takes the next one."""
        self._queue.extend(turns)

    def reset(self) -> None:
        self._queue.clear()
        self.requests.clear()
        self.max_active = self.active

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/chat", self._ollama_chat)
        app.router.add_get("/api/tags", self._ollama_tags)
        app.router.add_get("/api/version", self._ollama_version)
        app.router.add_post("/api/show", self._ollama_show)
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_get("/v1/models", self._openai_models)
        # handler_cancellation: a client that gives up cancels its handler (hang, ttft, slow streams).
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site.port

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=0.5)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ModelSimulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- chat --------------------------------------------------------------------------------------

    async def _ollama_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "ollama")

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._chat(request, "openai")

    async def _chat(self, request: web.Request, protocol: Protocol) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(protocol, 400, "invalid JSON in the request body")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(protocol, 400, "the request needs a 'messages' list")
        record = SimRequest(protocol, request.path, body, CIMultiDict(request.headers))
        self.requests.append(record)
        model = str(body.get("model") or "")
        if _tag(model) not in {_tag(m) for m in self.models}:
            if protocol == "ollama":
                return _error(protocol, 404, f'model "{model}" not found, try pulling it first')
            return _error(protocol, 404, f"The model `{model}` does not exist.", code="model_not_found")
        if protocol == "openai":
            wanted = _prompt_words(body) + int(body.get("max_tokens") or 0)
            if wanted > self.context_length:
                return _error(protocol, 400, f"This model's maximum context length is {self.context_length} "
                              f"tokens. However, you requested {wanted} tokens. Please reduce the length "
                              "of the messages or completion.", code="context_length_exceeded")
        turn = self._next_turn(record)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if turn.ttft > 0:
                await asyncio.sleep(turn.ttft)
            if turn.hang:
                await asyncio.get_running_loop().create_future()
            if turn.status != 200:
                return _error(protocol, turn.status, turn.error, retry_after=turn.retry_after)
            reply = _Reply(turn, model, body)
            if protocol == "ollama":
                if body.get("stream", True) is False:
                    return web.Response(body=reply.ollama_whole(), content_type="application/json")
                return await _send(request, reply, reply.ollama_stream(), "application/x-ndjson")
            if not body.get("stream"):
                return web.Response(body=reply.openai_whole(), content_type="application/json")
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await _send(request, reply, reply.openai_stream(include_usage),
                               "text/event-stream", charset="utf-8")
        finally:
            self.active -= 1
            if task is not None:
                self._tasks.discard(task)

    def _next_turn(self, request: SimRequest) -> Turn:
        if self._queue:
            return self._queue.popleft()
        if self.responder is not None:
            return self.responder(request)
        return echo(request)

    # --- model listings ----------------------------------------------------------------------------

    async def _ollama_tags(self, request: web.Request) -> web.Response:
        models = [{
            "name": _tag(m), "model": _tag(m), "modified_at": "2025-01-01T00:00:00Z", "size": 2019393189,
            "digest": secrets.token_hex(32),
            "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                        "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
        } for m in self.models]
        return web.Response(body=orjson.dumps({"models": models}), content_type="application/json")

    async def _ollama_version(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"version":"0.12.6"}', content_type="application/json")

    async def _ollama_show(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error("ollama", 400, "invalid JSON in the request body")
        name = str(body.get("model") or body.get("name") or "")
        if _tag(name) not in {_tag(m) for m in self.models}:
            return _error("ollama", 404, f"model '{name}' not found")
        return web.Response(content_type="application/json", body=orjson.dumps({
            "license": "", "modelfile": f"FROM {name}\n", "parameters": "stop \"<|eot_id|>\"",
            "template": "{{ .Prompt }}",
            "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                        "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
            "model_info": {"general.architecture": "llama", "general.parameter_count": 3212749888,
                           "llama.context_length": self.context_length, "llama.embedding_length": 3072},
            "capabilities": ["completion", "tools"], "modified_at": "2025-01-01T00:00:00Z",
        }))

    async def _openai_models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        data = [{"id": m, "object": "model", "created": created, "owned_by": "modelsim"} for m in self.models]
        return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")


# --- the wire formats ------------------------------------------------------------------------------------

_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                       404: "invalid_request_error", 429: "requests"}
_OPENAI_ERROR_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}


def _error(
    protocol: Protocol, status: int, message: str | None, *,
    code: str | None = None, retry_after: float | str | None = None,
) -> web.Response:
    text = message or HTTPStatus(status).phrase.lower()
    payload: dict[str, Any]
    if protocol == "ollama":
        payload = {"error": text}
    else:
        payload = {"error": {"message": text, "type": _OPENAI_ERROR_TYPES.get(status, "server_error"),
                             "param": None, "code": code or _OPENAI_ERROR_CODES.get(status)}}
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json",
                        headers=headers)


@dataclass(slots=True)
class _Stream:
    """A response body: content pieces (what ``drop_after``/``stream_error_after`` count), then a tail."""

    head: list[bytes]
    pieces: list[bytes]
    tail: list[bytes]
    error: bytes


async def _send(
    request: web.Request, reply: _Reply, stream: _Stream, content_type: str, charset: str | None = None,
) -> web.StreamResponse:
    turn = reply.turn
    response = web.StreamResponse(headers={"Cache-Control": "no-cache"})
    response.content_type = content_type
    if charset:
        response.charset = charset
    await response.prepare(request)
    for data in stream.head:
        await response.write(data)
    for i, data in enumerate(stream.pieces):
        if turn.drop_after is not None and i >= turn.drop_after:
            return _drop(request, response)
        if turn.stream_error_after is not None and i >= turn.stream_error_after:
            await response.write(stream.error)
            await response.write_eof()
            return response
        if i and turn.gap > 0:
            await asyncio.sleep(turn.gap)
        await response.write(data)
    if turn.drop_after is not None and turn.drop_after >= len(stream.pieces):
        return _drop(request, response)
    if turn.stream_error_after is not None:
        await response.write(stream.error)
        await response.write_eof()
        return response
    for data in stream.tail:
        await response.write(data)
    await response.write_eof()
    return response


def _drop(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    # Close the socket mid-body: the client sees a chunked body that never ends properly.
    if request.transport is not None:
        request.transport.close()
    raise asyncio.CancelledError


class _Reply:
    """The bytes of one answer in either protocol, built once per request."""

    def __init__(self, turn: Turn, model: str, body: Mapping[str, Any]) -> None:
        self.turn = turn
        self.model = model
        self.tokens = turn.chunks()
        self.calls = [(f"call_{secrets.token_hex(6)}", name, args) for name, args in turn.tool_calls]
        self.usage = turn.usage or (max(_prompt_words(body), 1), len(self.tokens) + len(self.calls))
        self.error = turn.error or "model runner has unexpectedly stopped"

    # Ollama --------------------------------------------------------------------------------------------

    def _ollama_calls(self) -> list[dict[str, Any]]:
        return [{"function": {"index": i, "name": name, "arguments": args}}
                for i, (_, name, args) in enumerate(self.calls)]

    def _ollama_final(self, created: str, message: dict[str, Any]) -> dict[str, Any]:
        prompt, completion = self.usage
        # Ollama reports "stop" after tool calls too; only "length" differs.
        reason = "stop" if self.turn.reason == "tool_calls" else self.turn.reason
        return {"model": self.model, "created_at": created, "message": message, "done": True,
                "done_reason": reason, "total_duration": 123456789, "load_duration": 1234567,
                "prompt_eval_count": prompt, "prompt_eval_duration": 2345678,
                "eval_count": completion, "eval_duration": 34567890}

    def ollama_stream(self) -> _Stream:
        created = _now_iso()
        model = self.model
        pieces = [orjson.dumps({"model": model, "created_at": created,
                                "message": {"role": "assistant", "content": token}, "done": False}) + b"\n"
                  for token in self.tokens]
        if self.calls:
            pieces.append(orjson.dumps({
                "model": model, "created_at": created,
                "message": {"role": "assistant", "content": "", "tool_calls": self._ollama_calls()},
                "done": False}) + b"\n")
        final = self._ollama_final(created, {"role": "assistant", "content": ""})
        return _Stream([], pieces, [orjson.dumps(final) + b"\n"], orjson.dumps({"error": self.error}) + b"\n")

    def ollama_whole(self) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.tokens)}
        if self.calls:
            message["tool_calls"] = self._ollama_calls()
        return orjson.dumps(self._ollama_final(_now_iso(), message))

    # OpenAI --------------------------------------------------------------------------------------------

    def _openai_usage(self) -> dict[str, int]:
        prompt, completion = self.usage
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def openai_stream(self, include_usage: bool) -> _Stream:
        base: dict[str, Any] = {"id": f"chatcmpl-{secrets.token_hex(12)}", "object": "chat.completion.chunk",
                                "created": int(time.time()), "model": self.model,
                                "system_fingerprint": "fp_modelsim"}
        if include_usage:
            base["usage"] = None

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n"

        head = [event({"role": "assistant", "content": "", "refusal": None})]
        pieces = [event({"content": token}) for token in self.tokens]
        for index, (call_id, name, args) in enumerate(self.calls):
            pieces.append(event({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                                 "function": {"name": name, "arguments": ""}}]}))
            for part in _split(orjson.dumps(args).decode()):
                pieces.append(event({"tool_calls": [{"index": index, "function": {"arguments": part}}]}))
        tail = [event({}, self.turn.reason)]
        if include_usage:
            tail.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": self._openai_usage()}) + b"\n\n")
        tail.append(b"data: [DONE]\n\n")
        error = {"error": {"message": self.error, "type": "server_error", "param": None, "code": None}}
        return _Stream(head, pieces, tail, b"data: " + orjson.dumps(error) + b"\n\n")

    def openai_whole(self) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.tokens) or None, "refusal": None}
        if self.calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function",
                 "function": {"name": name, "arguments": orjson.dumps(args).decode()}}
                for call_id, name, args in self.calls]
        return orjson.dumps({
            "id": f"chatcmpl-{secrets.token_hex(12)}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model, "system_fingerprint": "fp_modelsim",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": self.turn.reason}],
            "usage": self._openai_usage(),
        })


def _split(text: str) -> list[str]:
    """At least two pieces, like a model streaming a JSON string a few tokens at a time."""
    step = max(len(text) // 3, 1)
    return [text[i:i + step] for i in range(0, len(text), step)]


# --- command line ----------------------------------------------------------------------------------------


def fixed_length(tokens: int, ttft: float, gap: float) -> Responder:
    """The echo, padded or trimmed to exactly ``tokens`` chunks; with ``tokens`` 0, the echo as it is."""
    def respond(request: SimRequest) -> Turn:
        words = word_tokens(f"You said: {request.last_user_text}")
        if tokens > 0:
            words = list(itertools.islice(itertools.chain(words, itertools.repeat(" more")), tokens))
        return Turn(tokens=words, ttft=ttft, gap=gap)
    return respond


async def _serve(args: argparse.Namespace) -> None:
    models = [m for spec in args.models for m in spec.split(",") if m]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    responder = fixed_length(args.tokens, args.ttft, args.gap)
    async with ModelSimulator(args.host, args.port, models=models, responder=responder) as sim:
        print(f"modelsim listening on {sim.url}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hearth.testing.modelsim",
        description="A scripted Ollama/OpenAI-compatible model server that echoes what it is told.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=11434, help="port (0 picks a free one; default 11434)")
    parser.add_argument("--ttft", type=float, default=0.05, help="seconds before the first byte (default 0.05)")
    parser.add_argument("--gap", type=float, default=0.002, help="seconds between chunks (default 0.002)")
    parser.add_argument("--tokens", type=int, default=5, help="chunks per reply (default 5; 0: the echo as it is)")
    parser.add_argument("--models", nargs="+", default=["llama3.2"], help="models served (default llama3.2)")
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
