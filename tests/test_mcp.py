"""MCP servers as tool sources: two real MCP servers written with the SDK (tests/mcp_servers/), one
run over stdio and one over streamable HTTP, reached through the McpServers service."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from conftest import ARTIFACTS
from helpers import until
from streamchat.testing.processes import free_port, start_process, stop_process
from streamchat.tools.mcp.config import McpServerEntry
from streamchat.tools.mcp.servers import McpCallTimeout, McpServers, McpToolError, UnknownMcpTool

SERVERS = Path(__file__).parent / "mcp_servers"


def server_env(events: Path) -> dict[str, str]:
    """What a test server needs: where to record, and this interpreter's import path."""
    env = {"MCP_TEST_EVENTS": str(events)}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The servers' record, one for the module (each test uses tags of its own)."""
    path = tmp_path_factory.mktemp("mcp") / "events.txt"
    path.touch()
    return path


def stdio_entry(events: Path, name: str = "local", **options: object) -> McpServerEntry:
    return McpServerEntry.model_validate({"name": name, "command": [sys.executable, str(SERVERS / "stdio_server.py")],
                                          "env": server_env(events), **options})


@pytest.fixture(scope="module")
def http_url(events: Path) -> Iterator[str]:
    """One HTTP server process for the module; each test connects a session of its own."""
    port = free_port()
    env = {**os.environ, **server_env(events)}
    process = start_process([sys.executable, str(SERVERS / "http_server.py"), str(port)], env,
                            ARTIFACTS / f"mcp-http-{port}.log", f"http://127.0.0.1:{port}/health")
    yield f"http://127.0.0.1:{port}/mcp"
    stop_process(process)


@pytest.fixture(params=["stdio", "http"])
async def served(request: pytest.FixtureRequest, events: Path) -> AsyncIterator[tuple[str, McpServers]]:
    """One server of each transport behind a started McpServers; its name is the transport's."""
    name = request.param
    options = {"needs_approval": ["fail"], "timeout_seconds": 20}
    if name == "stdio":
        entry = stdio_entry(events, name, **options)
    else:
        entry = McpServerEntry.model_validate({"name": name, "url": request.getfixturevalue("http_url"), **options})
    servers = McpServers([entry])
    await servers.start()
    yield name, servers
    await servers.close()


def lines(events: Path) -> list[str]:
    return events.read_text().splitlines()


async def recorded(events: Path, line: str) -> None:
    async def seen() -> bool:
        return line in lines(events)

    await until(seen, f"the server recorded {line!r}")


async def test_tools_are_listed_with_the_server_prefix_and_schema(served: tuple[str, McpServers]) -> None:
    name, servers = served
    tools = {tool.name: tool for tool in servers.tools()}
    assert {f"{name}__{tool}" for tool in ("echo", "add", "count", "wait", "fail", "grow")} <= set(tools)
    add = tools[f"{name}__add"]
    assert (add.server, add.tool, add.source, add.description) == (name, "add", f"mcp:{name}", "Add two whole numbers.")
    assert add.input_schema["properties"].keys() == {"a", "b"} and add.input_schema["required"] == ["a", "b"]
    assert add.input_schema["properties"]["a"]["type"] == "integer"
    assert [tools[f"{name}__{tool}"].needs_approval for tool in ("fail", "echo")] == [True, False]
    row = next(row for row in servers.public() if row["name"] == f"{name}__add")
    assert row == {"name": f"{name}__add", "description": "Add two whole numbers.", "inputSchema": add.input_schema,
                   "needsApproval": False, "source": f"mcp:{name}", "available": True}


async def test_a_call_gives_the_structured_result_and_an_error_result_raises(served: tuple[str, McpServers]) -> None:
    name, servers = served
    assert await servers.call(f"{name}__add", {"a": 2, "b": 3}) == {"sum": 5}
    assert await servers.call(f"{name}__echo", {"text": "hello"}) == {"result": "hello"}
    with pytest.raises(McpToolError, match="the disk is full") as failed:
        await servers.call(f"{name}__fail", {"reason": "the disk is full"})
    assert not isinstance(failed.value, McpCallTimeout)
    with pytest.raises(McpToolError, match="text"):  # the server refuses arguments its schema does not take
        await servers.call(f"{name}__echo", {"words": "hello"})
    with pytest.raises(UnknownMcpTool, match=f"no MCP tool '{name}__nothing'"):
        await servers.call(f"{name}__nothing", {})


