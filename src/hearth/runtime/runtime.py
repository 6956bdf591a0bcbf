"""The composition root: the only place that knows the concrete classes and wires them together.

``Runtime.create(settings)`` opens the database (migrating it), builds the model router from the
configured endpoints, the memory, agent, inbox and authenticator, and subscribes metrics and the audit
log to the event bus. ``start`` does the start-up work (first admin, recovery of interrupted turns, a
model check that says clearly when no model is reachable, housekeeping), and ``serve`` runs the HTTP
server until asked to stop, then shuts down in order: stop accepting, let running turns finish (or
leave them pending for the next start), close connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr, ValidationError

from hearth.core.agent import Agent
from hearth.core.bus import EventBus
from hearth.core.dialog import Dialog
from hearth.core.identity import Authenticator, ChannelIdentities
from hearth.core.inbox import Inbox
from hearth.core.locks import LocalLocks
from hearth.core.memory import Memory
from hearth.core.messenger import Messenger
from hearth.core.outbox import Outbox
from hearth.core.permissions import Policy
from hearth.core.router import ModelRouter
from hearth.errors import ConfigError, HearthError
from hearth.gateway.calendar_api import CalendarApi
from hearth.gateway.channels.common import ChannelServices, SenderRules
from hearth.gateway.channels.slack import SlackChannel, SlackConfig
from hearth.gateway.channels.telegram import TelegramChannel, TelegramConfig
from hearth.gateway.channels.whatsapp import WhatsAppChannel, WhatsAppConfig
from hearth.gateway.conversations_api import ConversationsApi
from hearth.gateway.files_api import FilesApi
from hearth.gateway.openai_api import OpenAIChannel
from hearth.gateway.websocket import WebSocketChannel
from hearth.models import make_provider
from hearth.ops.audit import AuditLog
from hearth.ops.metrics import CONTENT_TYPE, Metrics
from hearth.sdk import Skill
from hearth.security.apikeys import ApiKeyHasher
from hearth.settings import Settings, config_error
from hearth.skills.builtin.calendar import CalendarSkill
from hearth.skills.builtin.files import FileIntake, FilesSkill
from hearth.skills.builtin.reminders import RemindersSkill
from hearth.skills.builtin.time import TimeSkill
from hearth.skills.invoke import InProcess
from hearth.skills.isolation import WorkerExecutor, private_home
from hearth.skills.loader import SkillProblemError, folder, installed, manifest_of
from hearth.skills.mcp import McpServerConfig, McpTools, load_mcp_config
from hearth.skills.registry import LoadedSkill, SkillProblem, SkillRegistry
from hearth.skills.services import ContextFactory
from hearth.store import ConversationRepository, Database, PlainTextCodec, UserRepository, migrate
from hearth.store.calendar import CalendarRepository
from hearth.store.channels import ChannelRepository
from hearth.store.files import FileRepository
from hearth.store.records import ConversationRecord
from hearth.store.skills import SkillRepository
from hearth.types import Event, Reply, utcnow
from hearth.web.admin import AdminApi
from hearth.web.admin_outbox import OutboxAdmin
from hearth.web.app import WebParts, build_app
from hearth.web.health import CheckResult, Readiness

from .server import Listeners, bind, run_server, server_config, tune_gc

_log = logging.getLogger("hearth.runtime")

ADMIN_KEY_FILE = "admin.key"
MB = 1024 * 1024
RETENTION_EVERY = 3600.0
SKILL_STATE_EVERY = 3.0  # how soon `hearth skills enable/disable/grant/config` from another process applies


def load_settings(**overrides: Any) -> Settings:
    """Read the environment and ``.env``; a bad value becomes one ``ConfigError`` naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise config_error(exc) from None


