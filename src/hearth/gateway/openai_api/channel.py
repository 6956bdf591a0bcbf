"""``POST /v1/chat/completions`` and ``GET /v1/models``, as OpenAI's clients expect them.

The model ``hearth`` is the assistant itself: the conversation is kept on the server (per user, and per
``X-Hearth-Conversation`` header or ``user`` field), so only the last user message of the request is
new input; earlier messages a client resends are already in hearth's memory. Skills and tools apply as
on every channel. Responses carry ``X-Hearth-Conversation`` with the conversation's id.

An ``Idempotency-Key`` header makes a retried request return the stored answer instead of asking again.
Errors use OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``); once a stream has
started, an error arrives as an ``error`` event, which the official SDKs raise as ``APIError``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from hearth.errors import HearthError, InvalidRequest, NotFound, Unauthenticated
from hearth.gateway.base import Authenticator, Inbox, Submission, bearer_token
from hearth.types import Envelope, Reply

CHANNEL = "openai"
MODEL_ID = "hearth"
MAX_BODY = 1_048_576
MAX_REF = 128
_CONVERSATION_ID = re.compile(r"^[0-9a-f]{32}$")


def _error(status: int, message: str, *, code: str, kind: str = "invalid_request_error",
           param: str | None = None, headers: dict[str, str] | None = None) -> Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


# HTTP status for each error code hearth produces; anything else from the model side is a 502.
_STATUS = {
    "unauthenticated": 401, "forbidden": 403, "not_found": 404, "invalid": 400, "too_large": 413,
    "context_too_long": 400, "model_unavailable": 503, "model_busy": 503, "rate_limited": 503,
    "model_timeout": 504, "storage_error": 500, "internal": 500, "interrupted": 500, "not_ready": 503,
}
_OPENAI_CODES = {"unauthenticated": "invalid_api_key", "context_too_long": "context_length_exceeded"}


def _failure(code: str, message: str) -> Response:
    status = _STATUS.get(code, 400 if code.startswith(("bad_", "invalid", "missing", "unsupported")) else 502)
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 403:
        kind = "permission_error"
    headers = {"Retry-After": "5"} if status in (503, 504) else None
    return _error(status, message, code=_OPENAI_CODES.get(code, code), kind=kind, headers=headers)


def _error_for(exc: HearthError) -> Response:
    if isinstance(exc, Unauthenticated):
        return _failure(exc.code, f"Invalid API key: {exc}")
    if isinstance(exc, InvalidRequest) and not isinstance(exc, NotFound) and exc.code not in _STATUS:
        return _error(400, exc.user_message, code=exc.code)
    return _failure(exc.code, exc.user_message)


class OpenAIChannel:
    def __init__(self, inbox: Inbox, auth: Authenticator) -> None:
        self._inbox = inbox
        self._auth = auth

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/models/{model}", self.model, methods=["GET"]),
            Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
        ]

    async def models(self, request: Request) -> Response:
        try:
            await self._auth.authenticate(bearer_token(request.headers.get("authorization")), channel=CHANNEL)
        except HearthError as exc:
            return _error_for(exc)
        return Response(orjson.dumps({"object": "list", "data": [_model_card()]}), media_type="application/json")

    async def model(self, request: Request) -> Response:
        try:
            await self._auth.authenticate(bearer_token(request.headers.get("authorization")), channel=CHANNEL)
        except HearthError as exc:
            return _error_for(exc)
        if request.path_params["model"] != MODEL_ID:
            return _error(404, f"The model '{request.path_params['model']}' does not exist", code="model_not_found")
        return Response(orjson.dumps(_model_card()), media_type="application/json")

    async def _submit(self, envelope: Envelope, ref: str) -> Submission:
        """The header names a conversation, or is the id hearth returned in ``X-Hearth-Conversation``: a
        client that sends back what it was given continues that conversation."""
        if _CONVERSATION_ID.match(ref):
            try:
                return await self._inbox.submit(replace(envelope, conversation=ref))
            except NotFound:
                pass  # not one of this user's conversations: a name that looks like an id
        return await self._inbox.submit(envelope, external_ref=ref)

    async def chat_completions(self, request: Request) -> Response:
        try:
            actor = await self._auth.authenticate(bearer_token(request.headers.get("authorization")),
                                                  channel=CHANNEL)
            body = await _read_json(request)
            text, stream, user = _parse_chat(body)
            if body.get("model") != MODEL_ID:
                return _error(404, f"The model '{body.get('model')}' does not exist; use '{MODEL_ID}'",
                              code="model_not_found", param="model")
            ref = request.headers.get("x-hearth-conversation") or (f"user:{user}" if user else "default")
            if len(ref) > MAX_REF:
                raise InvalidRequest(f"conversation name longer than {MAX_REF} characters", code="bad_conversation")
            key = request.headers.get("idempotency-key") or uuid.uuid4().hex
            envelope = Envelope(id=key[:MAX_REF], channel=CHANNEL, sender=actor, text=text)
            submission = await self._submit(envelope, ref)
        except HearthError as exc:
            return _error_for(exc)
        completion_id = f"chatcmpl-{submission.message_id}-{uuid.uuid4().hex[:8]}"
        headers = {"X-Hearth-Conversation": submission.conversation}
        if stream:
            return StreamingResponse(_sse(submission.replies(), completion_id), media_type="text/event-stream",
                                     headers={**headers, "Cache-Control": "no-cache"})
        final: Reply | None = None
        async for reply in submission.replies():
            if reply.final:
                final = reply
        assert final is not None
        if final.error is not None:
            return _failure(final.error.code, final.error.message)
        payload = {
            "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": MODEL_ID,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": final.text, "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
        }
        return Response(orjson.dumps(payload), media_type="application/json", headers=headers)


async def _sse(replies: AsyncIterator[Reply], completion_id: str) -> AsyncIterator[bytes]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return b"data: " + orjson.dumps(data) + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    async for reply in replies:
        if not reply.final:
            yield chunk({"content": reply.text})
        elif reply.error is not None:
            error = {"error": {"message": reply.error.message, "type": "server_error", "param": None,
                               "code": reply.error.code}}
            yield b"data: " + orjson.dumps(error) + b"\n\n"
        else:
            yield chunk({}, "stop")
    yield b"data: [DONE]\n\n"


def _model_card() -> dict[str, Any]:
    return {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "hearth"}


async def _read_json(request: Request) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
        raise InvalidRequest(f"request body larger than {MAX_BODY} bytes", code="too_large")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_BODY:
            raise InvalidRequest(f"request body larger than {MAX_BODY} bytes", code="too_large")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("request body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    return data


def _parse_chat(body: dict[str, Any]) -> tuple[str, bool, str | None]:
    """The new user text, whether to stream, and the ``user`` field."""
    if not isinstance(body.get("model"), str):
        raise InvalidRequest("'model' is required", code="missing_model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", code="invalid_messages")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        raise InvalidRequest("the last message must have role 'user'", code="invalid_messages")
    content = last.get("content")
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(texts) != len(content) or not all(isinstance(t, str) for t in texts):
            raise InvalidRequest("only text content parts are supported", code="unsupported_content")
        content = "\n".join(t for t in texts if isinstance(t, str))
    if not isinstance(content, str) or not content.strip():
        raise InvalidRequest("the last message needs non-empty text content", code="invalid_messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", code="invalid_stream")
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > MAX_REF):
        raise InvalidRequest(f"'user' must be a string of at most {MAX_REF} characters", code="invalid_user")
    return content, stream, user or None
