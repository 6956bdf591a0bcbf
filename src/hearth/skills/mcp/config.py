"""The ``mcpServers`` configuration file, checked and resolved, and the names MCP tools get in hearth.

The format is the JSON that MCP clients share::

    {"mcpServers": {
        "time":  {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}, "cwd": "/srv"},
        "issues": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer $env:ISSUES_TOKEN"},
                   "timeout": 30, "enabled": false}}}

``command`` means stdio, ``url`` means streamable HTTP. ``$env:NAME`` in a string is replaced by that
environment variable, so secrets need not be in the file. Every mistake is a ``ConfigError`` for
``HEARTH_MCP_CONFIG`` that names the server, what is wrong and the fix.

Tool names are ``mcp_<server>__<tool>`` (``[a-zA-Z0-9_-]``, at most 64 characters).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from hearth.errors import ConfigError

__all__ = ["McpServerConfig", "load_mcp_config", "tool_name"]

SETTING = "HEARTH_MCP_CONFIG"
MAX_NAME = 64
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
_ENV_REF = re.compile(r"\$env:([A-Za-z_][A-Za-z0-9_]*)")
_KEYS = ("command", "args", "env", "cwd", "url", "headers", "enabled", "timeout", "type")
_STDIO_KEYS = ("command", "args", "env", "cwd")
_TYPES = {"stdio": "stdio", "http": "http", "streamable-http": "http", "streamableHttp": "http"}


@dataclass(frozen=True)
class McpServerConfig:
    """One entry of ``mcpServers``, with ``$env:`` references already resolved.

    Exactly one of ``command`` (stdio) and ``url`` (streamable HTTP) is set. ``timeout`` bounds each tool call,
    in seconds. Values that may hold secrets are kept out of ``repr``.
    """

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    enabled: bool = True
    timeout: float = 60.0

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command is not None else "http"

    @property
    def slug(self) -> str:
        """The name as it appears in tool names and permissions."""
        return _UNSAFE.sub("_", self.name)

    @property
    def where(self) -> str:
        """The endpoint without credentials or query, for logs and errors."""
        if self.command is not None:
            return self.command
        parts = urlsplit(self.url or "")
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


def load_mcp_config(path: Path, *, environ: Mapping[str, str] | None = None) -> list[McpServerConfig]:
    """The servers of an ``mcpServers`` JSON file (see the module docstring for the format).

    ``environ`` resolves ``$env:NAME`` references (default: the process environment). Raises ``ConfigError``
    for ``HEARTH_MCP_CONFIG`` with one line that names the server (or the file), what is wrong and the fix.
    A missing file is an error: the caller decides whether the file is optional.
    """
    env = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(SETTING, f"{path}: no such file; create it or point {SETTING} at the right file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(SETTING, f"{path}: cannot be read ({exc}); check its permissions and encoding") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(SETTING, f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
                          ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers"), dict):
        raise ConfigError(SETTING, f'{path}: expected an object {{"mcpServers": {{"<name>": {{...}}}}}}')
    servers = [_parse_server(str(name), raw, env) for name, raw in data["mcpServers"].items()]
    seen: dict[str, str] = {}
    for server in servers:
        other = seen.setdefault(server.slug, server.name)
        if other != server.name:
            raise ConfigError(SETTING, f"{server.name}: its tool names would clash with server {other!r} "
                                       "(names are reduced to letters, digits, _ and -); rename one of them")
    return servers


def _parse_server(name: str, raw: object, environ: Mapping[str, str]) -> McpServerConfig:
    def bad(problem: str) -> ConfigError:
        return ConfigError(SETTING, f"{name or '(empty name)'}: {problem}")

    if not name.strip():
        raise bad("a server needs a name; use a short word such as \"files\" as its key in mcpServers")
    if not isinstance(raw, dict):
        raise bad('expected an object with "command" (a local process, stdio) or "url" (streamable HTTP)')
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise bad(f"unknown key {unknown[0]!r}; the keys are {', '.join(_KEYS)}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise bad('"enabled" must be true or false')
    timeout = raw.get("timeout", 60.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
        raise bad('"timeout" must be a positive number of seconds, e.g. 60')

    def text(key: str, value: object) -> str:
        if not isinstance(value, str) or not value:
            raise bad(f'"{key}" must be a non-empty string')
        if not enabled:  # a disabled server may name variables that are not set here
            return value

        def resolve(match: re.Match[str]) -> str:
            variable = match.group(1)
            if variable not in environ:
                raise bad(f'"{key}" refers to $env:{variable}, which is not set; set it in the environment or .env')
            return environ[variable]

        return _ENV_REF.sub(resolve, value)

    def table(key: str) -> dict[str, str]:
        value = raw.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise bad(f'"{key}" must be an object of strings, e.g. {{"NAME": "value"}}')
        return {str(k): text(f"{key}.{k}", v) if v else v for k, v in value.items()}

    kind = raw.get("type")
    if kind is not None and kind not in _TYPES:
        raise bad(f'"type" {kind!r} is not supported; use "stdio" with "command" or "http" (streamable HTTP) '
                  'with "url" (the older SSE transport is not supported)')
    if "command" in raw and "url" in raw:
        raise bad('has both "command" and "url"; keep "command" for a local process or "url" for a remote server')
    if "url" in raw:
        if kind is not None and _TYPES[kind] != "http":
            raise bad(f'"type" is {kind!r} but "url" is set; use "type": "http" or remove "type"')
        stray = [key for key in _STDIO_KEYS if key in raw]
        if stray:
            raise bad(f'"{stray[0]}" is for local (stdio) servers; a "url" server takes "headers"')
        url = text("url", raw["url"])
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad('"url" must be an http:// or https:// address, e.g. "https://mcp.example.com/mcp"')
        return McpServerConfig(name=name, url=url, headers=table("headers"), enabled=enabled, timeout=float(timeout))
    if "command" not in raw:
        raise bad('needs "command" (a local process, stdio) or "url" (a streamable HTTP endpoint)')
    if kind is not None and _TYPES[kind] != "stdio":
        raise bad(f'"type" is {kind!r} but "command" is set; use "type": "stdio" or remove "type"')
    if "headers" in raw:
        raise bad('"headers" is for "url" servers; pass a local server its settings in "env"')
    args = raw.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise bad('"args" must be a list of strings, e.g. ["--port", "0"]')
    cwd = text("cwd", raw["cwd"]) if "cwd" in raw else None
    if cwd is not None and enabled and not Path(cwd).is_dir():
        raise bad(f'"cwd" {cwd!r} is not a directory; create it or fix the path')
    return McpServerConfig(name=name, command=text("command", raw["command"]),
                           args=tuple(text("args", a) if a else a for a in args), env=table("env"), cwd=cwd,
                           enabled=enabled, timeout=float(timeout))


def tool_name(server: str, tool: str, *, hashed: bool = False) -> str:
    """``mcp_<server>__<tool>`` reduced to ``[a-zA-Z0-9_-]`` and at most 64 characters.

    A longer name (or, with ``hashed``, any name) ends with a digest of the original pair, which keeps
    distinct tools apart after truncation.
    """
    name = _UNSAFE.sub("_", f"mcp_{server}__{tool}")
    if len(name) <= MAX_NAME and not hashed:
        return name
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:8]
    return f"{name[:MAX_NAME - 9]}_{digest}"
