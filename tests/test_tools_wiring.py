"""The MCP servers of the models file wired into the app (their tools in the ToolSet, GET /api/tools,
kept in step with each server, stopped with the app), a conversation's `tools` setting, and the
models file's `tools` flag. The MCP servers are the real test servers of tests/mcp_servers/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import FakeProvider, InProcessStarter
from helpers import InProcessServer, until, wait_for_status
from streamchat.llm.model_set import ModelSet
from streamchat.llm.models_file import OpenAIEntry
from streamchat.settings import Settings
from streamchat.testing.processes import free_port, start_process, stop_process
from streamchat.tools import Progress, Tool, ToolContext, ToolError, ToolSet, discover_tools, offered_tools
from streamchat.tools.mcp.servers import McpServers
from streamchat.tools.mcp.tool_source import serve_tools
from test_mcp import SERVERS, server_env, stdio_entry

# -- a models file with MCP servers, served in process ------------------------------------------------


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mcp-wiring") / "events.txt"
    path.touch()
    return path


@pytest.fixture(scope="module")
def http_url(events: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    process = start_process([sys.executable, str(SERVERS / "http_server.py"), str(port)],
                            {**os.environ, **server_env(events)}, tmp_path_factory.mktemp("mcp-http") / "http.log",
                            f"http://127.0.0.1:{port}/health")
    yield f"http://127.0.0.1:{port}/mcp"
    stop_process(process)


def toml(value: object) -> str:
    """A TOML value: a JSON string or list of strings is one too."""
    return json.dumps(value)


def two_models(fake: FakeProvider) -> str:
    """`fast` (the default) and `plain` (`tools = false`), both on the fake provider."""
    return f"""
[[models]]
name = "fast"
provider = "openai"
base_url = "{fake.url}/v1"
model = "fast-model"
default = true

[[models]]
name = "plain"
provider = "openai"
base_url = "{fake.url}/v1"
model = "plain-model"
tools = false
"""


def models_file(tmp_path: Path, fake: FakeProvider, events: Path, http_url: str) -> Path:
    """The two models, and MCP servers `local` (stdio, `fail` needs approval), `remote` (streamable
    HTTP, every tool needs approval) and `missing` (its command does not exist)."""
    env = ", ".join(f"{name} = {toml(value)}" for name, value in server_env(events).items())
    path = tmp_path / "models.toml"
    path.write_text(two_models(fake) + f"""
[[mcp_servers]]
name = "local"
command = {toml([sys.executable, str(SERVERS / "stdio_server.py")])}
env = {{ {env} }}
needs_approval = ["fail"]
timeout_seconds = 20

[[mcp_servers]]
name = "remote"
url = {toml(http_url)}
needs_approval = true
timeout_seconds = 20

[[mcp_servers]]
name = "missing"
command = ["streamchat-no-such-mcp-server"]
""")
    return path


@pytest.fixture
async def served(in_process: InProcessStarter, fake_provider: FakeProvider, events: Path, http_url: str,
                 tmp_path: Path) -> InProcessServer:
    return await in_process(STREAMCHAT_MODELS_FILE=str(models_file(tmp_path, fake_provider, events, http_url)))


async def listed(server: InProcessServer) -> dict[str, dict[str, Any]]:
    async with server.client() as client:
        answer = await client.get("/api/tools")
    assert answer.status_code == 200, answer.text
    return {row["name"]: row for row in answer.json()}


def tool_set(server: InProcessServer) -> ToolSet:
    tools: ToolSet = server.runtime.services.get(ToolSet)
    return tools


async def call(server: InProcessServer, name: str, arguments: str, seen: list[Progress] | None = None) -> Any:
    """Run tool `name` as the loop will: its arguments from the model's JSON text, then its handler."""
    tool = tool_set(server).get(name)
    assert tool is not None, name

    async def progress(step: Progress) -> None:
        if seen is not None:
            seen.append(step)

    context = ToolContext(conversation_id="c-1", call_id="call-1", services=server.runtime.services,
                          on_progress=progress)
    return await tool.handler(tool.arguments(arguments), context)


# -- GET /api/tools and the ToolSet ------------------------------------------------------------------

