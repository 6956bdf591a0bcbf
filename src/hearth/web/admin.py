"""The management API on the admin port: status, users, skills, the chat platforms' outbox, metrics.

Access is decided here and only here: the client address must be in ``HEARTH_ADMIN_ALLOW_IPS`` and
the request must carry ``ADMIN_TOKEN`` (or an API key of a user whose role grants ``admin.*``).
With ``ADMIN_TOKEN`` unset the management API is closed: every endpoint answers 503 saying so.
Health endpoints stay open so an orchestrator can probe the port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
from hearth.errors import HearthError, InvalidRequest, NotFound, Unauthenticated
from hearth.sdk import CAPABILITIES, IntentSpec
from hearth.security.apikeys import constant_time_equals
from hearth.types import Actor, Event

from .admin_outbox import OutboxAdmin, describe_outbox_item, outbox_query

GUARDED_PREFIXES = ("/admin", "/metrics")
_CONFLICTS = frozenset({"exists", "not_dead"})  # InvalidRequest codes that mean "not in this state": 409
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


# --- skills: what the admin API (and ``hearth skills``) need from the skill registry ---------------------


class SkillManifestView(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def permissions(self) -> tuple[str, ...]: ...
    @property
    def config_schema(self) -> Mapping[str, Any]: ...
    @property
    def intents(self) -> Mapping[str, IntentSpec]: ...


class ManagedSkill(Protocol):
    """A loaded skill as the registry holds it: its manifest, where it came from, and its state."""

    @property
    def manifest(self) -> SkillManifestView: ...
    @property
    def origin(self) -> str: ...  # "builtin" | "folder" | "package" (or "test" in hearth.testing)
    @property
    def source(self) -> str: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def config(self) -> Mapping[str, Any]: ...
    @property
    def granted(self) -> frozenset[str]: ...
    @property
    def capabilities(self) -> frozenset[str]: ...


class SkillProblemView(Protocol):
    @property
    def source(self) -> str: ...
    @property
    def problem(self) -> str: ...
    @property
    def fix(self) -> str: ...


class SkillAdmin(Protocol):
    """The skill registry's management side. Every change is kept in the database; a running server
    applies changes made by another process within a few seconds."""

    @property
    def problems(self) -> Sequence[SkillProblemView]: ...
    def skills(self) -> Sequence[ManagedSkill]: ...
    def get(self, name: str) -> ManagedSkill: ...
    async def set_enabled(self, name: str, enabled: bool) -> ManagedSkill: ...
    async def grant(self, name: str, capabilities: Sequence[str], *, revoke: bool = False) -> ManagedSkill: ...
    async def configure(self, name: str, config: Mapping[str, Any]) -> ManagedSkill: ...


MASK = "***"
_SECRET_WORDS = ("token", "password", "secret", "api_key", "apikey")
_JSON_TYPES: Mapping[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,), "object": (dict,),
    "array": (list,), "null": (type(None),),
}


def find_skill(skills: SkillAdmin, name: str) -> ManagedSkill:
    """The skill called ``name``; ``NotFound`` naming the known ones otherwise."""
    try:
        return skills.get(name)
    except NotFound:
        known = ", ".join(s.manifest.name for s in skills.skills()) or "none"
        raise NotFound(f"no skill named {name!r}; known skills: {known}") from None


def is_secret(schema: Mapping[str, Any], key: str) -> bool:
    """A config key whose value is never shown: ``writeOnly`` in the schema, or a name like a secret's."""
    prop = (schema.get("properties") or {}).get(key)
    if isinstance(prop, Mapping) and prop.get("writeOnly") is True:
        return True
    return any(word in key.lower() for word in _SECRET_WORDS)


