"""The tools both test MCP servers offer, written with the `mcp` SDK as any MCP server would be.

What the client cannot see is written to the file named by MCP_TEST_EVENTS, one line each: a tool
that started (`started <tag>`) and a call the server was told to cancel (`cancelled <tag>`), so a
test asserts on the server's side that a cancellation arrived.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError


def record(line: str) -> None:
    with Path(os.environ["MCP_TEST_EVENTS"]).open("a", encoding="utf-8") as events:
        events.write(line + "\n")


def build(name: str) -> MCPServer:
    server = MCPServer(name, log_level="WARNING")

    @server.tool()
    def echo(text: str) -> str:
        """Give the text back."""
        return text

    @server.tool()
    def add(a: int, b: int) -> dict[str, int]:
        """Add two whole numbers."""
        return {"sum": a + b}

    @server.tool()
    async def count(steps: int, ctx: Context) -> str:
        """Count to `steps`, reporting each step as progress."""
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"step {step}")
        return f"counted to {steps}"

    @server.tool()
    async def wait(tag: str, ctx: Context) -> str:
        """Report once, then wait until the call is cancelled (recorded under `tag`)."""
        record(f"started {tag}")
        await ctx.report_progress(0, None, "waiting")
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            record(f"cancelled {tag}")
            raise
        return "never"

    @server.tool()
    def fail(reason: str) -> str:
        """Always fails, with `reason`."""
        raise ToolError(reason)

    @server.tool()
    async def grow(tool: str, ctx: Context) -> str:
        """Add a tool named `tool` (it echoes) and tell the client the list changed."""
        server.add_tool(lambda text: text, name=tool, description="an echo added at run time")
        await ctx.session.send_tool_list_changed()
        return f"added {tool}"

    @server.tool()
    def pid() -> int:
        """This server's process id (a test checks the process is gone once the app has stopped)."""
        return os.getpid()

    @server.tool()
    def crash() -> str:
        """End the server's process at once, as a crash would."""
        os._exit(3)

    return server
