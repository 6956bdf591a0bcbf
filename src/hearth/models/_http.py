"""What both providers share: one aiohttp session per endpoint, and the mapping of failures to hearth errors.

aiohttp rather than the vendors' httpx-based SDKs because a streamed reply is parsed on the event
loop that also serves every channel: ``bench/transport.py`` measures the CPU each costs per reply.
The session is created lazily, inside the running loop, because a provider is built by the
composition root before any loop runs. There is no read timeout: how long a model may think is the
router's decision (first-token and total timeouts), not the transport's.

Error mapping lives here so that both wire formats classify failures the same way: an operator
reading ``ModelUnavailable`` knows to look at the server, ``ModelError`` at the request or the key.
Messages name ``endpoint.name`` and never the API key or the URL's credentials.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import orjson

from hearth.errors import ContextTooLong, ModelError, ModelUnavailable, RateLimited
from hearth.models.base import ProbeResult
from hearth.settings import EndpointSettings
from hearth.types import ChatChunk, ToolCall, ToolSpec

# Phrases model servers use when a prompt does not fit (OpenAI, vLLM, llama.cpp, LM Studio, TGI).
_CONTEXT_MARKERS = (
    "context length", "context_length", "maximum context", "context window", "context size",
    "too many tokens", "prompt is too long", "exceeds the context",
)
_ERROR_BODY_LIMIT = 64 * 1024
# How long to wait for the end of a body whose final message has arrived (see finish_body).
_FINISH_TIMEOUT = 0.25
_DETAIL_LIMIT = 300


class HTTPClient:
    """The aiohttp session of one endpoint, with hearth's error mapping around each request."""

    def __init__(self, endpoint: EndpointSettings, *, connect_timeout: float, pool_size: int) -> None:
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        self.pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self.headers: dict[str, str] = {"Content-Type": "application/json", "Accept": "*/*"}
        if endpoint.api_key:
            self.headers["Authorization"] = f"Bearer {endpoint.api_key}"

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.pool_size, keepalive_timeout=30.0),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=self.connect_timeout, sock_connect=self.connect_timeout),
                raise_for_status=False,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @asynccontextmanager
    async def post(self, url: str, body: bytes, *, model: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST ``body``; yields the 200 response, raises the mapped error for anything else."""
        try:
            resp = await self.session().post(url, data=body, headers=self.headers)
        except (aiohttp.ClientError, OSError) as exc:
            raise transport_error(self.endpoint, exc) from exc
        try:
            if resp.status != 200:
                try:
                    text = (await resp.content.read(_ERROR_BODY_LIMIT)).decode("utf-8", "replace")
                except (aiohttp.ClientError, OSError):
                    text = ""
                raise status_error(self.endpoint, resp.status, text, resp.headers, model=model)
            yield resp
        finally:
            if resp.content.at_eof():
                resp.release()
            else:  # an abandoned or broken stream: the connection cannot be reused
                resp.close()

    async def get(self, url: str) -> tuple[int, bytes, float]:
        """GET for a probe, bounded by connect_timeout + 5 s: status, body and latency in ms."""
        started = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=self.connect_timeout + 5.0)
        async with self.session().get(url, headers=self.headers, timeout=timeout) as resp:
            raw = await resp.read()
        return resp.status, raw, (time.perf_counter() - started) * 1000.0

    async def probe(self, url: str, list_models: Callable[[Any], list[str]]) -> ProbeResult:
        """Fetch the server's model list and say whether the configured model is on it; never raises."""
        path = urlsplit(url).path
        try:
            status, raw, latency = await self.get(url)
        except Exception as exc:  # a probe reports, it never raises
            return ProbeResult(False, probe_failure(exc, self.connect_timeout))
        if status != 200:
            text = raw[:_ERROR_BODY_LIMIT].decode("utf-8", "replace")
            detail = error_detail(text)
            if status in (401, 403):
                sentence = f"reachable, but the server refused the API key (HTTP {status})"
            else:
                said = f": {detail}" if detail else ""
                sentence = f"reachable, but GET {path} answered HTTP {status}{said}"
            return ProbeResult(False, sentence, latency_ms=latency)
        try:
            models = tuple(list_models(orjson.loads(raw)))
        except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
            sentence = f"reachable, but GET {path} did not answer a model list"
            return ProbeResult(False, sentence, latency_ms=latency)
        return ProbeResult(True, "", models=models, latency_ms=latency)


async def finish_body(resp: aiohttp.ClientResponse) -> None:
    """Read the end of a body whose final message has arrived, so that its connection can be reused.

    Servers write the chunked-encoding terminator just after the last line, often in a packet of its
    own; a response released before it arrives cannot go back to the pool, and every reply would pay
    for a new connection (and a TLS handshake). Bounded, for servers that never end the body.
    """
    content = resp.content
    if content.at_eof():
        return
    try:
        async with asyncio.timeout(_FINISH_TIMEOUT):
            while await content.readany():
                pass
    except (TimeoutError, aiohttp.ClientError, OSError):
        pass  # the answer is complete; only the connection is lost


# --- failures ----------------------------------------------------------------------------------------


class LineDecoder(Protocol):
    """A provider's stream decoder: the chunks of one line of the body; ``done`` once the last arrived."""

    done: bool

    def feed(self, line: bytes) -> list[ChatChunk]: ...


async def decode_lines(resp: aiohttp.ClientResponse, decoder: LineDecoder, endpoint: EndpointSettings, *,
                       unfinished: str) -> AsyncIterator[ChatChunk]:
    """The chunks of a line-delimited stream (NDJSON or SSE), until the decoder is done.

    A body that ends before the decoder is done is ``ModelUnavailable`` ("stream ended early
    (``unfinished``)"); a broken connection is the transport error of ``endpoint``.
    """
    pending = b""
    try:
        # iter_any hands over whatever the socket delivered: one await per read, not per line.
        async for data in resp.content.iter_any():
            if pending:
                data = pending + data
            lines = data.split(b"\n")
            pending = lines.pop()
            for line in lines:
                chunks = decoder.feed(line)
                if decoder.done:
                    await finish_body(resp)
                for chunk in chunks:
                    yield chunk
                if decoder.done:
                    return
    except (aiohttp.ClientError, OSError) as exc:
        raise transport_error(endpoint, exc) from exc
    for chunk in decoder.feed(pending):
        yield chunk
    if not decoder.done:
        raise ModelUnavailable(f"{endpoint.name}: stream ended early ({unfinished})")


def describe_transport_error(exc: BaseException) -> str:
    """A short phrase for a connection failure, without URLs (which may carry credentials)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "could not resolve the host name"
    if isinstance(exc, aiohttp.ConnectionTimeoutError | asyncio.TimeoutError):
        return "connect timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "stream ended early (connection dropped)"
    if isinstance(exc, ConnectionResetError | aiohttp.ClientConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


def probe_failure(exc: BaseException, connect_timeout: float) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"connect timeout after {connect_timeout:g} s"
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {connect_timeout + 5.0:g} s"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return describe_transport_error(exc)
    return f"probe failed ({type(exc).__name__})"


def transport_error(endpoint: EndpointSettings, exc: BaseException) -> ModelUnavailable:
    return ModelUnavailable(f"{endpoint.name}: {describe_transport_error(exc)}")


def error_detail(text: str) -> str:
    """The server's own error message from an Ollama, OpenAI or FastAPI-style error body."""
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text.strip()[:_DETAIL_LIMIT]
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            message = str(error.get("message") or "")
            code = error.get("code") or error.get("type")
            return f"{message} ({code})"[:_DETAIL_LIMIT] if code and str(code) not in message else message
        if error is not None:
            return str(error)[:_DETAIL_LIMIT]
    return text.strip()[:_DETAIL_LIMIT]


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: either delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def status_error(
    endpoint: EndpointSettings, status: int, text: str, headers: Mapping[str, str], *, model: str,
) -> ModelError:
    detail = error_detail(text)
    name = endpoint.name
    said = f": {detail}" if detail else ""
    if status == 429:
        return RateLimited(f"{name}: rate limited (HTTP 429){said}",
                           retry_after=parse_retry_after(headers.get("Retry-After")))
    if status == 408 or status >= 500:
        return ModelUnavailable(f"{name}: server error (HTTP {status}){said}")
    if status in (401, 403):
        return ModelError(f"{name}: the model server refused the API key (HTTP {status}){said}")
    if status == 404:
        hint = f"; run `ollama pull {model}`" if endpoint.provider == "ollama" else ""
        return ModelError(f"{name}: model {model!r} was not found (HTTP 404){said}{hint}")
    if status in (400, 413, 422) and any(marker in detail.lower() for marker in _CONTEXT_MARKERS):
        return ContextTooLong(f"{name}: the prompt does not fit the model's context (HTTP {status}){said}")
    return ModelError(f"{name}: the model server rejected the request (HTTP {status}){said}")


# --- tool calls --------------------------------------------------------------------------------------


def new_call_id() -> str:
    return "call_" + secrets.token_hex(6)


def decode_arguments(raw: object) -> Mapping[str, Any]:
    """Tool arguments as an object; anything else is kept raw for the agent to report to the model."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        if not raw.strip():
            return {}
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {"_unparsed": raw}
        if isinstance(value, dict):
            return value
        return {"_unparsed": raw}
    if raw is None:
        return {}
    return {"_unparsed": orjson.dumps(raw).decode()}


def make_call(call_id: object, name: object, arguments: object) -> ToolCall:
    return ToolCall(id=str(call_id) if call_id else new_call_id(), name=str(name or ""),
                    arguments=decode_arguments(arguments))


def tools_payload(tools: tuple[ToolSpec, ...]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters}} for t in tools]


def _default(obj: object) -> object:
    if isinstance(obj, Mapping):  # ToolSpec.parameters and ToolCall.arguments may be read-only mappings
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(obj: object) -> bytes:
    return orjson.dumps(obj, default=_default)
