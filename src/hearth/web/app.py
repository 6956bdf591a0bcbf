"""The one ASGI app hearth serves, and which routes each port answers.

The server listens on the HTTP, WebSocket and management ports with the same app; ``PortDispatcher``
sends each connection to the routes of the port it arrived on (``scope["server"]``), so the admin API
is never reachable on the public port even when a reverse proxy forwards everything.

* HTTP port: ``/healthz``, ``/readyz``, ``/ws``, ``/v1/...`` (OpenAI-compatible API, files, conversations),
  the web chat page (``/``, ``/chat/...``; the JSON index at ``/api``), and later the channels' webhooks.
* WebSocket port: ``/healthz``, ``/readyz``, ``/ws``.
* Management port: ``/healthz``, ``/readyz``, ``/metrics``, ``/admin/...`` behind ``AdminGuard``.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth import __version__
from hearth.core.permissions import Policy

from .admin import AdminApi, AdminGuard
from .health import Readiness, healthz, readyz_endpoint
from .page import ChatPage

_log = logging.getLogger("hearth.web")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

PUBLIC, WEBSOCKET, ADMIN = "http", "ws", "admin"


class RequestContext:
    """Gives each request an id (``X-Request-ID`` if the client sent a sane one) for logs and errors."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _REQUEST_ID.match(candidate):
                    request_id = candidate
                break
        request_id = request_id or uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")


class PortDispatcher:
    """Routes each connection to the app for the local port it came in on.

    ``/ws`` on the ports that serve it goes straight to the WebSocket channel: every answer is a
    stream of frames, and each frame would otherwise pass through Starlette's routing, exception
    and request-context wrappers, which the channel does not need.
    """

    def __init__(self, apps: Mapping[int, ASGIApp], default: ASGIApp,
                 websocket: ASGIApp | None = None, websocket_ports: frozenset[int] = frozenset()) -> None:
        self._apps = dict(apps)
        self._default = default
        self._websocket = websocket
        self._websocket_ports = websocket_ports

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # start-up and shutdown belong to the runtime, which owns every resource
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        server = scope.get("server")
        port = server[1] if server else None
        if (self._websocket is not None and scope["type"] == "websocket" and scope["path"] == "/ws"
                and port in self._websocket_ports):
            await self._websocket(scope, receive, send)
            return
        app = self._apps.get(port, self._default) if port is not None else self._default
        await app(scope, receive, send)


@dataclass
class WebParts:
    """Everything the web layer serves, built by the composition root."""

    readiness: Readiness
    websocket: ASGIApp
    public_routes: Sequence[BaseRoute]
    admin: AdminApi
    policy: Policy
    admin_token: str | None
    admin_allow_ips: Sequence[str]
    extra_public_routes: Sequence[BaseRoute] = field(default_factory=list)


async def _index(_: object) -> JSONResponse:
    return JSONResponse({"name": "hearth", "version": __version__,
                         "endpoints": ["/ws", "/v1/chat/completions", "/v1/models", "/v1/files", "/v1/conversations",
                                       "/healthz", "/readyz"],
                         "web_chat": "/"})


def build_app(parts: WebParts, ports: Mapping[int, set[str]]) -> PortDispatcher:
    """One Starlette app per port, from the roles (``http``, ``ws``, ``admin``) that port serves."""
    health: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET", "HEAD"]),
                               Route("/readyz", readyz_endpoint(parts.readiness), methods=["GET", "HEAD"])]
    apps: dict[int, ASGIApp] = {}
    default: ASGIApp | None = None
    websocket_ports = frozenset(port for port, roles in ports.items() if roles & {PUBLIC, WEBSOCKET})
    page = ChatPage(_index)
    for port, roles in ports.items():
        routes: list[BaseRoute] = list(health)
        if PUBLIC in roles or WEBSOCKET in roles:
            routes.append(WebSocketRoute("/ws", parts.websocket))
        if PUBLIC in roles:
            routes.append(Route("/api", _index, methods=["GET"]))
            routes.extend(page.routes())
            routes.extend(parts.public_routes)
            routes.extend(parts.extra_public_routes)
        middleware = [Middleware(RequestContext)]
        if ADMIN in roles:
            routes.extend(parts.admin.routes())
            middleware.append(Middleware(AdminGuard, admin_token=parts.admin_token, allow=parts.admin_allow_ips,
                                         auth=parts.admin.auth, policy=parts.policy, events=parts.admin.events))
        app = Starlette(routes=routes, middleware=middleware)
        apps[port] = app
        if PUBLIC in roles or default is None:
            default = app
    assert default is not None, "at least one port"
    return PortDispatcher(apps, default, parts.websocket, websocket_ports)
