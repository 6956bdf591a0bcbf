"""The model router: which endpoint answers, and what happens when one can't.

For each request the endpoints are tried in order (``AI_MODEL_ENDPOINT``, then ``AI_MODEL_FALLBACKS``):

* an endpoint whose circuit breaker is open is skipped (after its cool-down one trial request goes
  through; success closes the breaker, failure opens it again);
* each endpoint admits ``max_concurrency`` requests; up to ``queue_size`` more wait at most
  ``queue_timeout``; beyond that the request moves on (``ModelBusy`` if every endpoint is full);
* retryable failures (refused, reset, 5xx, 429) are retried on the same endpoint with the one
  ``RetryPolicy`` backoff (a ``Retry-After`` hint wins), other failures move to the next endpoint;
* fail-over happens only **before the first token**: once text has reached the user, an error ends
  the answer rather than restarting it elsewhere;
* the first token must arrive within ``first_token_timeout`` (also the longest pause between
  tokens), and the whole answer within ``total_timeout``, fail-over included.

Every outcome is an ``Event``: ``model.request`` (endpoint, outcome, latency), ``model.failover``,
``model.breaker``; metrics and the audit log subscribe to them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from hearth.errors import (
    ContextTooLong,
    ModelBusy,
    ModelError,
    ModelTimeout,
    ModelUnavailable,
    RateLimited,
)
from hearth.models.base import ChatProvider, ProbeResult
from hearth.settings import RouterSettings
from hearth.types import ChatChunk, ChatRequest, Event

from .ports import EventSink

BreakerState = Literal["closed", "open", "half_open"]
Clock = Callable[[], float]


class _Watchdog:
    """The first-token, between-token and total time limits of one attempt, on a single timer.

    ``asyncio.timeout`` per token would create and cancel a timer for every token of every answer;
    this arms one timer and moves its deadline by updating a number. Like ``asyncio.timeout`` it
    cancels the waiting task and turns that cancellation into an error, but only while the task waits
    for the model: the time the consumer spends between tokens is not the model's.
    """

    __slots__ = ("deadline", "fired", "first", "handle", "idle", "loop", "name", "started", "task", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop, idle: float, deadline: float, name: str) -> None:
        self.loop = loop
        self.idle = idle
        self.deadline = deadline
        self.name = name
        self.task = asyncio.current_task()
        self.started = 0.0
        self.waiting = False
        self.fired = False
        self.first = True
        self.handle: asyncio.TimerHandle | None = None

    async def next(self, source: AsyncIterator[ChatChunk]) -> ChatChunk:
        self.started = self.loop.time()
        if self.started >= self.deadline:
            raise ModelTimeout(f"{self.name}: the answer exceeded the total time limit")
        self.waiting = True
        if self.handle is None:
            self.handle = self.loop.call_at(min(self.started + self.idle, self.deadline), self._check)
        try:
            chunk = await anext(source)
        except asyncio.CancelledError:
            if not self.fired or self.task is None:
                raise
            self.task.uncancel()  # our own cancellation: report it as the timeout it is
            if self.loop.time() >= self.deadline:
                raise ModelTimeout(f"{self.name}: the answer exceeded the total time limit") from None
            what = "first token" if self.first else "next token"
            raise ModelTimeout(f"{self.name}: no {what} within {self.idle:g}s") from None
        finally:
            self.waiting = False
        self.first = False
        return chunk

    def _check(self) -> None:
        self.handle = None
        if not self.waiting:
            return  # re-armed by the next wait
        due = min(self.started + self.idle, self.deadline)
        if self.loop.time() >= due and self.task is not None:
            self.fired = True
            self.task.cancel()
        else:
            self.handle = self.loop.call_at(due, self._check)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class CircuitBreaker:
    """Consecutive-failure breaker with a single trial request after the cool-down."""

    def __init__(self, threshold: int, cooldown: float, clock: Clock = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def record_success(self) -> bool:
        """Returns True when this closed an open breaker."""
        was_open = self._opened_at is not None
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False
        return was_open

    def record_failure(self) -> bool:
        """Returns True when this opened the breaker."""
        self._failures += 1
        if self._trial_in_flight or (self._opened_at is None and self._failures >= self.threshold):
            self._trial_in_flight = False
            self._opened_at = self._clock()
            return True
        return False

    def release_trial(self) -> None:
        """A trial that ended without a verdict (e.g. busy, or a client error) frees the slot."""
        self._trial_in_flight = False


class ConcurrencyLimiter:
    """``limit`` slots and a waiting room of ``queue_size``; beyond that, or after ``timeout``, busy."""

    def __init__(self, limit: int, queue_size: int, timeout: float) -> None:
        self.limit = limit
        self.queue_size = queue_size
        self.timeout = timeout
        self._semaphore = asyncio.Semaphore(limit)
        self.in_flight = 0
        self.waiting = 0

    @asynccontextmanager
    async def slot(self, name: str) -> AsyncIterator[None]:
        if self._semaphore.locked():
            if self.waiting >= self.queue_size:
                raise ModelBusy(f"{name}: {self.in_flight} requests in flight and {self.waiting} waiting")
            self.waiting += 1
            try:
                async with asyncio.timeout(self.timeout):
                    await self._semaphore.acquire()
            except TimeoutError:
                raise ModelBusy(f"{name}: waited {self.timeout:g}s for a free slot") from None
            finally:
                self.waiting -= 1
        else:
            await self._semaphore.acquire()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._semaphore.release()


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    name: str
    breaker: BreakerState
    in_flight: int
    waiting: int


class _Endpoint:
    def __init__(self, provider: ChatProvider, settings: RouterSettings, clock: Clock) -> None:
        self.provider = provider
        self.name = provider.endpoint.name
        self.breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown, clock)
        self.limiter = ConcurrencyLimiter(settings.max_concurrency, settings.queue_size, settings.queue_timeout)


def _counts_against_breaker(exc: ModelError) -> bool:
    """Only signs that the endpoint itself is unwell open the breaker."""
    return isinstance(exc, ModelUnavailable | ModelTimeout) and not isinstance(exc, ModelBusy)


def _should_retry(exc: ModelError) -> bool:
    # A first-token timeout already cost the user a long wait: move on rather than wait again.
    return isinstance(exc, ModelUnavailable | RateLimited) and not isinstance(exc, ModelBusy)


class ModelRouter:
    """Streams a ``ChatRequest`` from the first endpoint that can answer it."""

    def __init__(
        self,
        providers: Sequence[ChatProvider],
        settings: RouterSettings,
        events: EventSink,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        if not providers:
            raise ValueError("the router needs at least one provider")
        self._settings = settings
        self._events = events
        self._endpoints = [_Endpoint(p, settings, clock) for p in providers]

    def status(self) -> list[EndpointStatus]:
        return [EndpointStatus(e.name, e.breaker.state, e.limiter.in_flight, e.limiter.waiting)
                for e in self._endpoints]

    async def probe(self) -> list[tuple[str, ProbeResult]]:
        results = await asyncio.gather(*(e.provider.probe() for e in self._endpoints))
        return [(e.name, r) for e, r in zip(self._endpoints, results, strict=True)]

    async def aclose(self) -> None:
        for endpoint in self._endpoints:
            await endpoint.provider.aclose()

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatChunk, None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.total_timeout
        failures: list[tuple[str, ModelError]] = []
        for index, endpoint in enumerate(self._endpoints):
            if index and failures:
                self._events.emit(Event("model.failover", properties={
                    "from": failures[-1][0], "to": endpoint.name, "reason": failures[-1][1].code}))
            if not endpoint.breaker.allow():
                failures.append((endpoint.name, ModelUnavailable(f"{endpoint.name}: circuit breaker open")))
                continue
            started = loop.time()
            first_token_at: float | None = None
            try:
                async with (endpoint.limiter.slot(endpoint.name),
                            aclosing(self._attempts(endpoint, request, deadline)) as chunks):
                    async for chunk in chunks:
                        if first_token_at is None:
                            first_token_at = loop.time()
                        yield chunk
            except ModelError as exc:
                if isinstance(exc, ModelBusy) or not _counts_against_breaker(exc):
                    endpoint.breaker.release_trial()
                self._emit_request(endpoint, exc.code, started, first_token_at)
                if first_token_at is not None:
                    raise  # text already reached the user: no fail-over mid-answer
                failures.append((endpoint.name, exc))
                if loop.time() >= deadline:
                    break
                continue
            self._emit_request(endpoint, "ok", started, first_token_at)
            return
        raise self._combined(failures)

    async def _attempts(
        self, endpoint: _Endpoint, request: ChatRequest, deadline: float,
    ) -> AsyncGenerator[ChatChunk, None]:
        """Try one endpoint, with retries, until its answer starts; then stream it to the end."""
        loop = asyncio.get_running_loop()
        policy = self._settings.retry
        attempt = 0
        yielded = False
        while True:
            attempt += 1
            watch = _Watchdog(loop, self._settings.first_token_timeout, deadline, endpoint.name)
            try:
                async with aclosing(endpoint.provider.stream(request)) as source:
                    while True:
                        try:
                            chunk = await watch.next(source)
                        except StopAsyncIteration:
                            if not yielded:
                                raise ModelUnavailable(f"{endpoint.name}: empty answer") from None
                            break
                        yielded = True
                        yield chunk
                        if chunk.done:
                            break
                if endpoint.breaker.record_success():
                    self._events.emit(Event("model.breaker", properties={"endpoint": endpoint.name,
                                                                          "state": "closed"}))
                return
            except ModelError as exc:
                if _counts_against_breaker(exc) and endpoint.breaker.record_failure():
                    self._events.emit(Event("model.breaker", properties={"endpoint": endpoint.name,
                                                                          "state": "open"}))
                if yielded or not _should_retry(exc):
                    raise
                if attempt >= policy.attempts or endpoint.breaker.state != "closed":
                    raise
                hint = exc.retry_after if isinstance(exc, RateLimited) else None
                if hint is not None and hint > policy.cap:
                    raise  # the server wants a long pause: another endpoint may answer sooner
                pause = policy.delay(attempt, hint=hint)
                if loop.time() + pause >= deadline:
                    raise
                await asyncio.sleep(pause)
            finally:
                watch.close()

    def _emit_request(
        self, endpoint: _Endpoint, outcome: str, started: float, first_token_at: float | None,
    ) -> None:
        now = asyncio.get_running_loop().time()
        self._events.emit(Event("model.request", properties={
            "endpoint": endpoint.name, "outcome": outcome, "seconds": now - started,
            "first_token_seconds": None if first_token_at is None else first_token_at - started}))

    @staticmethod
    def _combined(failures: list[tuple[str, ModelError]]) -> ModelError:
        detail = "; ".join(str(exc) if str(exc).startswith(name) else f"{name}: {exc}"
                           for name, exc in failures) or "no endpoint configured"
        errors = [exc for _, exc in failures]
        if errors and all(isinstance(e, ModelBusy) for e in errors):
            return ModelBusy(f"every model endpoint is busy ({detail})")
        for exc in errors:
            if isinstance(exc, ContextTooLong):
                return ContextTooLong(f"the prompt is too long for the model ({detail})")
        for exc in errors:
            if not exc.retryable:
                rejected = ModelError(f"the model server rejected the request ({detail})")
                rejected.code = exc.code
                return rejected
        if errors and all(isinstance(e, ModelTimeout) for e in errors):
            return ModelTimeout(f"no model answered in time ({detail})")
        return ModelUnavailable(f"no model endpoint could answer ({detail})")
