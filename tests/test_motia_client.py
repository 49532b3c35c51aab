"""Motia's published Node client (@motiadev/stream-client-node) against the real server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import FakeProvider, Server
from helpers import Transcript, Watcher, post_chat, read_sse, wait_until_streaming

CLIENT_DIR = Path(__file__).parent / "motia_client"
TOKENS = [f"piece{i} " for i in range(15)]


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    assert path, "node is required for the Motia client tests (scripts/test installs the client with npm)"
    assert (CLIENT_DIR / "node_modules" / "@motiadev" / "stream-client-node").is_dir(), (
        "run ./scripts/test (it installs @motiadev/stream-client-node with npm)")
    return path


class NodeWatcher:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, node: str, *args: str, env: dict[str, str] | None = None,
                    script: str = "watch.mjs") -> NodeWatcher:
        process = await asyncio.create_subprocess_exec(
            node, script, *args, cwd=CLIENT_DIR, env={**os.environ, **(env or {})},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        watcher = cls(process)
        ready = await watcher.line()
        assert ready == {"type": "ready"}, ready
        return watcher

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), 30)
        if not raw:
            stderr = await self.process.stderr.read() if self.process.stderr else b""
            raise AssertionError(f"node client exited: {stderr.decode()}")
        return dict(json.loads(raw))

    async def until_rendered(self, length: int) -> None:
        """Read the group watcher's renders until it has shown a reply of `length` characters."""
        while (line := await self.line()) != {"type": "render", "length": length}:
            assert line["type"] == "render", line

    async def final(self) -> dict[str, Any]:
        result = await self.line()
        while result["type"] == "render":
            result = await self.line()
        assert await asyncio.wait_for(self.process.wait(), 10) == 0
        assert result["type"] == "final", result
        return result


async def test_group_subscription_receives_the_whole_reply(
    node: str, server: Server, fake_provider: FakeProvider
) -> None:
    fake_provider.script(tokens=TOKENS, hold_after=5)  # held mid-way until the client has shown it
    cid = str(uuid.uuid4())
    watcher = await NodeWatcher.start(node, server.ws_url, cid, "group")
    accepted = await post_chat(server.url, "hello from node", cid)
    await watcher.until_rendered(len("".join(TOKENS[:5])))
    fake_provider.release()
    result = await watcher.final()
    items = {item["id"]: item for item in result["state"]}
    reply = items[accepted["assistantMessageId"]]
    assert (reply["status"], reply["message"]) == ("completed", "".join(TOKENS))
    assert items[accepted["userMessageId"]]["message"] == "hello from node"
    assert [item["id"] for item in result["state"]] == [accepted["userMessageId"], accepted["assistantMessageId"]]
    held, whole = len("".join(TOKENS[:5])), len("".join(TOKENS))
    assert held in result["renders"] and result["renders"][-1] == whole, (
        "the client rendered the reply progressively: the text so far, then the whole")


async def test_a_deleted_conversation_empties_in_motias_client(
    node: str, server: Server, fake_provider: FakeProvider
) -> None:
    """DELETE while the reply streams: Motia's own client removes each message on its delete frame."""
    fake_provider.script(tokens=[f"long{i} " for i in range(200)], hold_after=3)  # never released: still streaming
    accepted = await post_chat(server.url, "a reply to delete")
    cid = accepted["conversationId"]
    await fake_provider.until_held()
    await wait_until_streaming(server.url, cid, accepted["assistantMessageId"])
    watcher = await NodeWatcher.start(node, server.ws_url, cid, "emptied")
    async with server.client() as client:
        assert (await client.delete(f"/api/conversations/{cid}")).status_code == 204
    result = await watcher.final()
    assert result["state"] == []
    assert result["renders"][0] == 2, "it saw both messages before they went"


