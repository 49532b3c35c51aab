"""AG-UI's published JavaScript client, @ag-ui/client 1.0.0's HttpAgent (on the Node.js 20 the tests
run; it needs no later one), against a real server process with the tool files of tests/loop_tools.

tests/ag_ui_client/run.mjs runs the agent (its own transport, event verifier and message reducer) and
prints every event it applied and the messages it ended with; each is compared with what the server
stored: a run with text, a server-run tool, an approval interrupt resumed, a front-end tool whose result
the client sends back, and a run whose connection is cut mid-way and resumed from its last event id (no
event twice, the text the stored reply's). The
contract's details (every frame by ag_ui.core's models, bad input) are in test_ag_ui.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import FakeProvider, Server, ServerFactory
from test_tool_clients import with_loop_tools

CLIENT_DIR = Path(__file__).parent / "ag_ui_client"


@pytest.fixture(scope="module")
def server(fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server process for the module (the client connects over the network)."""
    factory = ServerFactory(fake_provider, tmp_path_factory.mktemp("ag-ui-client"))
    yield factory.start(**with_loop_tools())
    factory.stop_all()


Lines = list[dict[str, Any]]


async def drive(scenario: str, url: str, thread: str, text: str = "hello",
                on_line: Callable[[dict[str, Any]], None] | None = None) -> tuple[Lines, dict[str, Any]]:
    """Run run.mjs; the lines it printed before its result (each also given to `on_line`, on a thread, as
    soon as it comes), and the result."""
    assert (CLIENT_DIR / "node_modules" / "@ag-ui" / "client" / "package.json").is_file(), "run ./scripts/test"
    node = shutil.which("node")
    assert node, "node is required for the AG-UI client tests"
    process = await asyncio.create_subprocess_exec(
        node, "run.mjs", scenario, url, thread, text, cwd=CLIENT_DIR, env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=2**24)
    assert process.stdout is not None and process.stderr is not None

    async def lines() -> Lines:
        assert process.stdout is not None
        read = []
        async for line in process.stdout:
            read.append(json.loads(line))
            if on_line is not None:
                await asyncio.to_thread(on_line, read[-1])
        return read

    printed, stderr, _ = await asyncio.wait_for(asyncio.gather(lines(), process.stderr.read(), process.wait()), 90)
    assert process.returncode == 0, (printed[-1:], stderr.decode())
    assert "result" in printed[-1], (printed[-1:], stderr.decode())
    assert not stderr.strip(), f"the client warned: {stderr.decode()}"
    return printed[:-1], printed[-1]["result"]