async def test_the_mcp_servers_tools_are_listed_beside_the_built_ins_and_a_failed_server_says_why(
    served: InProcessServer,
) -> None:
    rows = await listed(served)
    assert rows["calculator"]["source"] == "builtin" and rows["calculator"]["available"]
    tools = {"echo", "add", "count", "wait", "fail", "grow", "pid", "crash"}
    for server in ("local", "remote"):
        assert {f"{server}__{tool}" for tool in tools} <= set(rows), sorted(rows)
        add = rows[f"{server}__add"]
        assert (add["source"], add["available"]) == (f"mcp:{server}", True)
        assert add["description"] == "Add two whole numbers."
        assert add["inputSchema"]["properties"].keys() == {"a", "b"} and add["inputSchema"]["required"] == ["a", "b"]
        assert "error" not in add
    assert [rows[f"local__{tool}"]["needsApproval"] for tool in ("fail", "echo", "add")] == [True, False, False], \
        "only the tools the entry lists"
    assert all(rows[f"remote__{tool}"]["needsApproval"] for tool in tools), "true: every tool of the server"
    missing = rows["mcp:missing"]
    assert (missing["source"], missing["available"]) == ("mcp:missing", False)
    assert missing["error"].startswith("cannot start: ") and "streamchat-no-such-mcp-server" in missing["error"]
    assert not any(name.startswith("missing__") for name in rows)

    tool = tool_set(served).get("local__fail")
    assert tool is not None and (tool.needs_approval, tool.timeout_seconds, tool.input) == (True, 20.0, None)
    assert tool.schema()["function"]["parameters"] == rows["local__fail"]["inputSchema"]
    assert served.runtime.services.get(McpServers).names() == ["local", "remote", "missing"], "an app service"


async def test_an_mcp_tool_runs_through_its_handler_with_progress_and_fails_as_a_tool_error(
    served: InProcessServer,
) -> None:
    for server in ("local", "remote"):
        assert await call(served, f"{server}__add", '{"a": 2, "b": 40}') == {"sum": 42}
        seen: list[Progress] = []
        assert await call(served, f"{server}__count", '{"steps": 3}', seen) == {"result": "counted to 3"}

        async def all_seen(seen: list[Progress] = seen) -> bool:  # they come beside the result, maybe after it
            return len(seen) == 3

        await until(all_seen, f"{server}: three progress reports")
        assert sorted(seen, key=lambda step: step.progress) == [Progress(step, 3, f"step {step}") for step in (1, 2, 3)]
        with pytest.raises(ToolError, match=r"the disk is full$"):
            await call(served, f"{server}__fail", '{"reason": "the disk is full"}')
        with pytest.raises(ToolError, match="text"):  # arguments the server's schema refuses
            await call(served, f"{server}__echo", '{"words": "hi"}')


async def test_a_changed_list_a_lost_server_and_its_return_reach_get_api_tools(served: InProcessServer) -> None:
    assert "local__late" not in await listed(served)
    assert await call(served, "local__grow", '{"tool": "late"}') == {"result": "added late"}

    async def late_listed() -> bool:
        return (await listed(served)).get("local__late", {}).get("available") is True

    await until(late_listed, "the tool the server added, listed")
    assert await call(served, "local__late", '{"text": "new"}') == "new"

    with pytest.raises(ToolError, match="closed the connection"):
        await call(served, "local__crash", "{}")

    async def down() -> bool:
        return (await listed(served))["local__echo"]["available"] is False

    await until(down, "the lost server's tools marked unavailable")
    echo = (await listed(served))["local__echo"]
    assert echo["source"] == "mcp:local" and echo["error"], "kept, as last listed, with the reason"
    tools = tool_set(served)
    assert [spec["function"]["name"] for spec in offered_tools(tools, ["local__echo", "remote__echo"], True)] == [
        "remote__echo"], "not offered while its server is down"
    async with served.client() as client:  # a down server's listed tool may still be chosen
        chosen = await client.post("/chat", json={"message": "hi", "tools": ["local__echo", "calculator"]})
    assert chosen.status_code == 200, chosen.text

    async def back() -> bool:
        return (await listed(served))["local__echo"]["available"] is True

    await until(back, "the server started again")
    assert await call(served, "local__echo", '{"text": "again"}') == {"result": "again"}


async def test_stopping_the_app_stops_its_stdio_servers(served: InProcessServer) -> None:
    pid = (await call(served, "local__pid", "{}"))["result"]
    os.kill(pid, 0)  # running
    assert served.shutdown is not None
    await served.shutdown()

    async def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    await until(gone, f"the stdio MCP server (pid {pid}) stopped")
    assert served.runtime.services.get(McpServers).error("local") == "closed"


