"""One configured MCP server, kept connected: its session, its tools, and why it is down when it is.

The SDK's transports and sessions are anyio context managers that must be entered and left in one
task, so each server lives in a task of its own (run by McpServers) that connects, initializes,
lists the tools, then watches the session: it re-lists when the server says its list changed, and
when the session is lost (a stdio server exits, an HTTP server stops answering) it marks the server
unavailable, keeps the reason for `GET /api/tools`, and connects again with a growing pause. Each
of those changes (connected, list read again, lost) is told to `on_change`, which keeps the app's
ToolSet in step. Calls are made from the callers' own tasks on the current session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import anyio
import httpx2
from anyio.streams.memory import MemoryObjectSendStream
from mcp import ClientSession, StdioServerParameters, stdio_client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.message import SessionMessage

from streamchat import __version__
from streamchat.tools.mcp.config import TOOL_NAME, McpServerEntry

logger = logging.getLogger("streamchat.tools.mcp")

CLIENT = types.Implementation(name="streamchat", version=__version__)
#: The pause before connecting again after a failure; doubled each time, up to the longest.
FIRST_PAUSE_SECONDS = 1.0
LONGEST_PAUSE_SECONDS = 60.0

#: Why the watcher of a session wakes: the server's list changed, the transport reported a fault
#: (the server may be gone: ask it), or the session's stream ended (it is gone).
Signal = Literal["list_changed", "fault", "ended"]
ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None]]


@dataclass(frozen=True)
class McpTool:
    """A tool of an MCP server as the model is offered it."""

    name: str
    server: str
    #: The name the server knows it by (`name` without the server's prefix).
    tool: str
    description: str
    input_schema: dict[str, Any]
    needs_approval: bool
    timeout_seconds: float

    @property
    def source(self) -> str:
        return f"mcp:{self.server}"


class ServerLost(Exception):
    """The session ended or stopped answering; the server is connected again."""


@dataclass
class McpConnection:
    entry: McpServerEntry
    tools: dict[str, McpTool] = field(default_factory=dict)
    #: Why the server is unavailable; None while it is connected.
    error: str | None = "not connected yet"
    session: ClientSession | None = None
    #: Set once the first attempt has connected or failed: start-up waits for it.
    tried: asyncio.Event = field(default_factory=asyncio.Event)
    #: Told whenever `tools`, `session` or `error` changed (run in this connection's task).
    on_change: Callable[[McpConnection], None] | None = None
    _signals: MemoryObjectSendStream[Signal] | None = None

    @property
    def available(self) -> bool:
        return self.session is not None

    async def run(self) -> None:
        """Connect, serve, and connect again whenever the session is lost; until cancelled."""
        pause = FIRST_PAUSE_SECONDS
        while True:
            try:
                await self._serve_one_session()
            except Exception as error:
                had_session = self.session is not None
                self._down(describe(error))
                if had_session:
                    pause = FIRST_PAUSE_SECONDS
                logger.warning("MCP server unavailable", extra={"server": self.entry.name, "error": self.error,
                                                                 "retry_in_seconds": pause})
            self.tried.set()
            await anyio.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE_SECONDS)

    def report_fault(self) -> None:
        """A call saw the connection fail: have the watcher check whether the server is still there."""
        self._signal("fault")

    def _down(self, error: str) -> None:
        self.session, self.error, self._signals = None, error, None
        self.changed()

    def changed(self) -> None:
        """Tell `on_change`; its failure is logged, never the connection's."""
        if self.on_change is None:
            return
        try:
            self.on_change(self)
        except Exception:
            logger.exception("MCP change not taken in", extra={"server": self.entry.name})

    def _signal(self, signal: Signal) -> None:
        if self._signals is not None:
            # A full queue already holds a wake-up; a closed one belongs to a session that is gone.
            with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._signals.send_nowait(signal)

    async def _serve_one_session(self) -> None:
        send, signals = anyio.create_memory_object_stream[Signal](max_buffer_size=16)
        async with AsyncExitStack() as stack:
            stack.enter_context(send)
            stack.enter_context(signals)
            self._signals = send
            read, write = await stack.enter_async_context(self._transport())
            session = await stack.enter_async_context(ClientSession(
                _EndWatched(read, lambda: self._signal("ended")), write,
                message_handler=self._on_message, client_info=CLIENT))
            with anyio.fail_after(self.entry.timeout_seconds):
                await session.initialize()
                await self._list_tools(session)
            self.session, self.error = session, None
            self.changed()
            self.tried.set()
            logger.info("MCP server connected", extra={"server": self.entry.name, "tools": sorted(self.tools)})
            async for signal in signals:
                if signal == "ended":
                    raise ServerLost("the server closed the connection")
                try:
                    with anyio.fail_after(self.entry.timeout_seconds):
                        if signal == "list_changed":
                            await self._list_tools(session)
                            self.changed()
                            logger.info("MCP tools changed", extra={"server": self.entry.name,
                                                                    "tools": sorted(self.tools)})
                        else:
                            await session.send_ping()
                except Exception as error:
                    raise ServerLost(f"the server stopped answering ({describe(error)})") from error

    @asynccontextmanager
    async def _transport(self) -> AsyncIterator[tuple[Any, Any]]:
        entry = self.entry
        if entry.command is not None:
            parameters = StdioServerParameters(command=entry.command[0], args=entry.command[1:], env=entry.env,
                                               cwd=entry.cwd)
            async with stdio_client(parameters) as streams:
                yield streams
            return
        assert entry.url is not None
        async with (create_mcp_http_client(headers=entry.headers) as client,
                    streamable_http_client(entry.url, http_client=client) as streams):
            yield streams

    async def _list_tools(self, session: ClientSession) -> None:
        listed: list[types.Tool] = []
        cursor: str | None = None
        while True:
            page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
            listed.extend(page.tools)
            if not (cursor := page.next_cursor):
                break
        tools: dict[str, McpTool] = {}
        for tool in listed:
            name = self.entry.tool_name(tool.name)
            if not TOOL_NAME.match(name):
                logger.warning("MCP tool left out: its name breaks OpenAI's function-name rule",
                               extra={"server": self.entry.name, "tool": tool.name})
                continue
            tools[name] = McpTool(name=name, server=self.entry.name, tool=tool.name,
                                  description=tool.description or "", input_schema=dict(tool.input_schema),
                                  needs_approval=self.entry.needs_approval_of(tool.name),
                                  timeout_seconds=self.entry.timeout_seconds)
        self.tools = tools

    async def _on_message(self, message: types.ServerNotification | Exception) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self._signal("list_changed")
        elif isinstance(message, Exception):
            logger.info("MCP transport fault", extra={"server": self.entry.name, "error": describe(message)})
            self._signal("fault")


class _EndWatched:
    """The transport's read stream, telling when it ends: the SDK's session does not say."""

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        self._inner, self._on_end = inner, on_end

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            item: SessionMessage | Exception = await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise
        return item

    def __aiter__(self) -> _EndWatched:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _EndWatched:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()


def describe(error: BaseException) -> str:
    """One line for a log and for `GET /api/tools`: the innermost cause, not a task group's wrapper."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, TimeoutError):
        return "no answer in time"
    said = str(error) or type(error).__name__
    if isinstance(error, httpx2.HTTPError | ConnectionError):
        return f"cannot connect: {said}"
    if isinstance(error, OSError):  # the command of a stdio server could not be run
        return f"cannot start: {said}"
    return said
