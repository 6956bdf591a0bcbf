"""Settings types: every configuration variable hearth reads, with its default and its check.

``Settings`` is read from the environment and a ``.env`` file, but only by the composition root
(``hearth.runtime``); every other part receives the small frozen settings object it needs
(``RouterSettings``, ``MemorySettings``, ...), derived here. The README's configuration table is
generated from the field descriptions below and a test keeps the two in step.

The seed's own names are kept as they are (``AI_MODEL_ENDPOINT``, ``MESSAGE_RETENTION_DAYS``,
``ADMIN_TOKEN``); hearth's own start with ``HEARTH_``.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hearth.errors import ConfigError
from hearth.types import RetryPolicy

Provider = Literal["ollama", "openai"]
PROVIDERS: tuple[str, ...] = ("ollama", "openai")


def _field(default: Any, env: str, doc: str, **kw: Any) -> Any:
    return Field(default, validation_alias=AliasChoices(env), description=doc, **kw)


@dataclass(frozen=True, slots=True)
class EndpointSettings:
    """One model endpoint: where, which wire protocol, which model, and its key (never logged)."""

    url: str
    provider: Provider
    model: str
    api_key: str | None = None

    @property
    def name(self) -> str:
        """A label safe for logs and metrics: provider, host and model, never the key."""
        parts = urlsplit(self.url)
        return f"{self.provider}:{parts.hostname}:{parts.port or ''}/{self.model}"

    def __repr__(self) -> str:
        return f"EndpointSettings({self.name!r})"


@dataclass(frozen=True, slots=True)
class RouterSettings:
    endpoints: tuple[EndpointSettings, ...]
    max_concurrency: int = 8
    queue_size: int = 64
    queue_timeout: float = 30.0
    connect_timeout: float = 5.0
    first_token_timeout: float = 60.0
    total_timeout: float = 300.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker_threshold: int = 5
    breaker_cooldown: float = 30.0


@dataclass(frozen=True, slots=True)
class MemorySettings:
    context_tokens: int = 8192
    reply_tokens: int = 1024
    system_prompt: str = ""


@dataclass(frozen=True, slots=True)
class AgentSettings:
    max_tool_rounds: int = 8
    turn_attempts: int = 3


@dataclass(frozen=True, slots=True)
class StoreSettings:
    database_url: str
    data_dir: Path
    retention_days: int = 7


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    http_port: int = 8000
    ws_port: int = 50000
    admin_port: int = 8080
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_min_version: str = "1.2"
    admin_allow_ips: tuple[str, ...] = ()
    ws_max_message_bytes: int = 65536
    admin_token: str | None = None


DEFAULT_SYSTEM_PROMPT = (
    "You are hearth, a helpful assistant that runs on its user's own machines. "
    "Answer clearly and concisely. When a tool can answer better than you can, use it."
)

PRIVATE_NETWORKS = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"


class Settings(BaseSettings):
    """Every variable hearth reads. Only ``hearth.runtime`` instantiates this."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True,
        frozen=True,
    )

    # --- the seed's names --------------------------------------------------------------------------
    ai_model_endpoint: str = _field(
        "http://localhost:11434", "AI_MODEL_ENDPOINT",
        "Base URL of the model server (Ollama's, or an OpenAI-compatible one such as vLLM or llama.cpp).")
    message_retention_days: int = _field(
        7, "MESSAGE_RETENTION_DAYS",
        "Messages older than this many days are deleted (checked hourly); 0 keeps them forever.", ge=0)
    admin_token: SecretStr | None = _field(
        None, "ADMIN_TOKEN",
        "Bearer token for the management port (at least 16 characters). Unset: the management API is closed.")

    # --- the model -----------------------------------------------------------------------------------
    ai_model_provider: Provider = _field(
        "ollama", "AI_MODEL_PROVIDER",
        "Wire protocol of `AI_MODEL_ENDPOINT`: `ollama` (native `/api/chat`) or `openai` (`/v1/chat/completions`).")
    ai_model_name: str = _field("llama3.2", "AI_MODEL_NAME", "Model to ask for on the model server.",
                                min_length=1)
    ai_model_api_key: SecretStr | None = _field(
        None, "AI_MODEL_API_KEY", "API key sent as a bearer token to the model server, if it needs one.")
    ai_model_fallbacks: Annotated[tuple[EndpointSettings, ...], NoDecode] = _field(
        (), "AI_MODEL_FALLBACKS",
        "Further endpoints tried in order when the main one fails before its first token: comma-separated "
        "`[provider+]URL[#model]` (e.g. `openai+http://vllm:8000/v1#qwen2.5`), or a JSON list of "
        "`{url, provider, model, api_key}`. Unset parts inherit the main endpoint's.")
    ai_model_context_tokens: int = _field(
        8192, "AI_MODEL_CONTEXT_TOKENS", "The model's context length; prompts are built within it.", ge=512)
    ai_model_reply_tokens: int = _field(
        1024, "AI_MODEL_REPLY_TOKENS", "Tokens reserved for the answer (sent as the reply limit).", ge=16)
    ai_model_max_concurrency: int = _field(
        8, "AI_MODEL_MAX_CONCURRENCY", "Requests in flight per endpoint; more wait in the queue.", ge=1)
    ai_model_queue_size: int = _field(
        64, "AI_MODEL_QUEUE_SIZE",
        "Requests that may wait per endpoint; beyond it a request fails over or gets a 'busy' answer.", ge=0)
    ai_model_queue_timeout: float = _field(
        30.0, "AI_MODEL_QUEUE_TIMEOUT", "Seconds a request may wait in an endpoint's queue.", gt=0)
    ai_model_connect_timeout: float = _field(
        5.0, "AI_MODEL_CONNECT_TIMEOUT", "Seconds to connect to a model endpoint.", gt=0)
    ai_model_first_token_timeout: float = _field(
        60.0, "AI_MODEL_FIRST_TOKEN_TIMEOUT",
        "Seconds to wait for the first token (and between tokens) before failing over.", gt=0)
    ai_model_total_timeout: float = _field(
        300.0, "AI_MODEL_TOTAL_TIMEOUT", "Seconds a whole model answer may take.", gt=0)
    ai_model_retries: int = _field(
        2, "AI_MODEL_RETRIES", "Retries per endpoint for retryable errors (refused, 5xx, 429), with backoff.",
        ge=0, le=10)
    ai_model_breaker_threshold: int = _field(
        5, "AI_MODEL_BREAKER_THRESHOLD", "Consecutive failures that open an endpoint's circuit breaker.", ge=1)
    ai_model_breaker_cooldown: float = _field(
        30.0, "AI_MODEL_BREAKER_COOLDOWN", "Seconds an open breaker waits before one trial request.", gt=0)

    # --- hearth ----------------------------------------------------------------------------------------
    hearth_data_dir: Path = _field(Path("./data"), "HEARTH_DATA_DIR",
                                   "Where hearth keeps its database, files and keys.")
    hearth_database_url: str | None = _field(
        None, "HEARTH_DATABASE_URL",
        "Database URL. Default: SQLite (WAL) at `$HEARTH_DATA_DIR/hearth.db`; "
        "`postgresql+asyncpg://user:pass@host/db` for PostgreSQL.")
    hearth_host: str = _field(
        "127.0.0.1", "HEARTH_HOST", "Address the three ports listen on (`0.0.0.0` in a container).")
    hearth_http_port: int = _field(
        8000, "HEARTH_HTTP_PORT", "Public HTTP port: API, `/ws`, webhooks, web chat.", ge=0, le=65535)
    hearth_ws_port: int = _field(50000, "HEARTH_WS_PORT", "WebSocket port (`/ws`).", ge=0, le=65535)
    hearth_admin_port: int = _field(
        8080, "HEARTH_ADMIN_PORT", "Management port: admin API and `/metrics`.", ge=0, le=65535)
    hearth_admin_allow_ips: Annotated[tuple[str, ...], NoDecode] = _field(
        tuple(PRIVATE_NETWORKS.split(",")), "HEARTH_ADMIN_ALLOW_IPS",
        "Comma-separated CIDRs allowed to reach the management port (default: loopback and private networks).")
    hearth_tls_cert: Path | None = _field(
        None, "HEARTH_TLS_CERT", "PEM certificate (chain); with `HEARTH_TLS_KEY`, every port serves TLS.")
    hearth_tls_key: Path | None = _field(None, "HEARTH_TLS_KEY", "PEM private key for `HEARTH_TLS_CERT`.")
    hearth_tls_min_version: Literal["1.2", "1.3"] = _field(
        "1.2", "HEARTH_TLS_MIN_VERSION", "Oldest TLS version accepted (`1.2` or `1.3`).")
    hearth_system_prompt: str = _field(
        DEFAULT_SYSTEM_PROMPT, "HEARTH_SYSTEM_PROMPT", "System prompt put first in every conversation.")
    hearth_max_tool_rounds: int = _field(
        8, "HEARTH_MAX_TOOL_ROUNDS", "Model-tool round trips allowed in one turn.", ge=1, le=64)
    hearth_turn_attempts: int = _field(
        3, "HEARTH_TURN_ATTEMPTS",
        "Times a turn interrupted by a crash is retried at start-up before the user is told it failed.",
        ge=1)
    hearth_ws_max_message_bytes: int = _field(
        65536, "HEARTH_WS_MAX_MESSAGE_BYTES", "Largest WebSocket frame accepted; larger gets an error frame.",
        ge=1024)
    hearth_skills_dir: Path | None = _field(
        None, "HEARTH_SKILLS_DIR",
        "Folder of your own skills (`.py` files or packages), each run in its own worker process. Default: "
        "`$HEARTH_DATA_DIR/skills` if it exists.")
    hearth_mcp_config: Path | None = _field(
        None, "HEARTH_MCP_CONFIG",
        "JSON file of MCP servers (`{\"mcpServers\": {...}}`, stdio or streamable HTTP) whose tools hearth offers. "
        "Default: `$HEARTH_DATA_DIR/mcp.json` if it exists.")
    hearth_max_file_mb: int = _field(
        20, "HEARTH_MAX_FILE_MB", "Largest file a user can send (any channel or `POST /v1/files`), in MiB.",
        ge=1, le=1024)
    hearth_log_level: Literal["debug", "info", "warning", "error"] = _field(
        "info", "HEARTH_LOG_LEVEL", "Log level.")
    hearth_log_format: Literal["console", "json"] = _field(
        "console", "HEARTH_LOG_FORMAT", "`console` for people, `json` for Filebeat/Logstash.")

    # --- chat platforms ------------------------------------------------------------------------------------
    telegram_bot_token: SecretStr | None = _field(
        None, "TELEGRAM_BOT_TOKEN", "Telegram bot token from @BotFather. Unset: the Telegram channel is off.")
    telegram_webhook_secret: SecretStr | None = _field(
        None, "TELEGRAM_WEBHOOK_SECRET",
        "Secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token` (1-256 of `A-Za-z0-9_-`); required for the "
        "webhook, which is off without it.")
    telegram_api_base: str = _field(
        "https://api.telegram.org", "TELEGRAM_API_BASE", "Bot API server (a self-hosted `telegram-bot-api` too).")
    telegram_mode: Literal["webhook", "polling"] = _field(
        "webhook", "TELEGRAM_MODE", "`webhook` (Telegram calls `/channels/telegram/webhook`) or `polling` "
        "(hearth asks Telegram; for hosts with no public URL).")
    telegram_sender_policy: Literal["pairing", "allowlist", "open"] = _field(
        "pairing", "TELEGRAM_SENDER_POLICY", "Unknown senders: `pairing` (a code an admin approves with "
        "`hearth users pair CODE`), `allowlist` (only `TELEGRAM_ALLOWLIST`), or `open`.")
    telegram_allowlist: Annotated[tuple[str, ...], NoDecode] = _field(
        (), "TELEGRAM_ALLOWLIST", "Comma-separated Telegram user ids allowed in with the `allowlist` policy.")
    slack_bot_token: SecretStr | None = _field(
        None, "SLACK_BOT_TOKEN", "Slack bot token (`xoxb-...`). Unset: the Slack channel is off.")
    slack_signing_secret: SecretStr | None = _field(
        None, "SLACK_SIGNING_SECRET", "Slack app signing secret; requests to `/channels/slack/*` are verified "
        "with it. Unset: the Slack channel is off.")
    slack_api_base: str = _field("https://slack.com/api/", "SLACK_API_BASE", "Slack Web API base URL.")
    slack_sender_policy: Literal["pairing", "allowlist", "open"] = _field(
        "pairing", "SLACK_SENDER_POLICY", "Unknown senders on Slack: `pairing`, `allowlist` or `open`.")
    slack_allowlist: Annotated[tuple[str, ...], NoDecode] = _field(
        (), "SLACK_ALLOWLIST", "Comma-separated Slack user ids allowed in with the `allowlist` policy.")
    whatsapp_token: SecretStr | None = _field(
        None, "WHATSAPP_TOKEN", "WhatsApp Cloud API access token. Unset: the WhatsApp channel is off.")
    whatsapp_app_secret: SecretStr | None = _field(
        None, "WHATSAPP_APP_SECRET", "Meta app secret; webhook calls are verified with `X-Hub-Signature-256`.")
    whatsapp_verify_token: SecretStr | None = _field(
        None, "WHATSAPP_VERIFY_TOKEN", "Token you choose for the webhook's `hub.verify_token` handshake.")
    whatsapp_phone_number_id: str | None = _field(
        None, "WHATSAPP_PHONE_NUMBER_ID", "The business phone number's id that hearth sends from.")
    whatsapp_api_base: str = _field(
        "https://graph.facebook.com/v21.0", "WHATSAPP_API_BASE", "Graph API base URL, with its version.")
    whatsapp_sender_policy: Literal["pairing", "allowlist", "open"] = _field(
        "pairing", "WHATSAPP_SENDER_POLICY", "Unknown senders on WhatsApp: `pairing`, `allowlist` or `open`.")
    whatsapp_allowlist: Annotated[tuple[str, ...], NoDecode] = _field(
        (), "WHATSAPP_ALLOWLIST", "Comma-separated phone numbers (as WhatsApp sends them, e.g. `4917...`) "
        "allowed in with the `allowlist` policy.")

    # --- checks --------------------------------------------------------------------------------------------

    @field_validator("ai_model_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        return _check_http_url(value)

    @field_validator("admin_token")
    @classmethod
    def _check_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (try: openssl rand -hex 32)")
        return value

    @field_validator("ai_model_api_key")
    @classmethod
    def _empty_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @field_validator("ai_model_fallbacks", mode="before")
    @classmethod
    def _parse_fallbacks(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(_parse_endpoint_specs(value))
        return value

    @field_validator("hearth_admin_allow_ips", mode="before")
    @classmethod
    def _parse_cidrs(cls, value: Any) -> Any:
        items = value.split(",") if isinstance(value, str) else list(value)
        cidrs = []
        for item in (i.strip() for i in items):
            if not item:
                continue
            try:
                cidrs.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP network (e.g. 10.0.0.0/8)") from None
        return tuple(cidrs)

    @field_validator("telegram_allowlist", "slack_allowlist", "whatsapp_allowlist", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(i.strip().lstrip("+") for i in items if str(i).strip())

    @field_validator("telegram_api_base", "slack_api_base", "whatsapp_api_base")
    @classmethod
    def _check_api_base(cls, value: str) -> str:
        return _check_http_url(value)

    @field_validator("telegram_bot_token", "telegram_webhook_secret", "slack_bot_token", "slack_signing_secret",
                     "whatsapp_token", "whatsapp_app_secret", "whatsapp_verify_token")
    @classmethod
    def _empty_secret_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @field_validator("hearth_database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return normalise_database_url(value.strip())

    @field_validator("hearth_tls_cert", "hearth_tls_key")
    @classmethod
    def _check_file(cls, value: Path | None) -> Path | None:
        if value is None or str(value) == "":
            return None
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _check_pairs(self) -> Settings:
        if (self.hearth_tls_cert is None) != (self.hearth_tls_key is None):
            missing = "HEARTH_TLS_KEY" if self.hearth_tls_key is None else "HEARTH_TLS_CERT"
            raise ValueError(f"{missing}: must be set together with the other TLS variable")
        if self.ai_model_reply_tokens >= self.ai_model_context_tokens // 2:
            raise ValueError("AI_MODEL_REPLY_TOKENS: must be less than half of AI_MODEL_CONTEXT_TOKENS")
        return self

    # --- what each part receives -------------------------------------------------------------------------

    @property
    def primary_endpoint(self) -> EndpointSettings:
        key = self.ai_model_api_key.get_secret_value() if self.ai_model_api_key else None
        url = self.ai_model_endpoint
        return EndpointSettings(url=url, provider=self.ai_model_provider, model=self.ai_model_name, api_key=key)

    @property
    def endpoints(self) -> tuple[EndpointSettings, ...]:
        primary = self.primary_endpoint
        resolved = [primary]
        for spec in self.ai_model_fallbacks:
            resolved.append(EndpointSettings(
                url=spec.url,
                provider=spec.provider or primary.provider,
                model=spec.model or primary.model,
                api_key=spec.api_key if spec.api_key is not None else primary.api_key,
            ))
        return tuple(resolved)

    @property
    def router(self) -> RouterSettings:
        return RouterSettings(
            endpoints=self.endpoints,
            max_concurrency=self.ai_model_max_concurrency,
            queue_size=self.ai_model_queue_size,
            queue_timeout=self.ai_model_queue_timeout,
            connect_timeout=self.ai_model_connect_timeout,
            first_token_timeout=self.ai_model_first_token_timeout,
            total_timeout=self.ai_model_total_timeout,
            retry=RetryPolicy(attempts=self.ai_model_retries + 1),
            breaker_threshold=self.ai_model_breaker_threshold,
            breaker_cooldown=self.ai_model_breaker_cooldown,
        )

    @property
    def memory(self) -> MemorySettings:
        return MemorySettings(
            context_tokens=self.ai_model_context_tokens,
            reply_tokens=self.ai_model_reply_tokens,
            system_prompt=self.hearth_system_prompt,
        )

    @property
    def agent(self) -> AgentSettings:
        return AgentSettings(max_tool_rounds=self.hearth_max_tool_rounds,
                             turn_attempts=self.hearth_turn_attempts)

    @property
    def skills_dir(self) -> Path | None:
        if self.hearth_skills_dir is not None:
            return self.hearth_skills_dir
        default = self.hearth_data_dir / "skills"
        return default if default.is_dir() else None

    @property
    def mcp_config(self) -> Path | None:
        if self.hearth_mcp_config is not None:
            return self.hearth_mcp_config
        default = self.hearth_data_dir / "mcp.json"
        return default if default.is_file() else None

    @property
    def database_url(self) -> str:
        if self.hearth_database_url:
            return self.hearth_database_url
        return f"sqlite:///{(self.hearth_data_dir / 'hearth.db').resolve()}"

    @property
    def store(self) -> StoreSettings:
        return StoreSettings(database_url=self.database_url, data_dir=self.hearth_data_dir,
                             retention_days=self.message_retention_days)

    @property
    def server(self) -> ServerSettings:
        return ServerSettings(
            host=self.hearth_host,
            http_port=self.hearth_http_port,
            ws_port=self.hearth_ws_port,
            admin_port=self.hearth_admin_port,
            tls_cert=self.hearth_tls_cert,
            tls_key=self.hearth_tls_key,
            tls_min_version=self.hearth_tls_min_version,
            admin_allow_ips=self.hearth_admin_allow_ips,
            ws_max_message_bytes=self.hearth_ws_max_message_bytes,
            admin_token=self.admin_token.get_secret_value() if self.admin_token else None,
        )


# --- parsing helpers ---------------------------------------------------------------------------------------


def _check_http_url(value: str) -> str:
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL (got {value!r})")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"has an invalid port (got {value!r})") from None
    return value.rstrip("/")


def _parse_endpoint_specs(raw: str) -> list[EndpointSettings]:
    """Parse ``AI_MODEL_FALLBACKS``; provider/model may be empty and are inherited later."""
    raw = raw.strip()
    if not raw:
        return []
    if raw.startswith("["):
        try:
            items = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not valid JSON ({exc.msg} at character {exc.pos})") from None
        if not isinstance(items, list) or not all(isinstance(i, dict) and "url" in i for i in items):
            raise ValueError("must be a JSON list of objects that each have a 'url'")
        result = []
        for item in items:
            provider = item.get("provider") or ""
            if provider and provider not in PROVIDERS:
                raise ValueError(f"provider {provider!r} is not one of {', '.join(PROVIDERS)}")
            result.append(EndpointSettings(url=_check_http_url(str(item["url"])), provider=provider,  # type: ignore[arg-type]
                                           model=str(item.get("model") or ""), api_key=item.get("api_key")))
        return result
    result = []
    for spec in (s.strip() for s in raw.split(",")):
        if not spec:
            continue
        provider = ""
        if "+" in spec.split("://", 1)[0]:
            provider, spec = spec.split("+", 1)
            if provider not in PROVIDERS:
                raise ValueError(f"provider {provider!r} is not one of {', '.join(PROVIDERS)}")
        url, _, model = spec.partition("#")
        result.append(EndpointSettings(url=_check_http_url(url), provider=provider, model=model))  # type: ignore[arg-type]
    return result


def normalise_database_url(url: str) -> str:
    """Accept the usual spellings and pick the async driver hearth uses for each database."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"is not a database URL (got {url!r})")
    if scheme in ("sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"):
        return f"sqlite://{rest}"
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        return f"postgresql+asyncpg://{rest}"
    raise ValueError("must be sqlite:///PATH or postgresql+asyncpg://USER:PASS@HOST/DB "
                     f"(got scheme {scheme!r})")


def config_error(exc: ValidationError) -> ConfigError:
    """Turn pydantic's report into one line naming the variable and what is wrong with it."""
    first = exc.errors()[0]
    loc = first.get("loc") or ()
    variable = ""
    if loc:
        name = str(loc[0])
        field = Settings.model_fields.get(name)
        if field is not None and isinstance(field.validation_alias, AliasChoices):
            variable = str(field.validation_alias.choices[0])
        else:
            variable = name.upper()
    message = str(first.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    if not variable and ": " in message and message.split(": ", 1)[0].isupper():
        variable, message = message.split(": ", 1)
    got = first.get("input")
    if variable and isinstance(got, str | int | float) and "SECRET" not in variable and "TOKEN" not in variable \
            and "KEY" not in variable and "got" not in message:
        message = f"{message} (got {got!r})"
    return ConfigError(variable or "configuration", message)


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting, in declaration order: the README's table."""
    rows = []
    for info in Settings.model_fields.values():
        alias = info.validation_alias
        assert isinstance(alias, AliasChoices)
        default = info.default
        if isinstance(default, tuple):
            shown = ",".join(str(d) for d in default) if default else "(none)"
        elif default is None:
            shown = "(none)"
        elif isinstance(default, Path) and not default.is_absolute():
            shown = f"./{default}"
        else:
            shown = str(default)
        rows.append((str(alias.choices[0]), shown, info.description or ""))
    return rows