async def test_an_mcp_tool_whose_name_is_taken_leaves_its_server_out(events: Path) -> None:
    async def handler(args: Any, ctx: ToolContext) -> Any:
        return args

    taken = Tool(name="local__echo", description="mine", parameters={"type": "object"}, handler=handler,
                 source="file", origin="tools_mine.echo")
    tools = ToolSet([taken])
    servers = McpServers([stdio_entry(events)])
    serve_tools(servers, tools)
    assert [row["error"] for row in tools.public() if row["source"] == "mcp:local"] == ["not connected yet"]
    await servers.start()
    try:
        rows = {row["name"]: row for row in tools.public()}
        assert rows["local__echo"]["source"] == "file" and rows["local__echo"]["available"]
        assert not any(name.startswith("local__") and row["source"] == "mcp:local" for name, row in rows.items())
        assert "tool name 'local__echo' is declared twice" in rows["mcp:local"]["error"]
    finally:
        await servers.close()


def test_a_server_without_mcp_servers_never_imports_the_sdk(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("STREAMCHAT_", "OPENAI_"))}
    env.update(OPENAI_API_KEY="sk-x", STREAMCHAT_STATE_URL=f"sqlite:///{tmp_path / 's.db'}",
               STREAMCHAT_DATA_DIR=str(tmp_path))
    code = ("import sys; from streamchat.app import create_app; from streamchat.tools.mcp.servers import McpServers;"
            "app = create_app(); assert app.state.runtime.services.get(McpServers).names() == [];"
            "print('mcp' in sys.modules)")
    ran = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "False"


# -- offered tools -----------------------------------------------------------------------------------

def test_offered_tools_are_the_settings_names_available_now_for_a_model_that_calls_tools() -> None:
    tools = discover_tools()
    remote = Tool(name="web__get", description="", parameters={"type": "object"}, handler=_nothing,
                  source="mcp:web", origin="MCP server 'web'")
    tools.replace_source("mcp:web", [remote], error="cannot connect")

    def named(specs: list[dict[str, Any]]) -> list[str]:
        return [spec["function"]["name"] for spec in specs]

    assert named(offered_tools(tools, None, True)) == ["calculator", "search_conversations"]
    assert named(offered_tools(tools, ["search_conversations", "web__get", "gone"], True)) == ["search_conversations"]
    assert offered_tools(tools, [], True) == []
    assert offered_tools(tools, None, False) == [] and offered_tools(tools, ["calculator"], False) == []
    tools.replace_source("mcp:web", [remote])
    assert named(offered_tools(tools, ["web__get", "calculator"], True)) == ["web__get", "calculator"]


async def _nothing(args: Any, ctx: ToolContext) -> Any:
    return None


# -- the tools setting and the model flag ------------------------------------------------------------

@pytest.fixture
async def without_mcp(in_process: InProcessStarter, fake_provider: FakeProvider, tmp_path: Path) -> InProcessServer:
    """The two models, no MCP server."""
    path = tmp_path / "models.toml"
    path.write_text(two_models(fake_provider))
    return await in_process(STREAMCHAT_MODELS_FILE=str(path))


async def settings_of(client: httpx.AsyncClient, cid: str) -> dict[str, Any]:
    answer = await client.get(f"/api/conversations/{cid}")
    assert answer.status_code == 200, answer.text
    settings: dict[str, Any] = answer.json()["settings"]
    return settings


