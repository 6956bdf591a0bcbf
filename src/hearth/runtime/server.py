"""Listening sockets and the HTTP server (Hypercorn): HTTP/1.1, HTTP/2 (h2 over TLS, h2c without), WebSocket.

Sockets are bound here, before the server starts, so the runtime knows each port for certain (port 0
picks a free one, which tests use) and several roles can share one port. Hypercorn is given those
sockets through ``Config.create_sockets`` and serves the one ASGI app on all of them.
"""

from __future__ import annotations

import gc
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from hypercorn.asyncio import serve
from hypercorn.config import Config, Sockets
from starlette.types import ASGIApp

from hearth.settings import ServerSettings

ROLE_ORDER = ("http", "ws", "admin")


@dataclass
class Listeners:
    """Bound sockets and the roles each serves; ``ports['http']`` etc. give the real port numbers."""

    sockets: list[socket.socket] = field(default_factory=list)
    roles: dict[int, set[str]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def bind(settings: ServerSettings) -> Listeners:
    """Bind the HTTP, WebSocket and management ports (shared when two roles name the same port)."""
    wanted = {"http": settings.http_port, "ws": settings.ws_port, "admin": settings.admin_port}
    listeners = Listeners()
    by_port: dict[int, socket.socket] = {}
    try:
        for role in ROLE_ORDER:
            port = wanted[role]
            sock = by_port.get(port) if port else None
            if sock is None:
                sock = _listen(settings.host, port)
                listeners.sockets.append(sock)
                if port:
                    by_port[port] = sock
            real = sock.getsockname()[1]
            listeners.ports[role] = real
            listeners.roles.setdefault(real, set()).add(role)
    except OSError:
        listeners.close()
        raise
    return listeners


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    _keepalive(sock)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _keepalive(sock: socket.socket) -> None:
    """TCP keepalive, inherited by accepted connections on Linux: a vanished client (a phone that lost
    its network) is dropped after about two minutes instead of holding a WebSocket forever."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 6)):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


class _HearthConfig(Config):
    """Hypercorn's config with hearth's sockets and TLS floor."""

    def __init__(self, listeners: Listeners, tls_min: str) -> None:
        super().__init__()
        self._listeners = listeners
        self._tls_min = tls_min

    def create_sockets(self) -> Sockets:
        if self.ssl_enabled:
            return Sockets(list(self._listeners.sockets), [], [])
        return Sockets([], list(self._listeners.sockets), [])

    def create_ssl_context(self) -> ssl.SSLContext | None:
        context = super().create_ssl_context()
        if context is not None and self._tls_min == "1.3":
            context.minimum_version = ssl.TLSVersion.TLSv1_3
        return context


def server_config(settings: ServerSettings, listeners: Listeners) -> Config:
    config = _HearthConfig(listeners, settings.tls_min_version)
    if settings.tls_cert and settings.tls_key:
        config.certfile = str(settings.tls_cert)
        config.keyfile = str(settings.tls_key)
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # through hearth's log pipeline, once
    config.include_server_header = False
    config.keep_alive_timeout = 75
    config.graceful_timeout = 10
    # hearth answers too-large frames itself with an error frame; Hypercorn only stops absurd ones
    config.websocket_max_message_size = max(settings.ws_max_message_bytes * 4, 1 << 20)
    # Hypercorn's ping loop sleeps a whole interval before it notices a closed socket, which pins a task
    # per closed WebSocket and stalls graceful shutdown; dead peers are found by TCP keepalive instead.
    config.websocket_ping_interval = None
    config.h2_max_concurrent_streams = 256
    return config


async def run_server(app: ASGIApp, config: Config, shutdown: Callable[[], Awaitable[None]]) -> None:
    await serve(app, config, shutdown_trigger=shutdown, mode="asgi")  # type: ignore[arg-type]


def tune_gc() -> None:
    """Garbage collection for a long-running server with many connections.

    With 1,000 WebSocket sessions the collector tracks ~250,000 objects; measured here, a full
    collection paused the event loop for 240-380 ms and a generation-1 collection for up to 50 ms,
    about once a second, which was the whole P99 tail. Objects made at start-up (modules, classes,
    the app) are frozen out of collection, and collections run less often: nearly all of hearth's
    garbage is freed by reference counting, so frequent collections mostly walk live objects.
    Measured: no generation-1 pauses left, one full collection of ~65 ms per 25 s under load.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def role_ports(listeners: Listeners) -> Mapping[int, set[str]]:
    return listeners.roles
