"""MCP servers as a tool source: their tools are offered to the model next to the skills' intents.

An MCP server is another program (a local process over stdio, or a remote endpoint over streamable HTTP)
that crashes, restarts and changes its tool list while hearth runs, so hearth supervises it rather than
just calling it. While a server is down its tools are not offered, and a call to one of them is an error
result that says so: the model sees every failure as a result, never an exception.

The modules, in the order a tool call meets them:

* ``config``: the ``mcpServers`` JSON file (``load_mcp_config``) and tool names (``tool_name``);
* ``tools``: ``McpTools``, the ``ToolSource`` that supervises every server (connect, watch, reconnect with
  the one ``RetryPolicy``) and routes calls to them;
* ``connection``: one server's state, its session's signals, its transports and its stderr;
* ``convert``: MCP's tools and results in hearth's terms (``ToolSpec``, ``SkillResult``, ``render``).

Tool names are ``mcp_<server>__<tool>`` (``[a-zA-Z0-9_-]``, at most 64 characters), the permission is
``tool.mcp.<server>``, and a tool whose annotations say ``destructiveHint: true`` needs the user's yes.
"""

from .config import McpServerConfig, load_mcp_config, tool_name
from .convert import render
from .tools import McpTools

__all__ = ["McpServerConfig", "McpTools", "load_mcp_config", "render", "tool_name"]
