"""Prometheus metrics, fed by the event bus (nothing else in hearth touches a metric).

The registry belongs to the ``Metrics`` object, not to the module, so tests and several runtimes in one
process never share counters. Names follow Prometheus conventions (``_total``, ``_seconds``).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from hearth.types import Event

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.turns = Counter("hearth_turns_total", "Turns by channel and outcome", ["channel", "outcome"],
                             registry=r)
        self.turn_seconds = Histogram("hearth_turn_seconds", "Time from acceptance to stored answer",
                                      ["channel"], buckets=LATENCY_BUCKETS, registry=r)
        self.model_requests = Counter("hearth_model_requests_total", "Model requests by endpoint and outcome",
                                      ["endpoint", "outcome"], registry=r)
        self.model_first_token = Histogram("hearth_model_first_token_seconds", "Time to the first token",
                                           ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.model_failovers = Counter("hearth_model_failovers_total", "Fail-overs to another endpoint",
                                       registry=r)
        self.breaker_open = Gauge("hearth_model_breaker_open", "1 while an endpoint's breaker is open",
                                  ["endpoint"], registry=r)
        self.connections = Gauge("hearth_connections", "Open client connections", ["channel"], registry=r)
        self.tool_calls = Counter("hearth_tool_calls_total", "Tool calls by tool and outcome", ["tool", "outcome"],
                                  registry=r)
        self.recovered = Counter("hearth_turns_recovered_total", "Turns re-run after a restart", registry=r)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: Counter | Histogram | Gauge, *labels: str) -> Any:
        """``metric.labels(...)``, remembered: looking a child up takes a lock and several dicts."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def on_event(self, event: Event) -> None:
        p = event.properties
        name = event.name
        if name == "turn.completed":
            channel = p.get("channel", "")
            self._child(self.turns, channel, "ok").inc()
            self._child(self.turn_seconds, channel).observe(float(p.get("seconds", 0.0)))
        elif name == "turn.failed":
            self._child(self.turns, p.get("channel", ""), str(p.get("error", "failed"))).inc()
        elif name == "model.request":
            self._child(self.model_requests, p["endpoint"], p["outcome"]).inc()
            if p.get("first_token_seconds") is not None:
                self._child(self.model_first_token, p["endpoint"]).observe(float(p["first_token_seconds"]))
        elif name == "model.failover":
            self.model_failovers.inc()
        elif name == "model.breaker":
            self.breaker_open.labels(p["endpoint"]).set(1 if p["state"] == "open" else 0)
        elif name == "ws.connected":
            self.connections.labels(p.get("channel", "websocket")).inc()
        elif name == "ws.closed":
            self.connections.labels(p.get("channel", "websocket")).dec()
        elif name == "tool.called":
            self.tool_calls.labels(p["tool"], "ok" if p.get("ok") else str(p.get("error"))).inc()
        elif name == "turn.recovered":
            self.recovered.inc(int(p.get("count", 0)))

    def render(self) -> bytes:
        return generate_latest(self.registry)
