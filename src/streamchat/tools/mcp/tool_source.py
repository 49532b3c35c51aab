"""The MCP servers' tools in the app's ToolSet: each MCP tool as a `Tool` under source `mcp:<server>`,
kept in step with its server (connected, lost, its list read again).

The loop knows only `Tool`s: a call of an MCP tool goes through McpServers.call with the call's
progress and the tool's timeout, and whatever keeps it from a result (an `isError` result, a
timeout, a lost server) is a `ToolError` whose short reason the model is given. A server that is
down keeps the tools it last listed, marked unavailable with the reason, so a conversation naming
them stays valid and `GET /api/tools` says why they are not offered.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from streamchat.tools.config import Tool
from streamchat.tools.context import ToolContext
from streamchat.tools.errors import ToolError
from streamchat.tools.mcp.servers import McpServers, McpToolError
from streamchat.tools.registry import ToolNameTaken, ToolSet

if TYPE_CHECKING:
    from streamchat.tools.mcp.connection import McpTool

logger = logging.getLogger("streamchat.tools.mcp")


def source_of(server: str) -> str:
    """How `GET /api/tools` and the ToolSet name an MCP server's tools' source."""
    return f"mcp:{server}"


def as_tool(servers: McpServers, tool: McpTool) -> Tool:
    """`tool` as the loop calls it: its JSON schema as parameters; a call through `servers`."""

    async def handler(args: Any, ctx: ToolContext) -> Any:
        try:
            return await servers.call(tool.name, args, progress=ctx.progress, timeout=tool.timeout_seconds)
        except McpToolError as error:
            raise ToolError(str(error)) from None

    return Tool(name=tool.name, description=tool.description, parameters=tool.input_schema, handler=handler,
                source=source_of(tool.server), origin=f"MCP server {tool.server!r}",
                needs_approval=tool.needs_approval, timeout_seconds=tool.timeout_seconds)


def sync(servers: McpServers, tools: ToolSet, server: str) -> None:
    """Put `server`'s tools as they are now into `tools` (unavailable, with the reason, while it is down)."""
    source = source_of(server)
    error = servers.error(server)
    try:
        tools.replace_source(source, [as_tool(servers, tool) for tool in servers.listed(server)], error=error)
    except ToolNameTaken as taken:  # another source has one of its names: none of them is offered
        logger.warning("MCP tools left out: a name is taken", extra={"server": server, "error": str(taken)})
        tools.replace_source(source, [], error=f"its tools are left out: {taken}")


def serve_tools(servers: McpServers, tools: ToolSet) -> None:
    """Keep `tools` in step with every server of `servers` from now on (each starts unavailable until
    it has connected)."""
    servers.watch(lambda server: sync(servers, tools, server))
    for server in servers.names():
        sync(servers, tools, server)
