"""``hearth doctor``: check the configuration, the data directory, the database and each model endpoint."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime

from cryptography import x509
from rich.console import Console
from rich.table import Table

from hearth.errors import ConfigError, HearthError
from hearth.models import make_provider
from hearth.runtime import load_settings
from hearth.store import Database, migrate

OK, WARN, FAIL = "[green]ok[/]", "[yellow]warn[/]", "[red]FAIL[/]"


async def run_doctor(console: Console) -> bool:
    rows: list[tuple[str, str, str]] = []
    healthy = True

    def add(check: str, status: str, detail: str) -> None:
        nonlocal healthy
        healthy = healthy and status != FAIL
        rows.append((check, status, detail))

    try:
        settings = load_settings()
    except ConfigError as exc:
        add("configuration", FAIL, str(exc))
        _print(console, rows)
        return False
    database = settings.database_url.split(":")[0]
    add("configuration", OK, f"{len(settings.endpoints)} model endpoint(s), database {database}")

    data_dir = settings.hearth_data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=data_dir):
            pass
        add("data directory", OK, str(data_dir.resolve()))
    except OSError as exc:
        add("data directory", FAIL, f"{data_dir}: {exc.strerror}")

    db = Database(settings.database_url)
    try:
        await db.ping()
        current = await migrate.current_revision(db)
        head = migrate.head_revision()
        if current == head:
            add("database", OK, f"{db.dialect}, schema at {current}")
        else:
            add("database", WARN, f"{db.dialect}, schema at {current or 'none'}, latest {head}: "
                                  "`hearth db upgrade` (or start hearth) applies it")
    except HearthError as exc:
        add("database", FAIL, str(exc))
    finally:
        await db.aclose()

    for endpoint in settings.endpoints:
        provider = make_provider(endpoint, connect_timeout=settings.ai_model_connect_timeout,
                                 context_tokens=settings.ai_model_context_tokens)
        try:
            result = await provider.probe()
        finally:
            await provider.aclose()
        status = OK if result.ok else WARN
        add(f"model {endpoint.name}", status, f"{result.detail} ({result.latency_ms:.0f} ms)")
    if not any(r[0].startswith("model ") and r[1] == OK for r in rows):
        add("model", FAIL, "no endpoint is usable: hearth runs, but tells users that no model is available")

    if settings.hearth_tls_cert:
        try:
            cert = x509.load_pem_x509_certificate(settings.hearth_tls_cert.read_bytes())
            left = cert.not_valid_after_utc - datetime.now(UTC)
            status = FAIL if left.days < 0 else WARN if left.days < 14 else OK
            add("TLS certificate", status, f"expires {cert.not_valid_after_utc:%Y-%m-%d} ({left.days} days)")
        except (OSError, ValueError) as exc:
            add("TLS certificate", FAIL, f"{settings.hearth_tls_cert}: {exc}")
    else:
        add("TLS", WARN, "no certificate: serve behind a TLS proxy, or set HEARTH_TLS_CERT and HEARTH_TLS_KEY")
    add("management API", OK if settings.admin_token else WARN,
        "ADMIN_TOKEN set" if settings.admin_token else "closed (ADMIN_TOKEN unset)")
    if os.name == "posix" and data_dir.exists() and data_dir.stat().st_mode & 0o077:
        add("data permissions", WARN, f"{data_dir} is readable by other users (chmod 700)")
    _print(console, rows)
    return healthy


def _print(console: Console, rows: list[tuple[str, str, str]]) -> None:
    table = Table("check", "status", "detail", title="hearth doctor")
    for row in rows:
        table.add_row(*row)
    console.print(table)
