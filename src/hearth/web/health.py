"""``/healthz`` (liveness: the process answers, no dependencies) and ``/readyz`` (readiness).

Readiness runs the named checks (the database, the model endpoints) concurrently, each bounded by a
timeout, and caches the verdict for a few seconds so that frequent probes from an orchestrator do not
hammer the model server. A failing check gives 503 with a JSON body naming what is not ready and why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import orjson
from starlette.requests import Request
from starlette.responses import Response


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    detail: str


Check = Callable[[], Awaitable[CheckResult]]


class Readiness:
    def __init__(self, checks: Mapping[str, Check], *, cache_seconds: float = 3.0, timeout: float = 5.0) -> None:
        self._checks = dict(checks)
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        self._cached: tuple[float, dict[str, CheckResult]] | None = None
        self._lock = asyncio.Lock()

    async def run(self) -> dict[str, CheckResult]:
        async with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self._cache_seconds:
                return self._cached[1]
            names = list(self._checks)
            results = await asyncio.gather(*(self._bounded(self._checks[n]) for n in names))
            verdict = dict(zip(names, results, strict=True))
            self._cached = (time.monotonic(), verdict)
            return verdict

    async def _bounded(self, check: Check) -> CheckResult:
        try:
            async with asyncio.timeout(self._timeout):
                return await check()
        except TimeoutError:
            return CheckResult(False, f"no answer within {self._timeout:g}s")
        except Exception as exc:  # a check must report, never crash the probe
            return CheckResult(False, f"{type(exc).__name__}: {exc}")


async def healthz(_: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def readyz_endpoint(readiness: Readiness) -> Callable[[Request], Awaitable[Response]]:
    async def readyz(_: Request) -> Response:
        results = await readiness.run()
        failing = [name for name, r in results.items() if not r.ok]
        body = {
            "status": "not_ready" if failing else "ready",
            "failing": failing,
            "checks": {name: {"ok": r.ok, "detail": r.detail} for name, r in results.items()},
        }
        return Response(orjson.dumps(body), status_code=503 if failing else 200, media_type="application/json")

    return readyz
