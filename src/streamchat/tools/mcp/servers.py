"""The MCP servers of the models file as one app service: their tools, and calling them.

`start()` connects every server at once and returns when each has connected or failed (a server
that fails is logged and left out; the rest work, and it is tried again in the background);
`close()` ends every session and stops every stdio server. The sessions live in one task of their
own that holds an anyio task group: a stdio server is stopped under anyio's cancellation, which its
shutdown shields, whatever the task that calls `close()`.

The app always has this service; with no server configured it is empty and the SDK is never
imported (it adds half a second to every start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import ValidationError

from streamchat.tools.mcp.config import McpServerEntry

if TYPE_CHECKING:
    from mcp import types
    from mcp.shared.dispatcher import ProgressFnT

    from streamchat.tools.mcp.connection import McpConnection, McpTool, ProgressCallback

logger = logging.getLogger("streamchat.tools.mcp")


class McpToolError(RuntimeError):
    """A call that did not give a result: the message is short enough to hand to the model."""


class McpCallTimeout(McpToolError, TimeoutError):
    """The call outlasted its limit; the server was told to stop it."""


class UnknownMcpTool(McpToolError, LookupError):
    """No connected server has a tool of this name."""


class McpServers:
    def __init__(self, entries: Sequence[McpServerEntry]) -> None:
        self._connections: dict[str, McpConnection] = {}
        if entries:
            from streamchat.tools.mcp.connection import McpConnection

            self._connections = {entry.name: McpConnection(entry) for entry in entries}
        self._runner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    async def start(self) -> None:
        """Connect to every server; returns once each one has connected or failed its first attempt."""
        if self._runner is not None or not self._connections:
            return
        self._runner = asyncio.create_task(self._run(), name="mcp-servers")
        tried = asyncio.gather(*(connection.tried.wait() for connection in self._connections.values()))
        either: list[asyncio.Future[Any]] = [self._runner, tried]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        tried.cancel()
        if self._runner.done():
            self._runner.result()  # the runner itself failed: a bug, said at start-up

    async def close(self) -> None:
        """End every session (stdio servers are stopped); calls still running fail."""
        if self._runner is None:
            return
        self._stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._runner
        self._runner = None

    async def _run(self) -> None:
        async with anyio.create_task_group() as group:
            for connection in self._connections.values():
                group.start_soon(connection.run, name=f"mcp-server-{connection.entry.name}")
            await self._stop.wait()
            group.cancel_scope.cancel()
        for connection in self._connections.values():
            connection.session, connection.error = None, "closed"
            connection.changed()

    def watch(self, on_change: Callable[[str], None]) -> None:
        """Have `on_change(server)` told whenever a server connects, is lost, or lists its tools again."""
        for connection in self._connections.values():
            connection.on_change = lambda changed: on_change(changed.entry.name)

    def names(self) -> list[str]:
        """The configured servers, in the models file's order."""
        return list(self._connections)

    def listed(self, server: str) -> list[McpTool]:
        """`server`'s tools as last listed, whether or not it is connected now (none if it never was)."""
        return list(self._connections[server].tools.values())

    def tools(self) -> list[McpTool]:
        """The tools of every connected server, as last listed."""
        return [tool for connection in self._connections.values() if connection.available
                for tool in connection.tools.values()]

    def public(self) -> list[dict[str, Any]]:
        """`GET /api/tools` rows: each tool of a connected server; for one that is down, the tools it
        had when last connected, or one row named after the server when it never was, with `error`."""
        rows: list[dict[str, Any]] = []
        for name, connection in self._connections.items():
            shown: dict[str, Any] = {"available": connection.available}
            if connection.error is not None and not connection.available:
                shown["error"] = connection.error
            if not connection.tools and not connection.available:
                rows.append({"name": name, "description": "", "inputSchema": {}, "needsApproval": False,
                             "source": f"mcp:{name}", **shown})
            rows.extend({"name": tool.name, "description": tool.description, "inputSchema": tool.input_schema,
                         "needsApproval": tool.needs_approval, "source": tool.source, **shown}
                        for tool in connection.tools.values())
        return rows

    def error(self, server: str) -> str | None:
        """Why `server` is unavailable, or None while it is connected."""
        return self._connections[server].error

    async def call(self, name: str, arguments: dict[str, Any], *, progress: ProgressCallback | None = None,
                   timeout: float | None = None) -> Any:
        """Call the tool `name` (`{server}__{tool}`): its structured result, else its text.

        `progress(progress, total, message)` receives the server's progress notifications; `timeout`
        (default: the server's `timeout_seconds`) bounds the call. Timed out or cancelled (the task
        awaiting this is), the call is cancelled on the server too: the SDK sends
        `notifications/cancelled` with the request's id before the timeout or cancellation goes on.
        """
        connection, tool = self._find(name)
        from mcp import MCPError, types

        from streamchat.tools.mcp.connection import describe

        session = connection.session
        if session is None:
            raise McpToolError(f"MCP server {connection.entry.name!r} is unavailable: {connection.error}")
        limit = tool.timeout_seconds if timeout is None else timeout
        try:
            result = await session.call_tool(tool.tool, arguments, read_timeout_seconds=limit,
                                              progress_callback=None if progress is None else _forwarding(progress))
        except MCPError as error:
            if error.code == types.REQUEST_TIMEOUT:
                raise McpCallTimeout(f"{name} gave no result within {limit:g}s") from None
            if error.code == types.CONNECTION_CLOSED:
                connection.report_fault()
                raise McpToolError(f"MCP server {connection.entry.name!r} closed the connection") from None
            raise McpToolError(f"{name}: {error.error.message}") from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as error:
            connection.report_fault()
            raise McpToolError(f"MCP server {connection.entry.name!r}: {describe(error)}") from None
        except (RuntimeError, ValidationError) as error:  # a result this client cannot use
            raise McpToolError(f"{name}: {describe(error)}") from None
        return result_value(name, result)

    def _find(self, name: str) -> tuple[McpConnection, McpTool]:
        for connection in self._connections.values():
            tool = connection.tools.get(name)
            if tool is not None and connection.available:
                return connection, tool
        raise UnknownMcpTool(f"no MCP tool {name!r}")


def _forwarding(callback: ProgressCallback) -> ProgressFnT:
    """The callback as the SDK types it (a protocol naming the parameters)."""
    async def forward(progress: float, total: float | None, message: str | None) -> None:
        await callback(progress, total, message)

    return forward


def result_value(name: str, result: types.CallToolResult) -> Any:
    """What the model is given: the structured content when there is some, else the text joined; the
    content blocks themselves when some are not text. An `isError` result raises with its text."""
    from mcp import types

    texts = [block.text for block in result.content if isinstance(block, types.TextContent)]
    if result.is_error:
        raise McpToolError("\n".join(texts) or f"{name} failed")
    if result.structured_content is not None:
        return result.structured_content
    if len(texts) == len(result.content):
        return "\n".join(texts)
    return [block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content]