async def stored(url: str, thread: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        response = await http.get(f"/api/conversations/{thread}")
        response.raise_for_status()
        return list(response.json()["messages"])


def thread_id() -> str:
    return f"agui-{uuid.uuid4().hex[:12]}"


def events(lines: Lines) -> list[dict[str, Any]]:
    return [line["event"] for line in lines if "event" in line]


def as_the_client_holds_it(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored branch as AG-UI messages: each reply one assistant message with its text and calls, then
    one tool message per call's result."""
    shown: list[dict[str, Any]] = []
    for message in messages:
        if message["from"] == "user":
            shown.append({"id": message["id"], "role": "user", "content": message["message"]})
        elif message["from"] == "assistant":
            calls = [call for call in messages if call["from"] == "tool" and call["parentId"] == message["id"]]
            assistant: dict[str, Any] = {"id": message["id"], "role": "assistant", "content": message["message"]}
            if calls:
                assistant["toolCalls"] = [{"id": call["id"], "type": "function", "function": {
                    "name": call["name"], "arguments": call["arguments"]}} for call in calls]
            shown.append(assistant)
            shown += [{"id": f"{call['id']}.result", "role": "tool", "toolCallId": call["id"],
                       "content": json.dumps(call["result"], separators=(",", ":"), sort_keys=True)} for call in calls]
    return shown


async def test_a_run_with_text(server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(tokens=["Hello", " from", " the", " fake", "."])
    thread = thread_id()
    lines, result = await drive("text", server.url, thread, "hi there")
    messages = await stored(server.url, thread)
    assert result["messages"] == as_the_client_holds_it(messages)
    assert result["messages"][-1]["content"] == "Hello from the fake."
    assert [run["finished"]["outcome"] for run in result["runs"]] == ["success"]
    assert events(lines)[0]["type"] == "RUN_STARTED" and events(lines)[-1]["type"] == "RUN_FINISHED"


async def test_a_server_run_tool(server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(tool_calls=[[{"text": "Let me work it out. "},
                                      {"name": "calculator", "arguments": {"expression": "6 * 7"}}]],
                         tokens=["It", " is", " 42", "."], argument_chunk=4)
    thread = thread_id()
    lines, result = await drive("text", server.url, thread, "what is 6 * 7?")
    assert [e["type"] for e in events(lines) if e["type"].startswith("TOOL_CALL")] == [
        "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT"]
    messages = await stored(server.url, thread)
    assert result["messages"] == as_the_client_holds_it(messages)
    [call] = [message for message in messages if message["from"] == "tool"]
    assert call["result"] == {"expression": "6 * 7", "result": 42}
    assert result["messages"][1]["content"] == "Let me work it out. It is 42."
    assert result["runs"][0]["finished"] == {"outcome": "success", "pendingToolCallIds": []}


async def test_an_approval_interrupt_resumed(server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(tool_calls=[[{"text": "Tidying. "},
                                      {"name": "delete_file", "arguments": {"path": "/tmp/old.txt"}}]],
                         tokens=["Deleted", "."])
    thread = thread_id()
    lines, result = await drive("approval", server.url, thread, "tidy up")
    assert [e["type"] for e in events(lines)].count("RUN_STARTED") == 2
    messages = await stored(server.url, thread)
    [call] = [message for message in messages if message["from"] == "tool"]
    first, second = result["runs"]
    assert first["finished"]["outcome"] == "interrupt"
    assert [(i["id"], i["toolCallId"], i["reason"]) for i in first["pendingInterrupts"]] == [
        (call["id"], call["id"], "tool_approval")]
    assert second["finished"]["outcome"] == "success" and second["pendingInterrupts"] == []
    assert (call["status"], call["result"]) == ("completed", {"deleted": "/tmp/old.txt"})
    assert result["messages"] == as_the_client_holds_it(messages)
    assert result["messages"][1]["content"] == "Tidying. Deleted."


async def test_a_cut_run_resumes_from_its_last_event_id(server: Server, fake_provider: FakeProvider) -> None:
    """The reply is held after its first piece; the client cuts the connection after the first text it
    reads and resumes with Last-Event-ID while the reply still runs; then the reply is released."""
    fake_provider.script(tokens=["One", " two", " three", " four", "."], hold_after=1)
    thread = thread_id()
    at_resume: list[str] = []

    def on_line(line: dict[str, Any]) -> None:
        if "resumed" in line:  # the reply is still held: the run goes on while the client resumes it
            reply = httpx.get(f"{server.url}/api/conversations/{thread}").json()["messages"][-1]
            at_resume.append(reply["status"])
            fake_provider.release()

    lines, result = await drive("cut", server.url, thread, "count", on_line=on_line)
    assert at_resume == ["streaming"]
    cut = next(line["cut"] for line in lines if "cut" in line)
    applied = events(lines)
    cut_at = int(cut.split(":")[1])
    assert applied[cut_at]["type"] == "TEXT_MESSAGE_CONTENT" and len(applied) > cut_at + 3, (cut, applied)
    messages = await stored(server.url, thread)
    reply = messages[-1]
    assert reply["status"] == "completed"
    assert "".join(e["delta"] for e in applied if e["type"] == "TEXT_MESSAGE_CONTENT") == reply["message"]
    assert result["messages"] == as_the_client_holds_it(messages)
    assert result["runs"][0]["finished"]["outcome"] == "success"
    # What the agent applied is the whole run as a fresh read gives it: no event twice, none lost.
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        listed = await http.get(f"/ag-ui/{thread}/runs/{applied[0]['runId']}/events")
    frames = [block.split("\n") for block in listed.text.split("\n\n") if block.startswith("id: ")]
    assert [json.loads(lines_[1].removeprefix("data: ")) for lines_ in frames] == applied
    assert frames[cut_at][0] == f"id: {cut}"


async def test_a_front_end_tool_whose_result_the_client_sends_back(server: Server, fake_provider: FakeProvider) -> None:
    """The run offers `get_weather` in its `tools`; the model's call of it ends the run (success, the call
    pending); the client runs it, adds a `tool` message and runs again, as CopilotKit does."""
    fake_provider.script(tool_calls=[[{"text": "Let me look. "},
                                      {"name": "get_weather", "arguments": {"city": "Lisbon"}}]],
                         tokens=["Clear", " and", " 21", "."])
    thread = thread_id()
    lines, result = await drive("frontend", server.url, thread, "weather in Lisbon?")
    messages = await stored(server.url, thread)
    [call] = [message for message in messages if message["from"] == "tool"]
    asks, answers = result["runs"]
    assert asks["finished"] == {"outcome": "success", "pendingToolCallIds": [call["id"]]}
    assert answers["finished"] == {"outcome": "success", "pendingToolCallIds": []}
    assert (call["name"], call["status"]) == ("get_weather", "completed")
    assert call["result"] == {"city": "Lisbon", "sky": "clear", "celsius": 21}
    offered = [tool["function"]["name"] for tool in fake_provider.requests()[0]["tools"]]
    assert "get_weather" in offered
    assert result["messages"] == as_the_client_holds_it(messages)
    assert result["messages"][1]["content"] == "Let me look. Clear and 21."
    results = [event for event in events(lines) if event["type"] == "TOOL_CALL_RESULT"]
    assert [(event["toolCallId"], json.loads(event["content"])) for event in results] == [(call["id"], call["result"])]
