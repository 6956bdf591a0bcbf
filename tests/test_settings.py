"""Configuration: every variable documented, bad values refused with one line naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.errors import ConfigError
from hearth.runtime import load_settings
from hearth.settings import settings_table

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_documents_every_variable_and_its_default() -> None:
    for variable, default, description in settings_table():
        row = f"| `{variable}` | `{default}` | {description} |"
        assert row in README, f"README's configuration table is missing or stale for {variable}"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the repository
    for variable, _, _ in settings_table():
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("HEARTH_HTTP_PORT", "abc", "HEARTH_HTTP_PORT: Input should be a valid integer"),
    ("HEARTH_WS_PORT", "70000", "HEARTH_WS_PORT: Input should be less than or equal to 65535"),
    ("AI_MODEL_ENDPOINT", "localhost:11434", "AI_MODEL_ENDPOINT: must be an http:// or https:// URL"),
    ("AI_MODEL_PROVIDER", "claude", "AI_MODEL_PROVIDER: Input should be 'ollama' or 'openai'"),
    ("MESSAGE_RETENTION_DAYS", "-1", "MESSAGE_RETENTION_DAYS: Input should be greater than or equal to 0"),
    ("ADMIN_TOKEN", "short", "ADMIN_TOKEN: must be at least 16 characters"),
    ("AI_MODEL_FALLBACKS", "grpc+http://x:1", "AI_MODEL_FALLBACKS: provider 'grpc' is not one of ollama, openai"),
    ("AI_MODEL_FALLBACKS", "[{]", "AI_MODEL_FALLBACKS: is not valid JSON"),
    ("AI_MODEL_FALLBACKS", "ftp://x", "AI_MODEL_FALLBACKS: must be an http:// or https:// URL"),
    ("HEARTH_DATABASE_URL", "mysql://x/y", "HEARTH_DATABASE_URL: must be sqlite:///PATH or postgresql"),
    ("HEARTH_ADMIN_ALLOW_IPS", "10.0.0.0/8,lan", "HEARTH_ADMIN_ALLOW_IPS: 'lan' is not an IP network"),
    ("HEARTH_TLS_CERT", "/nonexistent.pem", "HEARTH_TLS_CERT: no such file: /nonexistent.pem"),
    ("HEARTH_TLS_MIN_VERSION", "1.1", "HEARTH_TLS_MIN_VERSION: Input should be '1.2' or '1.3'"),
    ("AI_MODEL_REPLY_TOKENS", "5000", "AI_MODEL_REPLY_TOKENS: must be less than half of AI_MODEL_CONTEXT_TOKENS"),
])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
                                      expected: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith(expected)
    assert "\n" not in str(error.value)


def test_secrets_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_TOKEN", "tooshort-secret")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "tooshort-secret" not in str(error.value)


def test_tls_needs_both_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    monkeypatch.setenv("HEARTH_TLS_CERT", str(cert))
    with pytest.raises(ConfigError, match="HEARTH_TLS_KEY: must be set together"):
        load_settings()


def test_defaults_and_the_embedded_database(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.ai_model_endpoint == "http://localhost:11434"
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'hearth.db'}"
    assert (settings.server.http_port, settings.server.ws_port, settings.server.admin_port) == (8000, 50000, 8080)
    assert settings.server.admin_token is None


def test_fallbacks_inherit_what_they_do_not_say(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_MODEL_API_KEY", "main-key")
    monkeypatch.setenv("AI_MODEL_FALLBACKS", "openai+http://vllm:8000/v1#qwen, http://backup:11434")
    main, vllm, backup = load_settings().endpoints
    assert (vllm.provider, vllm.url, vllm.model, vllm.api_key) == ("openai", "http://vllm:8000/v1", "qwen", "main-key")
    assert (backup.provider, backup.model) == ("ollama", main.model)
    assert "main-key" not in repr(load_settings().endpoints)
    monkeypatch.setenv("AI_MODEL_FALLBACKS", '[{"url": "https://api.example/v1", "provider": "openai", '
                                             '"model": "m", "api_key": "other"}]')
    _, remote = load_settings().endpoints
    assert (remote.provider, remote.api_key) == ("openai", "other")


def test_a_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AI_MODEL_NAME=qwen2.5\nHEARTH_HTTP_PORT=9000\n")
    settings = load_settings()
    assert settings.ai_model_name == "qwen2.5" and settings.hearth_http_port == 9000


def test_postgres_urls_get_the_async_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_DATABASE_URL", "postgresql://u:p@db/hearth")
    assert load_settings().database_url == "postgresql+asyncpg://u:p@db/hearth"
