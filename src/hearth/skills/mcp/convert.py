"""MCP's types in hearth's terms: a listed tool as a ``ToolSpec``, a tool result as text for the model, and a
failure as an error ``SkillResult`` (the model sees every failure as a result, never an exception).

The permission of a tool is ``tool.mcp.<server>``, and a tool whose annotations say ``destructiveHint: true``
needs the user's yes.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types

from hearth.types import SkillCall, SkillResult, ToolSpec

from .config import McpServerConfig


def tool_spec(config: McpServerConfig, tool: types.Tool, name: str) -> ToolSpec:
    """The tool as hearth offers it to the model, under ``name``."""
    schema: dict[str, Any] = dict(tool.input_schema) if isinstance(tool.input_schema, dict) else {}
    schema.setdefault("type", "object")
    if schema["type"] != "object":
        schema = {"type": "object"}
    schema.setdefault("properties", {})
    annotations = tool.annotations
    description = tool.description or tool.title or (annotations.title if annotations else None) or tool.name
    return ToolSpec(name=name, description=description, parameters=schema, permission=f"tool.mcp.{config.slug}",
                    confirm=bool(annotations is not None and annotations.destructive_hint is True))


def render(result: types.CallToolResult) -> str:
    """A tool result as text for the model: text blocks joined; other blocks summarised (``[image/png, 12 KB]``);
    the structured content when there are no blocks."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent | types.AudioContent):
            parts.append(f"[{block.mime_type}, {_size(block.data)}]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[{resource.mime_type or 'binary'}, {_size(resource.blob)}, {resource.uri}]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[{block.mime_type or 'resource'}: {block.name} {block.uri}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


def _size(data: str) -> str:
    size = len(data) * 3 // 4 - data[-2:].count("=")
    return f"{size} B" if size < 1024 else f"{max(1, round(size / 1024))} KB" if size < 1024**2 else \
        f"{size / 1024**2:.1f} MB"


def failure(call: SkillCall, message: str, code: str) -> SkillResult:
    return SkillResult(call.id, call.name, message, is_error=True, error_code=code)