@dataclass
class Runtime:
    settings: Settings
    db: Database
    users: UserRepository
    conversations: ConversationRepository
    bus: EventBus
    metrics: Metrics
    router: ModelRouter
    policy: Policy
    auth: Authenticator
    memory: Memory
    agent: Agent
    inbox: Inbox
    readiness: Readiness
    skills: SkillRegistry
    skill_store: SkillRepository
    contexts: ContextFactory
    messenger: Messenger
    websocket: WebSocketChannel
    openai: OpenAIChannel
    files: FileIntake
    calendar: CalendarSkill
    mcp: McpTools
    channel_store: ChannelRepository
    outbox: Outbox
    identities: ChannelIdentities
    slack: SlackChannel
    whatsapp: WhatsAppChannel
    telegram: TelegramChannel | None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None
    _external_loaded: bool = False
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def create(cls, settings: Settings) -> Runtime:
        data_dir = settings.hearth_data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError("HEARTH_DATA_DIR", f"cannot create {data_dir}: {exc.strerror}") from exc
        mcp_servers = _mcp_servers(settings)  # a bad file stops start-up before anything is opened
        telegram_config = _telegram_config(settings)
        db = Database(settings.database_url)
        try:
            await migrate.upgrade(db)
        except BaseException:
            await db.aclose()
            raise
        codec = PlainTextCodec()
        users = UserRepository(db)
        conversations = ConversationRepository(db, codec)
        bus = EventBus()
        metrics = Metrics()
        bus.subscribe(metrics.on_event)
        bus.subscribe(AuditLog().on_event)
        router_settings = settings.router
        providers = [make_provider(ep, connect_timeout=router_settings.connect_timeout,
                                   context_tokens=settings.ai_model_context_tokens)
                     for ep in router_settings.endpoints]
        router = ModelRouter(providers, router_settings, bus)
        policy = Policy()
        auth = Authenticator(users, ApiKeyHasher())
        memory = Memory(conversations, router, settings.memory, bus)
        skill_store = SkillRepository(db, codec)
        messenger = Messenger(conversations, skill_store, {}, bus)
        files = FileIntake(FileRepository(db, codec), data_dir / "files", max_bytes=settings.hearth_max_file_mb * MB)
        calendar = CalendarSkill(CalendarRepository(db))
        contexts = ContextFactory(skill_store, messenger, files, None)
        skills = SkillRegistry(skill_store, contexts)
        for name, built in builtin_skills(files=files, calendar=calendar):
            if isinstance(built, SkillProblem):
                skills.problems.append(built)
            else:
                skills.add(LoadedSkill(manifest_of(type(built), name), InProcess(built), "builtin", name))
        mcp = McpTools(mcp_servers, events=bus)
        channel_store = ChannelRepository(db, codec)
        outbox = Outbox(channel_store, bus)
        identities = ChannelIdentities(users, channel_store, bus)
        skills.add_source(mcp)
        dialog = Dialog(skills, skill_store, policy)
        agent = Agent(router, memory, skills, policy, bus, settings.agent,
                      reply_tokens=settings.ai_model_reply_tokens, dialog=dialog)
        inbox = Inbox(conversations, users, agent, LocalLocks(), bus, settings.agent)
        readiness = Readiness({"database": _database_check(db), "model": _model_check(router)})
        server = settings.server
        websocket = WebSocketChannel(inbox, auth, max_message_bytes=server.ws_max_message_bytes, events=bus,
                                     files=files)
        messenger.add_deliverer("websocket", websocket)
        openai = OpenAIChannel(inbox, auth)
        common = ChannelServices(inbox=inbox, identities=identities, receipts=channel_store, outbox=outbox,
                                 files=files, events=bus)
        slack = SlackChannel(SlackConfig(
            bot_token=_secret(settings.slack_bot_token), signing_secret=_secret(settings.slack_signing_secret),
            api_base=settings.slack_api_base + "/",
            rules=SenderRules(settings.slack_sender_policy, frozenset(settings.slack_allowlist))), common)
        whatsapp = WhatsAppChannel(WhatsAppConfig(
            token=_secret(settings.whatsapp_token), app_secret=_secret(settings.whatsapp_app_secret),
            verify_token=_secret(settings.whatsapp_verify_token),
            phone_number_id=settings.whatsapp_phone_number_id or "", api_base=settings.whatsapp_api_base,
            max_media_bytes=settings.hearth_max_file_mb * MB),
            rules=SenderRules(settings.whatsapp_sender_policy, frozenset(settings.whatsapp_allowlist)), services=common)
        telegram = TelegramChannel(telegram_config, common) if telegram_config is not None else None
        if telegram is not None:
            outbox.add_sender("telegram", telegram)
            messenger.add_deliverer("telegram", telegram)
        platforms = {"slack", "whatsapp", *(("telegram",) if telegram is not None else ())}

        async def recovered(conversation: ConversationRecord, reply: Reply) -> None:
            # a chat platform's user is waiting for this answer and has no way to ask for it again
            if conversation.channel in platforms:
                text = reply.text if reply.error is None else reply.error.message
                await messenger.deliver_stored(conversation, text, message_id=reply.message_id, buttons=reply.buttons)

        inbox.on_recovered = recovered
        for name, channel in (("slack", slack), ("whatsapp", whatsapp)):
            outbox.add_sender(name, channel.sender if isinstance(channel, WhatsAppChannel) else channel)
            messenger.add_deliverer(name, channel)
        return cls(settings, db, users, conversations, bus, metrics, router, policy, auth, memory, agent, inbox,
                   readiness, skills, skill_store, contexts, messenger, websocket, openai, files, calendar, mcp,
                   channel_store, outbox, identities, slack, whatsapp, telegram)

    # --- start-up ---------------------------------------------------------------------------------------

    async def load_external_skills(self) -> None:
        """Start a worker for each skill in the skills folder and in installed packages, and register the
        manifest it reports (a skill that fails is a problem naming its file and the fix; the rest load).
        A folder or package skill with a built-in's name replaces the built-in: it is the operator's choice.
        Runs once; ``start`` calls it, and so do the ``hearth skills`` commands."""
        if self._external_loaded:
            return
        self._external_loaded = True
        sources, problems = folder(self.settings.skills_dir)
        self.skills.problems.extend(problems)
        sources = [*sources, *installed()]
        executors = [WorkerExecutor(source, home=private_home(self.settings.hearth_data_dir, source))
                     for source in sources]
        results = await asyncio.gather(*(e.handshake() for e in executors), return_exceptions=True)
        for source, executor, result in zip(sources, executors, results, strict=True):
            if isinstance(result, SkillProblemError):
                self.skills.problems.append(result.problem)
                continue
            if isinstance(result, BaseException):
                await executor.stop()
                self.skills.problems.append(SkillProblem(str(source), f"its worker could not start ({result})",
                                                         "run it with python to see the error"))
                continue
            loaded = LoadedSkill(result, executor, source.origin, str(source))
            executor.granted = lambda skill=loaded: skill.granted  # type: ignore[misc]
            replaced = self.skills.replace(loaded)
            if replaced is not None:
                _log.warning("skill %r from %s replaces the built-in skill of that name", result.name, source)
                await replaced.executor.stop()
        await self.skills.apply_state()

    async def start(self, *, serving: bool = True) -> None:
        """Start-up work. ``serving=False`` (an in-process ``hearth chat``) leaves recovery and
        housekeeping to the server that may be running on the same database."""
        await self.load_external_skills()
        await self._first_admin()
        await self.slack.start()
        if self.telegram is not None:
            await self.telegram.start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self.contexts.session = self._session
        await self.skills.apply_state()
        await self.skills.start()
        # MCP servers connect in the background: their tools are offered as each one comes up, and a slow
        # or broken server never holds up start-up.
        self._tasks.append(asyncio.create_task(self.mcp.start(), name="mcp-start"))
        for problem in self.skills.problems:
            _log.warning("skill not loaded: %s", problem)
        if serving:
            restarted = await self.inbox.recover()
            if restarted:
                _log.warning("re-running %d turn(s) interrupted by the last shutdown", restarted)
            self._tasks.append(asyncio.create_task(self._retention_loop(), name="retention"))
            self._tasks.append(asyncio.create_task(self.messenger.run(), name="scheduled-messages"))
            self._tasks.append(asyncio.create_task(self._skill_state_loop(), name="skill-state"))
            self._tasks.append(asyncio.create_task(self.outbox.run(), name="outbox"))
            if self.telegram is not None and self.settings.telegram_mode == "polling":
                self._tasks.append(asyncio.create_task(self.telegram.run_polling(self._stopping),
                                                       name="telegram-polling"))
        await self._say_model_status()

    async def _first_admin(self) -> None:
        if await self.users.count_users():
            return
        created = await self.auth.create_user("admin", "admin", label="first admin, created at start-up")
        path = self.settings.hearth_data_dir / ADMIN_KEY_FILE
        _write_secret(path, created.api_key + "\n")
        self.bus.emit(Event("admin.user_created", None, {"user": "admin", "role": "admin", "by": "start-up"}))
        _log.warning("created the first user 'admin'; its API key is in %s (read it, then delete the file)",
                     path)

    async def _say_model_status(self) -> None:
        for name, result in await self.router.probe():
            if result.ok:
                _log.info("model endpoint %s is ready (%s)", name, result.detail)
            else:
                _log.warning("model endpoint %s is not usable: %s. hearth keeps running and tells users "
                             "that no model is available until one answers.", name, result.detail)

    async def purge_expired(self) -> int:
        """Delete messages older than ``MESSAGE_RETENTION_DAYS`` (none when it is 0); returns how many."""
        days = self.settings.message_retention_days
        if days <= 0:
            return 0
        deleted = await self.conversations.purge_before(utcnow() - timedelta(days=days))
        if deleted:
            _log.info("retention: deleted %d message(s) older than %d day(s)", deleted, days)
            self.bus.emit(Event("retention.purged", None, {"messages": deleted, "days": days}))
        return deleted

    async def _skill_state_loop(self) -> None:
        """Skills enabled, disabled, granted or configured by another process (the CLI, another replica) take
        effect here within a few seconds, without a restart."""
        while True:
            await asyncio.sleep(SKILL_STATE_EVERY)
            try:
                await self.skills.apply_state()
            except HearthError as exc:
                _log.warning("could not re-read the skills' state: %s", exc)

    async def _retention_loop(self) -> None:
        if self.settings.message_retention_days <= 0:
            return
        while True:
            try:
                await self.purge_expired()
            except HearthError as exc:
                _log.warning("retention purge failed: %s", exc)
            await asyncio.sleep(RETENTION_EVERY)

    # --- serving ------------------------------------------------------------------------------------------

    def web_app(self, listeners: Listeners) -> Any:
        server = self.settings.server
        admin = AdminApi(self.auth, self.users, self.bus, self.status, self.metrics.render, CONTENT_TYPE, self.skills,
                         OutboxAdmin(self.channel_store, self.outbox.retry))
        public = [*self.openai.routes(), *FilesApi(self.files, self.auth).routes(),
                  *self.slack.routes(), *self.whatsapp.routes(),
                  *(self.telegram.routes() if self.telegram is not None else ()),
                  *CalendarApi(self.calendar, self.auth).routes(),
                  *ConversationsApi(self.conversations, self.auth, self.files).routes()]
        parts = WebParts(readiness=self.readiness, websocket=self.websocket, public_routes=public,
                         admin=admin,
                         policy=self.policy, admin_token=server.admin_token,
                         admin_allow_ips=server.admin_allow_ips)
        return build_app(parts, listeners.roles)

    def status(self) -> dict[str, Any]:
        return {
            "database": self.db.dialect,
            "turns_running": self.inbox.running,
            "endpoints": [{"name": s.name, "breaker": s.breaker, "in_flight": s.in_flight, "waiting": s.waiting}
                          for s in self.router.status()],
        }

    async def serve(
        self,
        *,
        listeners: Listeners | None = None,
        stop: asyncio.Event | None = None,
        on_ready: Callable[[Listeners], Awaitable[None] | None] | None = None,
        tune: bool = False,
    ) -> None:
        """Serve until ``stop`` is set; binds the configured ports unless ``listeners`` are given.

        ``tune`` sets process-wide garbage collection for a server (``hearth serve`` does; a test that
        runs hearth inside its own process does not)."""
        server = self.settings.server
        listeners = listeners or bind(server)
        stop = stop or asyncio.Event()
        config = server_config(server, listeners)
        app = self.web_app(listeners)
        if tune:
            tune_gc()
        scheme = "https" if server.tls_cert else "http"
        _log.info("hearth listening: %s://%s:%d (API, /ws), ws port %d, admin port %d%s", scheme, server.host,
                  listeners.ports["http"], listeners.ports["ws"], listeners.ports["admin"],
                  "" if server.admin_token else " (management API closed: ADMIN_TOKEN unset)")
        if on_ready is not None:
            result = on_ready(listeners)
            if asyncio.iscoroutine(result):
                await result

        async def shutdown_trigger() -> None:
            await stop.wait()
            _log.info("shutting down: finishing running turns")
            await self.inbox.close(grace=8.0)

        try:
            await run_server(app, config, shutdown_trigger)
        finally:
            listeners.close()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.inbox.close(grace=2.0)
        self._stopping.set()
        await self.slack.close()
        if self.telegram is not None:
            await self.telegram.close()
        await self.whatsapp.aclose()
        await self.mcp.stop()
        await self.skills.stop()
        if self._session is not None:
            await self._session.close()
        await self.router.aclose()
        await self.db.aclose()


