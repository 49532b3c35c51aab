"""Every client sees the same tool calls, live and after a reconnect: Motia's published Node client over
the WebSocket, and SSE resumed with Last-Event-ID across an approval. A real server process (the
clients connect over the network), the fake provider streaming the calls' arguments in pieces."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import httpx

from conftest import FakeProvider, ServerFactory
from helpers import read_sse, wait_for_status
from streamchat.client import SseFrame
from test_motia_client import NodeWatcher, node  # noqa: F401  (node is a fixture)

TESTS = Path(__file__).parent
ENDED = {"completed", "error", "stopped"}


def with_loop_tools() -> dict[str, str]:
    """The settings of a server that also has the tool files of tests/loop_tools."""
    return {"STREAMCHAT_TOOLS": "loop_tools",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}


class SseState:
    """What an SSE client knows of a conversation, rebuilt from item and delta frames alone (a delta
    grows the field it names, the text when it names none)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.last_id: int | None = None

    def apply(self, frame: SseFrame) -> None:
        data = frame.data
        if frame.event == "item":
            self.items[data["id"]] = dict(data)
        elif frame.event == "delta":
            item = self.items[data["id"]]
            grows = data.get("field", "message")
            item[grows] = (item.get(grows) or "") + data["delta"]
        elif frame.event == "delete":
            self.items.pop(data["id"], None)
        if frame.id is not None:
            self.last_id = frame.id

    def calls(self) -> list[dict[str, Any]]:
        return [item for item in self.items.values() if item.get("from") == "tool"]


async def follow(client: httpx.AsyncClient, cid: str, state: SseState, done: Any,
                 last_id: int | None = None) -> None:
    """Read the conversation's SSE frames into `state` until `done(state)`."""
    headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
    async with client.stream("GET", f"/api/conversations/{cid}/events", headers=headers) as response:
        assert response.status_code == 200
        async for frame in read_sse(response):
            if isinstance(frame, SseFrame):
                state.apply(frame)
                if done(state):
                    return


def essentials(call: dict[str, Any]) -> tuple[Any, ...]:
    return (call["id"], call["name"], call["arguments"], call["status"], call.get("result"), call.get("error"))


async def test_motia_and_sse_clients_see_the_calls_stream_wait_run_and_end_as_stored(
    node: str, servers: ServerFactory, fake_provider: FakeProvider,  # noqa: F811
) -> None:
    server = servers.start(**with_loop_tools())
    fake_provider.script(tool_calls=[[{"text": "Checking. "},
                                      {"name": "calculator", "arguments": {"expression": "6 * 7"}},
                                      {"name": "delete_file", "arguments": {"path": "/tmp/old.txt"}}]],
                         tokens=["Done", "."], argument_chunk=3, delay=0.005)
    cid = str(uuid.uuid4())
    watcher = await NodeWatcher.start(node, server.ws_url, cid, script="watch_tools.mjs")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        sent = (await client.post("/chat", json={"message": "tidy up", "conversationId": cid})).json()
        reply_id = sent["assistantMessageId"]
        before = SseState()
        await follow(client, cid, before, lambda state: any(
            call["status"] == "awaiting_approval" for call in state.calls()))
        waiting = next(call for call in before.calls() if call["status"] == "awaiting_approval")
        while (line := await watcher.line()) != {"type": "call", "id": waiting["id"], "status": "awaiting_approval"}:
            assert line["type"] == "call", line
        approved = await client.post(f"/api/conversations/{cid}/messages/{waiting['id']}/approve")
        assert approved.status_code == 200, approved.text
        after = before
        await follow(client, cid, after, lambda state: state.items[reply_id]["status"] in ENDED,
                     last_id=before.last_id)
        await wait_for_status(server.url, cid, reply_id)
        stored = (await client.get(f"/api/conversations/{cid}")).json()["messages"]

    while (result := await watcher.line())["type"] == "call":
        pass
    assert result["type"] == "final", result
    stored_calls = [message for message in stored if message["from"] == "tool"]
    assert [essentials(call) for call in stored_calls] == [
        (f"{reply_id}.t0.0", "calculator", '{"expression":"6 * 7"}', "completed",
         {"expression": "6 * 7", "result": 42}, None),
        (f"{reply_id}.t0.1", "delete_file", '{"path":"/tmp/old.txt"}', "completed", {"deleted": "/tmp/old.txt"},
         None)]
    assert [essentials(call) for call in after.calls()] == [essentials(call) for call in stored_calls], (
        "SSE, resumed after the approval, rebuilt every call exactly (its arguments from deltas)")
    motia_calls = [item for item in result["items"] if item["from"] == "tool"]
    assert [essentials(call) for call in motia_calls] == [essentials(call) for call in stored_calls]
    statuses = result["statuses"]
    assert statuses[waiting["id"]][-2:] == ["running", "completed"] or statuses[waiting["id"]][-1] == "completed"
    assert "awaiting_approval" in statuses[waiting["id"]]
    assert statuses[stored_calls[0]["id"]][-1] == "completed"
    reply = next(message for message in stored if message["id"] == reply_id)
    assert (reply["status"], reply["message"]) == ("completed", "Checking. Done.")
