"""The management API on the admin port: status, users, metrics.

Access is decided here and only here: the client address must be in ``HEARTH_ADMIN_ALLOW_IPS`` and
the request must carry ``ADMIN_TOKEN`` (or an API key of a user whose role grants ``admin.*``).
With ``ADMIN_TOKEN`` unset the management API is closed: every endpoint answers 503 saying so.
Health endpoints stay open so an orchestrator can probe the port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hearth import __version__
from hearth.core.identity import Authenticator
from hearth.core.permissions import Policy
from hearth.core.ports import EventSink, UserStore
from hearth.errors import HearthError, InvalidRequest, Unauthenticated
from hearth.security.apikeys import constant_time_equals
from hearth.types import Actor, Event

GUARDED_PREFIXES = ("/admin", "/metrics")
MAX_BODY = 65536


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _problem(status: int, code: str, message: str) -> Response:
    return _json({"error": {"code": code, "message": message}}, status)


class AdminGuard:
    """ASGI middleware: IP allow-list, then ADMIN_TOKEN or an admin's API key; sets ``scope['actor']``."""

    def __init__(self, app: ASGIApp, *, admin_token: str | None, allow: Sequence[str], auth: Authenticator,
                 policy: Policy, events: EventSink) -> None:
        self._app = app
        self._token = admin_token
        self._networks = [ipaddress.ip_network(c, strict=False) for c in allow]
        self._auth = auth
        self._policy = policy
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not scope["path"].startswith(GUARDED_PREFIXES):
            await self._app(scope, receive, send)
            return
        denied = await self._check(scope)
        if denied is not None:
            await denied(scope, receive, send)
            return
        await self._app(scope, receive, send)

    async def _check(self, scope: Scope) -> Response | None:
        client = (scope.get("client") or ("", 0))[0]
        if not self._allowed_ip(client):
            self._events.emit(Event("admin.denied", None, {"reason": "ip", "client": client, "path": scope["path"]}))
            return _problem(403, "forbidden", "this address may not use the management API")
        if self._token is None:
            return _problem(503, "admin_disabled", "the management API is closed: set ADMIN_TOKEN to open it")
        headers = dict(scope["headers"])
        header = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _problem(401, "unauthenticated", "send Authorization: Bearer <ADMIN_TOKEN>")
        if constant_time_equals(token, self._token):
            scope["actor"] = Actor(0, "admin-token", frozenset({"admin"}), channel="admin")
            return None
        try:
            actor = await self._auth.authenticate(token, channel="admin")
        except Unauthenticated:
            self._events.emit(Event("admin.denied", None, {"reason": "token", "client": client,
                                                           "path": scope["path"]}))
            return _problem(401, "unauthenticated", "wrong admin token or API key")
        if not self._policy.allows(actor, "admin.access"):
            self._events.emit(Event("admin.denied", actor, {"reason": "role", "path": scope["path"]}))
            return _problem(403, "forbidden", "this user may not use the management API")
        scope["actor"] = actor
        return None

    def _allowed_ip(self, client: str) -> bool:
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)


class StatusSource(Protocol):
    def __call__(self) -> dict[str, Any]: ...


@dataclass
class AdminApi:
    auth: Authenticator
    users: UserStore
    events: EventSink
    status: StatusSource
    metrics: Callable[[], bytes]
    metrics_content_type: str

    def routes(self) -> list[Route]:
        return [
            Route("/metrics", self.get_metrics, methods=["GET"]),
            Route("/admin/status", self.get_status, methods=["GET"]),
            Route("/admin/users", self.list_users, methods=["GET"]),
            Route("/admin/users", self.create_user, methods=["POST"]),
        ]

    async def get_metrics(self, _: Request) -> Response:
        return Response(self.metrics(), media_type=self.metrics_content_type)

    async def get_status(self, _: Request) -> Response:
        return _json({"version": __version__, **self.status()})

    async def list_users(self, _: Request) -> Response:
        users = await self.users.list_users()
        return _json({"users": [{"id": u.id, "name": u.name, "role": u.role, "disabled": u.disabled,
                                 "created_at": u.created_at.isoformat()} for u in users]})

    async def create_user(self, request: Request) -> Response:
        actor: Actor = request.scope["actor"]
        try:
            body = await request.body()
            if len(body) > MAX_BODY:
                raise InvalidRequest("request body too large", code="too_large")
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise InvalidRequest("request body is not valid JSON", code="invalid_json") from None
            if not isinstance(data, dict) or not isinstance(data.get("name"), str):
                raise InvalidRequest("send {\"name\": ..., \"role\"?: ...}", code="invalid")
            role = data.get("role", "user")
            if not isinstance(role, str):
                raise InvalidRequest("'role' must be a string", code="invalid")
            created = await self.auth.create_user(data["name"], role)
        except HearthError as exc:
            status = 409 if exc.code == "exists" else 400
            return _problem(status, exc.code, exc.user_message)
        self.events.emit(Event("admin.user_created", actor, {"user": created.user.name, "role": created.user.role}))
        user = created.user
        return _json({"user": {"id": user.id, "name": user.name, "role": user.role},
                      "api_key": created.api_key}, 201)


Handler = Callable[[Request], Awaitable[Response]]