def builtin_skills(*, files: FileIntake, calendar: CalendarSkill) -> list[tuple[str, Skill | SkillProblem]]:
    """hearth's own skills, built with what they need."""
    return [("hearth.skills.builtin.time", TimeSkill()), ("hearth.skills.builtin.reminders", RemindersSkill()),
            ("hearth.skills.builtin.calendar", calendar), ("hearth.skills.builtin.files", FilesSkill(files))]


def _telegram_config(settings: Settings) -> TelegramConfig | None:
    """The Telegram channel's config when a bot token is set; its webhook needs ``TELEGRAM_WEBHOOK_SECRET``."""
    token = _secret(settings.telegram_bot_token)
    if not token:
        return None
    secret = _secret(settings.telegram_webhook_secret) or None
    if settings.telegram_mode == "webhook" and secret is None:
        raise ConfigError("TELEGRAM_WEBHOOK_SECRET", "required in webhook mode (try: openssl rand -hex 32), or "
                                                     "set TELEGRAM_MODE=polling")
    return TelegramConfig(token=token, webhook_secret=secret, api_base=settings.telegram_api_base,
                          rules=SenderRules(settings.telegram_sender_policy, frozenset(settings.telegram_allowlist)))


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def _mcp_servers(settings: Settings) -> list[McpServerConfig]:
    path = settings.mcp_config
    if path is None:
        return []
    return load_mcp_config(path)


def _database_check(db: Database) -> Callable[[], Awaitable[CheckResult]]:
    async def check() -> CheckResult:
        try:
            await db.ping()
        except HearthError as exc:
            return CheckResult(False, str(exc))
        return CheckResult(True, db.dialect)

    return check


def _model_check(router: ModelRouter) -> Callable[[], Awaitable[CheckResult]]:
    async def check() -> CheckResult:
        results = await router.probe()
        ok = [name for name, r in results if r.ok]
        detail = "; ".join(f"{name}: {r.detail}" for name, r in results)
        return CheckResult(bool(ok), detail)

    return check


def _write_secret(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
