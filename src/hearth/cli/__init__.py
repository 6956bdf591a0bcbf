"""The ``hearth`` command: serve, chat, users, skills, doctor, db."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hearth import __version__
from hearth.errors import ConfigError, HearthError, InvalidRequest, NotFound
from hearth.ops import logging as hearth_logging
from hearth.runtime import Runtime, load_settings
from hearth.settings import Settings
from hearth.store import Database, migrate
from hearth.types import Event
from hearth.web.admin_outbox import DEFAULT_LIMIT, MAX_LIMIT, describe_outbox_item

from .chat import chat_in_process, chat_remote
from .doctor import run_doctor
from .skills import skills_app

app = typer.Typer(help="hearth: a self-hosted AI assistant.", no_args_is_help=True, add_completion=False)
users_app = typer.Typer(help="Manage users and their API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
channels_app = typer.Typer(help="Chat platform channels: the outbox and its dead letters.", no_args_is_help=True)
app.add_typer(channels_app, name="channels")
app.add_typer(users_app, name="users")
app.add_typer(db_app, name="db")
app.add_typer(skills_app, name="skills")

console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        err.print(f"[bold red]hearth: configuration error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run on uvloop where available: it cuts the event loop's share of CPU per message."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.run(main())
    return uvloop.run(main())


async def _with_runtime(settings: Settings, work: Callable[[Runtime], Awaitable[T]]) -> T:
    runtime = await Runtime.create(settings)
    try:
        return await work(runtime)
    finally:
        await runtime.aclose()


def _fail(exc: HearthError) -> typer.Exit:
    err.print(f"[bold red]hearth:[/] {exc}", highlight=False)
    return typer.Exit(1)


@app.command()
def serve() -> None:
    """Start hearth: the API, /ws and the management port, until SIGINT or SIGTERM."""
    settings = _settings()
    hearth_logging.configure_in(settings.hearth_data_dir, settings.hearth_log_level, settings.hearth_log_format)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        runtime = await Runtime.create(settings)
        try:
            await runtime.start()
            await runtime.serve(stop=stop, tune=True)
        finally:
            await runtime.aclose()

    try:
        _run(main)
    except ConfigError as exc:
        err.print(f"[bold red]hearth: configuration error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    except HearthError as exc:
        raise _fail(exc) from None
    except OSError as exc:
        err.print(f"[bold red]hearth: cannot listen:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def chat(
    url: str = typer.Option(None, envvar="HEARTH_URL", help="ws(s)://host:port/ws of a running hearth; "
                            "without it, hearth runs in this process on the local database."),
    token: str = typer.Option(None, envvar="HEARTH_API_KEY", help="API key (remote mode)."),
    conversation: str = typer.Option(None, "--conversation", "-c", help="Continue this conversation id."),
    user: str = typer.Option(None, "--user", "-u", help="In-process mode: talk as this user (default: the "
                             "first admin)."),
) -> None:
    """Talk to hearth in the terminal, with the answer streaming in. Ctrl-D or /quit ends."""
    if url:
        if not token:
            err.print("hearth chat: --token (or HEARTH_API_KEY) is needed with --url")
            raise typer.Exit(2)
        code = _run(lambda: chat_remote(url, token, conversation, console))
    else:
        settings = _settings()
        hearth_logging.configure_in(settings.hearth_data_dir, "warning", settings.hearth_log_format)
        try:
            code = _run(lambda: _with_runtime(settings, lambda rt: chat_in_process(rt, user, conversation,
                                                                                     console)))
        except HearthError as exc:
            raise _fail(exc) from None
    raise typer.Exit(code)


@users_app.command("add")
def users_add(
    name: str,
    role: str = typer.Option("user", "--role", "-r", help="admin, user or guest."),
) -> None:
    """Create a user and print their API key (shown this once)."""
    settings = _settings()
    hearth_logging.configure_in(settings.hearth_data_dir, "warning", settings.hearth_log_format)

    async def work(runtime: Runtime) -> Any:
        return await runtime.auth.create_user(name, role, label="created with hearth users add")

    try:
        created = _run(lambda: _with_runtime(settings, work))
    except HearthError as exc:
        raise _fail(exc) from None
    console.print(f"created user [bold]{created.user.name}[/] (role {created.user.role})")
    console.print("API key (shown once, keep it safe):")
    print(created.api_key, flush=True)


@users_app.command("list")
def users_list() -> None:
    """List users."""
    settings = _settings()
    hearth_logging.configure_in(settings.hearth_data_dir, "warning", settings.hearth_log_format)

    async def work(runtime: Runtime) -> Any:
        return await runtime.users.list_users()

    try:
        users = _run(lambda: _with_runtime(settings, work))
    except HearthError as exc:
        raise _fail(exc) from None
    table = Table("id", "name", "role", "disabled", "created")
    for u in users:
        table.add_row(str(u.id), u.name, u.role, "yes" if u.disabled else "", u.created_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@users_app.command("pair")
def users_pair(
    code: str,
    user: str | None = typer.Option(None, "--user", "-u",
                                    help="Link the account to this existing user (default: a new user)."),
    role: str = typer.Option("user", "--role", "-r", help="Role of the new user: admin, user or guest."),
) -> None:
    """Approve a pairing code that hearth sent to someone on Telegram, Slack or WhatsApp."""
    settings = _settings()
    hearth_logging.configure_in(settings.hearth_data_dir, "warning", settings.hearth_log_format)

    async def work(runtime: Runtime) -> Any:
        wanted = code.strip().upper().replace("-", "").replace(" ", "")
        pending = {p.code: p for p in await runtime.channel_store.pending_pairings()}
        pairing = pending.get(wanted)
        if pairing is None:
            raise NotFound(f"no pending pairing code {code!r} (codes expire after a day; ask the person to write "
                           "to the bot again for a new one)")
        if user is not None:
            record = await runtime.users.get_user_by_name(user)
            if record is None:
                raise NotFound(f"no user named {user!r} (see hearth users list)")
        else:
            linked = await runtime.users.find_identity(pairing.channel, pairing.external_id)
            if linked is not None:  # checked before a new user is made, so a refusal leaves no stray user
                raise InvalidRequest(f"that {pairing.channel} account is already linked to user {linked[1].name!r}",
                                     code="exists")
            record = await runtime.identities.new_user(pairing.channel, pairing.external_id, pairing.display_name,
                                                       role=role)
        approved = await runtime.channel_store.approve_pairing(wanted, record.id)
        runtime.bus.emit(Event("identity.paired", None, {"channel": approved.channel, "user": record.name}))
        return approved, record

    try:
        approved, record = _run(lambda: _with_runtime(settings, work))
    except HearthError as exc:
        raise _fail(exc) from None
    who = approved.display_name or approved.external_id
    console.print(f"paired {approved.channel} account {who} with user [bold]{record.name}[/]")


@channels_app.command("outbox")
def channels_outbox(
    dead: bool = typer.Option(False, "--dead", help="Only the dead letters: messages that kept failing."),
    channel: str | None = typer.Option(None, "--channel", "-c", help="Only this channel."),
    limit: int = typer.Option(DEFAULT_LIMIT, "--limit", "-n", min=1, max=MAX_LIMIT),
) -> None:
    """List messages in the outbox, newest first."""
    settings = _settings()
    hearth_logging.configure_in(settings.hearth_data_dir, "warning", settings.hearth_log_format)

    async def work(runtime: Runtime) -> Any:
        return await runtime.channel_store.list(status="dead" if dead else None, channel=channel, limit=limit)

    try:
        items = _run(lambda: _with_runtime(settings, work))
    except HearthError as exc:
        raise _fail(exc) from None
    table = Table("id", "channel", "to", "status", "attempts", "created", "last error")
    for item in map(describe_outbox_item, items):  # what GET /admin/outbox shows, in a table
        table.add_row(str(item["id"]), escape(item["channel"]), escape(item["address"]), item["status"],
                      str(item["attempts"]), item["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
                      escape((item["last_error"] or "")[:80]))
    console.print(table)


@channels_app.command("retry")
def channels_retry(ids: list[int]) -> None:
    """Send dead messages again (a running server picks them up within seconds)."""
    settings = _settings()
    hearth_logging.configure_in(settings.hearth_data_dir, "warning", settings.hearth_log_format)

    async def work(runtime: Runtime) -> Any:
        return [await runtime.outbox.retry(item_id) for item_id in ids]

    try:
        retried = _run(lambda: _with_runtime(settings, work))
    except HearthError as exc:
        raise _fail(exc) from None
    for item in retried:
        console.print(f"message {item.id} to {item.channel}:{item.address} is queued again")


telegram_app = typer.Typer(help="The Telegram channel.", no_args_is_help=True)
channels_app.add_typer(telegram_app, name="telegram")


@telegram_app.command("set-webhook")
def telegram_set_webhook(url: str) -> None:
    """Tell Telegram to send updates to URL (https://your.host/channels/telegram/webhook), with the secret."""
    settings = _settings()
    hearth_logging.configure_in(settings.hearth_data_dir, "warning", settings.hearth_log_format)

    async def work(runtime: Runtime) -> Any:
        if runtime.telegram is None:
            raise ConfigError("TELEGRAM_BOT_TOKEN", "not set: the Telegram channel is off")
        if not url.startswith("https://") or not url.rstrip("/").endswith("/channels/telegram/webhook"):
            raise InvalidRequest("the URL must be https://<your host>/channels/telegram/webhook (Telegram "
                                 "only calls HTTPS webhooks)")
        await runtime.telegram.set_webhook(url)

    try:
        _run(lambda: _with_runtime(settings, work))
    except ConfigError as exc:
        err.print(f"[bold red]hearth: configuration error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    except HearthError as exc:
        raise _fail(exc) from None
    console.print(f"Telegram will send updates to {url}")


@app.command()
def doctor() -> None:
    """Check configuration, database and every model endpoint; exit 1 if anything is wrong."""
    ok = _run(lambda: run_doctor(console))
    raise typer.Exit(0 if ok else 1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (also done at start-up; safe while other processes run it)."""
    settings = _settings()
    hearth_logging.configure_in(settings.hearth_data_dir, "warning", settings.hearth_log_format)

    async def work() -> str | None:
        db = Database(settings.database_url)
        try:
            await migrate.upgrade(db)
            return await migrate.current_revision(db)
        finally:
            await db.aclose()

    try:
        revision = _run(work)
    except HearthError as exc:
        raise _fail(exc) from None
    console.print(f"database is at revision {revision}")


@app.command()
def version() -> None:
    """Print hearth's version."""
    print(__version__)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