async def test_the_tools_setting_is_taken_kept_and_given_back_wherever_settings_are(
    without_mcp: InProcessServer,
) -> None:
    server = without_mcp
    async with server.client() as client:
        sent = await client.post("/chat", json={"message": "hi", "tools": ["calculator"]})
        assert sent.status_code == 200, sent.text
        cid = sent.json()["conversationId"]
        await wait_for_status(server, cid, sent.json()["assistantMessageId"])
        assert await settings_of(client, cid) == {"model": None, "systemPrompt": None, "temperature": None,
                                                  "maxTokens": None, "tools": ["calculator"]}
        none = await client.patch(f"/api/conversations/{cid}", json={"tools": []})
        assert none.status_code == 200 and none.json()["settings"]["tools"] == [], none.text
        every = await client.patch(f"/api/conversations/{cid}", json={"tools": None, "temperature": 0.5})
        assert every.status_code == 200 and every.json()["settings"]["tools"] is None, every.text
        kept = await client.patch(f"/api/conversations/{cid}", json={"systemPrompt": "Be brief."})
        assert kept.json()["settings"]["tools"] is None, "left out: kept"
        listed = (await client.get("/api/conversations")).json()
        assert next(record for record in listed["conversations"] if record["conversationId"] == cid)[
            "settings"]["tools"] is None

        async with client.stream("POST", "/api/chat", json={
                "id": "ai-sdk-tools", "tools": ["search_conversations", "calculator"],
                "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]}) as answer:
            assert answer.status_code == 200, await answer.aread()
            await answer.aread()
        assert (await settings_of(client, "ai-sdk-tools"))["tools"] == ["search_conversations", "calculator"]


async def test_unknown_or_repeated_tool_names_are_refused_naming_them(without_mcp: InProcessServer) -> None:
    async with without_mcp.client() as client:
        sent = await client.post("/chat", json={"message": "hi"})
        cid = sent.json()["conversationId"]
        unknown = ["calculator", "weather", "files__read"]
        for answer in (await client.patch(f"/api/conversations/{cid}", json={"tools": unknown}),
                       await client.post("/chat", json={"message": "x", "conversationId": cid, "tools": unknown})):
            assert answer.status_code == 422, answer.text
            detail = answer.json()["detail"]
            assert detail.startswith("tools: no tool 'weather', 'files__read' here"), detail
            assert "calculator" not in detail
        for body, named in (({"tools": ["calculator", "calculator"]}, "'calculator' named more than once"),
                            ({"tools": "calculator"}, "tools"), ({"tools": [1]}, "tools"),
                            ({"tools": ["x"] * 513}, "tools")):
            answer = await client.patch(f"/api/conversations/{cid}", json=body)
            assert answer.status_code == 422 and named in answer.json()["detail"], (body, answer.text)
        ai_sdk = await client.post("/api/chat", json={
            "id": cid, "tools": ["nope"], "messages": [{"id": "m", "role": "user", "parts": [
                {"type": "text", "text": "x"}]}]})
        assert ai_sdk.status_code == 422 and "'nope'" in ai_sdk.json()["detail"], ai_sdk.text
        assert (await settings_of(client, cid))["tools"] is None, "nothing refused was kept"


async def test_a_model_that_cannot_call_tools_is_refused_tools_naming_it(without_mcp: InProcessServer) -> None:
    async with without_mcp.client() as client:
        models = (await client.get("/api/models")).json()["models"]
        assert [(model["name"], model["tools"]) for model in models] == [("fast", True), ("plain", False)]
        refused = "tools: model 'plain' cannot call tools"
        new = await client.post("/chat", json={"message": "hi", "model": "plain", "tools": ["calculator"]})
        assert new.status_code == 422 and new.json()["detail"].startswith(refused), new.text
        sent = await client.post("/chat", json={"message": "hi", "tools": ["calculator"]})
        cid = sent.json()["conversationId"]
        base = f"/api/conversations/{cid}"
        switched = await client.patch(base, json={"model": "plain"})
        assert switched.status_code == 422 and switched.json()["detail"].startswith(refused), "its tools stay set"
        assert (await settings_of(client, cid))["model"] is None
        nothing: list[list[str] | None] = [None, []]
        for tools in nothing:
            fine = await client.patch(base, json={"model": "plain", "tools": tools})
            assert fine.status_code == 200 and fine.json()["settings"]["model"] == "plain", fine.text
        again = await client.patch(base, json={"tools": ["calculator"]})
        assert again.status_code == 422 and again.json()["detail"].startswith(refused), again.text
        plain = await client.post("/chat", json={"message": "no tools", "model": "plain", "tools": None})
        assert plain.status_code == 200, plain.text


async def test_the_model_of_the_variables_calls_tools_when_it_is_openai_s(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith(("STREAMCHAT_", "OPENAI_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("OPENAI_MODEL", "gpt-4o")
    remote = ModelSet.from_settings(Settings.from_env(env_file=None))
    assert remote.calls_tools("gpt-4o") and remote.public()[0]["tools"] is True and remote.mcp_servers == ()
    assert isinstance(remote.entry("gpt-4o"), OpenAIEntry)
    await remote.close()
    monkeypatch.delenv("OPENAI_API_KEY")
    local = ModelSet.from_settings(Settings.from_env(env_file=None))
    assert not local.calls_tools(local.default) and local.public()[0]["tools"] is False
    await local.close()

