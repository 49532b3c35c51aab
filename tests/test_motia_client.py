"""Motia's published Node client (@motiadev/stream-client-node) against the real server."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import FakeProvider, Server
from helpers import post_chat

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
    async def start(cls, node: str, *args: str) -> NodeWatcher:
        process = await asyncio.create_subprocess_exec(
            node, "watch.mjs", *args, cwd=CLIENT_DIR,
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

    async def final(self) -> dict[str, Any]:
        result = await self.line()
        assert await asyncio.wait_for(self.process.wait(), 10) == 0
        assert result["type"] == "final", result
        return result


async def test_group_subscription_receives_the_whole_reply(
    node: str, server: Server, fake_provider: FakeProvider
) -> None:
    fake_provider.script(tokens=TOKENS, delay=0.02)
    cid = str(uuid.uuid4())
    watcher = await NodeWatcher.start(node, server.ws_url, cid, "group")
    accepted = await post_chat(server.url, "hello from node", cid)
    result = await watcher.final()
    items = {item["id"]: item for item in result["state"]}
    reply = items[accepted["assistantMessageId"]]
    assert (reply["status"], reply["message"]) == ("completed", "".join(TOKENS))
    assert items[accepted["userMessageId"]]["message"] == "hello from node"
    assert [item["id"] for item in result["state"]] == [accepted["userMessageId"], accepted["assistantMessageId"]]
    assert len(set(result["renders"])) > 3, "the client should have rendered the reply progressively"


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