async def test_item_subscription_receives_the_whole_reply(
    node: str, server: Server, fake_provider: FakeProvider
) -> None:
    fake_provider.script(tokens=TOKENS, delay=0.02, hold=True)
    accepted = await post_chat(server.url, "item watch from node")
    watcher = await NodeWatcher.start(
        node, server.ws_url, accepted["conversationId"], "item", accepted["assistantMessageId"])
    fake_provider.release()
    result = await watcher.final()
    assert result["state"]["status"] == "completed"
    assert result["state"]["message"] == "".join(TOKENS)
    assert result["state"]["id"] == accepted["assistantMessageId"]


async def test_two_node_clients_end_with_identical_state(
    node: str, server: Server, fake_provider: FakeProvider
) -> None:
    fake_provider.script(tokens=TOKENS, delay=0.01)
    cid = str(uuid.uuid4())
    watchers = [await NodeWatcher.start(node, server.ws_url, cid, "group") for _ in range(2)]
    await post_chat(server.url, "two clients", cid)
    first, second = [await watcher.final() for watcher in watchers]
    assert first["state"] == second["state"]


async def test_every_kind_of_subscriber_ends_with_byte_identical_text(
    node: str, server: Server, fake_provider: FakeProvider
) -> None:
    tokens = ["Grüße ", "🌊 ", "海 ", "e\u0301 ", '"quoted" ', "\\back\\slash ", "<b>tag</b> ", "\n", "end"] * 8
    fake_provider.script(tokens=tokens, hold_after=20)  # held until the late watcher has joined mid-reply
    expected = "".join(tokens).encode()
    cid = str(uuid.uuid4())
    node_watcher = await NodeWatcher.start(node, server.ws_url, cid, "group")
    plain, deltas = Watcher(server.ws_url, cid), Watcher(server.ws_url, cid, deltas=True)
    await plain.__aenter__()
    await deltas.__aenter__()
    accepted = await post_chat(server.url, "unicode, please", cid)
    mid = accepted["assistantMessageId"]
    transcript = Transcript()
    sse = asyncio.create_task(follow_sse(server, cid, transcript, mid))
    await wait_until_streaming(server.url, cid, mid)
    late = Watcher(server.ws_url, cid, deltas=True)
    await late.__aenter__()
    fake_provider.release()
    finals = await asyncio.gather(plain.until_finished(mid), deltas.until_finished(mid), late.until_finished(mid))
    node_state = {item["id"]: item for item in (await node_watcher.final())["state"]}
    await sse
    for watcher in (plain, deltas, late):
        await watcher.__aexit__()

    assert [final["message"].encode() for final in finals] == [expected] * 3
    assert rebuilt_from_deltas(deltas, mid).encode() == expected
    assert rebuilt_from_deltas(late, mid).encode() == expected, "a mid-reply joiner: text so far, then the rest"
    assert transcript.texts[mid].encode() == expected
    assert node_state[mid]["message"].encode() == expected


def rebuilt_from_deltas(watcher: Watcher, item_id: str) -> str:
    """The text a delta subscriber assembles: the last whole item it got, plus the deltas after it."""
    text, seq = "", 0
    for frame in watcher.watch.frames:
        event = frame["event"]
        items = event["data"] if event["type"] == "sync" else [event.get("data")]
        if event["type"] in ("sync", "create", "update"):
            for item in items or []:
                if item and item["id"] == item_id and item["seq"] >= seq and item["status"] != "completed":
                    text, seq = item["message"], item["seq"]
        elif event["type"] == "event" and event["event"]["type"] == "delta":
            delta = event["event"]["data"]
            if delta["id"] == item_id and delta["seq"] > seq:
                text, seq = text + delta["delta"], delta["seq"]
    return text


async def follow_sse(server: Server, cid: str, transcript: Transcript, item_id: str) -> None:
    async with httpx.AsyncClient(timeout=30) as client, client.stream(
        "GET", f"{server.url}/api/conversations/{cid}/events"
    ) as response:
        async for frame in read_sse(response):
            if not isinstance(frame, str):
                transcript.apply(frame)
                if transcript.status.get(item_id) in ("completed", "error", "stopped"):
                    return