def masked_config(schema: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with secret values shown as ``***`` (``$env:NAME`` references are not secrets)."""
    def shown(key: str, value: Any) -> Any:
        if not is_secret(schema, key) or value in (None, "") or (isinstance(value, str) and value.startswith("$env:")):
            return value
        return MASK

    return {key: shown(key, value) for key, value in config.items()}


def config_problems(schema: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``config`` for a skill's ``config_schema`` (empty when it is valid).

    Uses ``jsonschema`` when it is installed, else checks the top-level properties' types, enums,
    ``required`` and ``additionalProperties: false``. Messages never repeat a secret's value."""
    if not isinstance(config, Mapping):
        return ["the config must be a JSON object"]
    if not schema:
        return [] if not config else ["this skill declares no config_schema, so it takes no settings"]
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema comes with the mcp package
        return _basic_problems(schema, config)
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = []
    for error in sorted(validator.iter_errors(dict(config)), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in error.absolute_path)
        top = str(error.absolute_path[0]) if error.absolute_path else ""
        if top and is_secret(schema, top):
            problems.append(f"{path}: not valid ({error.validator} {error.validator_value!r})")
        else:
            problems.append(f"{path}: {error.message}" if path else error.message)
    return problems


def _basic_problems(schema: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    problems = [f"{key}: required" for key in schema.get("required") or () if key not in config]
    for key, value in config.items():
        prop = properties.get(key)
        if not isinstance(prop, Mapping):
            if schema.get("additionalProperties") is False:
                problems.append(f"{key}: not a setting of this skill (known: {', '.join(properties) or 'none'})")
            continue
        wanted = prop.get("type")
        types = [wanted] if isinstance(wanted, str) else list(wanted or [])
        if types and not any(_is_type(value, t) for t in types):
            problems.append(f"{key}: expected {' or '.join(types)}")
        elif "enum" in prop and value not in prop["enum"]:
            problems.append(f"{key}: expected one of {', '.join(map(str, prop['enum']))}")
    return problems


def _is_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _JSON_TYPES.get(name, (object,)))


def describe_intent(skill: str, spec: IntentSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "tool": f"{skill}__{spec.name}",
        "description": spec.description,
        "slots": [{"name": name, "type": slot.kind, "required": slot.required, "description": slot.description}
                  for name, slot in spec.slots.items()],
        "examples": list(spec.examples),
        "side_effects": spec.side_effects,
        "permission": spec.permission or f"tool.{skill}.{spec.name}",
        "timeout": spec.timeout,
    }


def describe_skill(skill: ManagedSkill, *, detail: bool = False) -> dict[str, Any]:
    """A skill as JSON: the summary for a list, or (``detail``) everything including its intents."""
    manifest = skill.manifest
    described: dict[str, Any] = {
        "name": manifest.name,
        "version": manifest.version,
        "description": manifest.description,
        "origin": skill.origin,
        "source": skill.source,
        "enabled": skill.enabled,
        "intents": len(manifest.intents),
        "permissions": list(manifest.permissions),
        "granted": sorted(skill.granted),
        "capabilities": sorted(skill.capabilities),
    }
    if detail:
        described["intents"] = [describe_intent(manifest.name, spec) for spec in manifest.intents.values()]
        described["config_schema"] = dict(manifest.config_schema)
        described["config"] = masked_config(manifest.config_schema, skill.config)
    return described


def describe_problem(problem: SkillProblemView) -> dict[str, str]:
    return {"source": problem.source, "problem": problem.problem, "fix": problem.fix}


def check_capabilities(capabilities: Sequence[str]) -> None:
    unknown = [c for c in capabilities if c not in CAPABILITIES]
    if unknown:
        raise InvalidRequest(f"unknown capabilities {unknown}; known: {', '.join(CAPABILITIES)}", code="invalid")


@dataclass
class AdminApi:
    auth: Authenticator
    users: UserStore
    events: EventSink
    status: StatusSource
    metrics: Callable[[], bytes]
    metrics_content_type: str
    skills: SkillAdmin | None = None
    outbox: OutboxAdmin | None = None

    def routes(self) -> list[Route]:
        routes = [
            Route("/metrics", self.get_metrics, methods=["GET"]),
            Route("/admin/status", self.get_status, methods=["GET"]),
            Route("/admin/users", self.list_users, methods=["GET"]),
            Route("/admin/users", self.create_user, methods=["POST"]),
        ]
        if self.skills is not None:
            routes += [
                Route("/admin/skills", self.list_skills, methods=["GET"]),
                Route("/admin/skills/{name}", self.get_skill, methods=["GET"]),
                Route("/admin/skills/{name}/enable", self.enable_skill, methods=["POST"]),
                Route("/admin/skills/{name}/disable", self.disable_skill, methods=["POST"]),
                Route("/admin/skills/{name}/grants", self.grant_skill, methods=["POST"]),
                Route("/admin/skills/{name}/config", self.configure_skill, methods=["PUT"]),
            ]
        if self.outbox is not None:
            routes += [
                Route("/admin/outbox", self.list_outbox, methods=["GET"]),
                Route("/admin/outbox/{id}/retry", self.retry_outbox, methods=["POST"]),
            ]
        return routes

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
            data = await _read_json(request)
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

    # --- skills ---------------------------------------------------------------------------------------------

    def _registry(self) -> SkillAdmin:
        assert self.skills is not None  # the routes exist only with a registry
        return self.skills

    async def list_skills(self, _: Request) -> Response:
        registry = self._registry()
        return _json({"skills": [describe_skill(s) for s in registry.skills()],
                      "problems": [describe_problem(p) for p in registry.problems]})

    async def get_skill(self, request: Request) -> Response:
        try:
            skill = find_skill(self._registry(), request.path_params["name"])
        except HearthError as exc:
            return _error(exc)
        return _json(describe_skill(skill, detail=True))

    async def enable_skill(self, request: Request) -> Response:
        return await self._set_enabled(request, True)

    async def disable_skill(self, request: Request) -> Response:
        return await self._set_enabled(request, False)

    async def _set_enabled(self, request: Request, enabled: bool) -> Response:
        registry = self._registry()
        try:
            name = find_skill(registry, request.path_params["name"]).manifest.name
            skill = await registry.set_enabled(name, enabled)
        except HearthError as exc:
            return _error(exc)
        event = "admin.skill_enabled" if enabled else "admin.skill_disabled"
        self.events.emit(Event(event, request.scope["actor"], {"skill": name}))
        return _json(describe_skill(skill, detail=True))

    async def grant_skill(self, request: Request) -> Response:
        """``{"grant": [...], "revoke": [...]}``: both lists are checked before anything changes."""
        registry = self._registry()
        try:
            name = find_skill(registry, request.path_params["name"]).manifest.name
            data = await _read_json(request)
            if not isinstance(data, dict) or set(data) - {"grant", "revoke"}:
                raise InvalidRequest('send {"grant": [CAPABILITY, ...], "revoke": [CAPABILITY, ...]}', code="invalid")
            grant, revoke = data.get("grant") or [], data.get("revoke") or []
            for value in (grant, revoke):
                if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
                    raise InvalidRequest("'grant' and 'revoke' must be lists of capability names", code="invalid")
            if not grant and not revoke:
                raise InvalidRequest("nothing to grant or revoke", code="invalid")
            if set(grant) & set(revoke):
                raise InvalidRequest(f"{sorted(set(grant) & set(revoke))} both granted and revoked", code="invalid")
            check_capabilities([*grant, *revoke])
            skill = registry.get(name)
            if grant:
                skill = await registry.grant(name, grant)
            if revoke:
                skill = await registry.grant(name, revoke, revoke=True)
        except HearthError as exc:
            return _error(exc)
        self.events.emit(Event("admin.skill_granted", request.scope["actor"],
                               {"skill": name, "granted": sorted(grant), "revoked": sorted(revoke)}))
        return _json(describe_skill(skill, detail=True))

    async def configure_skill(self, request: Request) -> Response:
        """Replace a skill's config with the JSON object sent, after checking it against the skill's
        ``config_schema``. A secret sent back as ``***`` (as ``GET`` shows it) keeps its current value."""
        registry = self._registry()
        try:
            skill = find_skill(registry, request.path_params["name"])
            name = skill.manifest.name
            data = await _read_json(request)
            if not isinstance(data, dict):
                raise InvalidRequest("send the skill's whole config as a JSON object", code="invalid")
            schema = skill.manifest.config_schema
            config = {key: skill.config[key] if value == MASK and key in skill.config and is_secret(schema, key)
                      else value for key, value in data.items()}
            problems = config_problems(schema, config)
            if problems:
                raise InvalidRequest(f"invalid config for {name}: " + "; ".join(problems), code="invalid_config")
            changed = sorted(k for k in set(config) | set(skill.config) if config.get(k) != skill.config.get(k))
            skill = await registry.configure(name, config)
        except HearthError as exc:
            return _error(exc)
        self.events.emit(Event("admin.skill_configured", request.scope["actor"], {"skill": name, "keys": changed}))
        return _json(describe_skill(skill, detail=True))

    # --- the chat platforms' outbox -------------------------------------------------------------------------

    def _outbox(self) -> OutboxAdmin:
        assert self.outbox is not None  # the routes exist only with an outbox
        return self.outbox

    async def list_outbox(self, request: Request) -> Response:
        """``?status=pending|sent|dead|all&channel=NAME&limit=N`` (default all, 50; at most 1000), newest first."""
        try:
            query = outbox_query(request.query_params)
            items = await self._outbox().items.list(status=query.status, channel=query.channel, limit=query.limit)
        except HearthError as exc:
            return _error(exc)
        return _json({"items": [describe_outbox_item(item) for item in items]})

    async def retry_outbox(self, request: Request) -> Response:
        """Queue a dead message again (pending, due now, attempts counted afresh): 404 for an unknown id,
        409 for a message that is not dead."""
        raw = request.path_params["id"]
        try:
            if not raw.isdigit() or len(raw) > 18:  # 18 digits stay inside a 64-bit id
                raise NotFound(f"no outbox message {raw!r}")
            item = await self._outbox().retry(int(raw))
        except HearthError as exc:
            return _error(exc)
        self.events.emit(Event("admin.outbox_retried", request.scope["actor"],
                               {"id": item.id, "channel": item.channel}))
        return _json(describe_outbox_item(item))


async def _read_json(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InvalidRequest("request body too large", code="too_large")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("request body is not valid JSON", code="invalid_json") from None


def _error(exc: HearthError) -> Response:
    if isinstance(exc, NotFound):
        return _problem(404, exc.code, exc.user_message)
    if isinstance(exc, InvalidRequest):
        return _problem(409 if exc.code in _CONFLICTS else 400, exc.code, exc.user_message)
    return _problem(503, exc.code, exc.user_message)  # the database, most likely: try again later


Handler = Callable[[Request], Awaitable[Response]]