async def test_progress_notifications_reach_the_callback(served: tuple[str, McpServers]) -> None:
    name, servers = served
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))

    assert await servers.call(f"{name}__count", {"steps": 3}, progress=progress) == {"result": "counted to 3"}

    async def all_seen() -> bool:  # delivered beside the result, so possibly just after it
        return len(seen) == 3

    await until(all_seen, "three progress notifications")
    assert sorted(seen) == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


async def test_a_call_past_its_timeout_fails_and_is_cancelled_on_the_server(
    served: tuple[str, McpServers], events: Path,
) -> None:
    name, servers = served
    with pytest.raises(McpCallTimeout, match=rf"{name}__wait gave no result within 0.3s"):
        await servers.call(f"{name}__wait", {"tag": f"{name}-timed"}, timeout=0.3)
    await recorded(events, f"cancelled {name}-timed")
    assert await servers.call(f"{name}__add", {"a": 1, "b": 1}) == {"sum": 2}  # the session goes on


async def test_cancelling_a_running_call_cancels_it_on_the_server(
    served: tuple[str, McpServers], events: Path,
) -> None:
    name, servers = served
    running = asyncio.Event()

    async def progress(done: float, total: float | None, message: str | None) -> None:
        running.set()

    call = asyncio.create_task(servers.call(f"{name}__wait", {"tag": f"{name}-stopped"}, progress=progress))
    await asyncio.wait_for(running.wait(), 30)
    assert f"started {name}-stopped" in lines(events) and f"cancelled {name}-stopped" not in lines(events)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await recorded(events, f"cancelled {name}-stopped")
    assert await servers.call(f"{name}__echo", {"text": "still here"}) == {"result": "still here"}


async def test_a_changed_tool_list_is_read_again(served: tuple[str, McpServers]) -> None:
    name, servers = served
    assert f"{name}__late" not in {tool.name for tool in servers.tools()}
    await servers.call(f"{name}__grow", {"tool": "late"})

    async def listed() -> bool:
        return f"{name}__late" in {tool.name for tool in servers.tools()}

    await until(listed, "the added tool listed")
    assert await servers.call(f"{name}__late", {"text": "new"}) == "new"


async def test_a_server_that_fails_to_start_is_reported_and_the_others_work(events: Path) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/mcp"
    servers = McpServers([
        McpServerEntry(name="missing", command=["streamchat-no-such-mcp-server"]),
        stdio_entry(events),
        McpServerEntry(name="away", url=unreachable),
        McpServerEntry(name="quits", command=[sys.executable, "-c", "pass"]),
    ])
    await servers.start()
    try:
        assert {tool.server for tool in servers.tools()} == {"local"}
        assert await servers.call("local__add", {"a": 1, "b": 2}) == {"sum": 3}
        down = {row["name"]: row for row in servers.public() if not row["available"]}
        assert set(down) == {"missing", "away", "quits"}
        assert down["missing"]["error"].startswith("cannot start: ") and "streamchat-no-such-mcp-server" in \
            down["missing"]["error"]
        assert down["away"]["error"].startswith("cannot connect: ")
        assert down["quits"]["error"] and down["quits"]["source"] == "mcp:quits"
        assert servers.error("local") is None
        with pytest.raises(UnknownMcpTool):
            await servers.call("missing__echo", {"text": "x"})
    finally:
        await servers.close()


async def test_a_stdio_server_that_dies_is_reported_then_started_again(events: Path) -> None:
    servers = McpServers([stdio_entry(events)])
    await servers.start()
    try:
        with pytest.raises(McpToolError, match="closed the connection"):
            await servers.call("local__crash", {})

        async def reported() -> bool:
            return servers.error("local") is not None

        async def back() -> bool:
            return servers.error("local") is None

        await until(reported, "the dead server reported")
        assert servers.tools() == [] and not servers.public()[0]["available"]
        assert servers.public()[0]["name"] == "local__echo"  # its tools as last listed, unavailable
        await until(back, "the server started again")
        assert await servers.call("local__echo", {"text": "again"}) == {"result": "again"}
    finally:
        await servers.close()
