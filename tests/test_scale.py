"""Several real server processes sharing the real Redis (bus, relay, stops) and PostgreSQL (store).

Each test gets its own Redis key prefix and a fresh PostgreSQL database, so tests never see
each other's events or conversations.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from conftest import Cluster, FakeProvider, Server
from helpers import Transcript, Watcher, post_chat, read_sse, wait_for_status, wait_until_streaming
from test_motia_client import NodeWatcher, node, rebuilt_from_deltas  # noqa: F401  (node is a fixture)

TOKENS = [f"tok{i} " for i in range(40)]


async def follow_sse(server: Server, cid: str, transcript: Transcript, item_id: str) -> None:
    async with httpx.AsyncClient(timeout=30) as client, client.stream(
            "GET", f"{server.url}/api/conversations/{cid}/events") as response:
        async for frame in read_sse(response):
            if isinstance(frame, str):
                continue
            transcript.apply(frame)
            if transcript.status.get(item_id) in ("completed", "error", "stopped"):
                return


async def test_a_reply_posted_on_one_instance_streams_whole_to_clients_of_the_others(
    cluster: Cluster, fake_provider: FakeProvider, node: str,  # noqa: F811
) -> None:
    fake_provider.script(tokens=TOKENS, delay=0.01)
    a, b, c = cluster.start_many(3)
    cid = str(uuid.uuid4())
    node_watcher = await NodeWatcher.start(node, b.ws_url, cid, "group")
    deltas = Watcher(c.ws_url, cid, deltas=True)
    await deltas.__aenter__()
    transcript = Transcript()
    accepted = await post_chat(a.url, "hello cluster", cid)
    mid = accepted["assistantMessageId"]
    sse = asyncio.create_task(follow_sse(b, cid, transcript, mid))
    final = await deltas.until_finished(mid)
    await asyncio.wait_for(sse, 30)
    node_state = {item["id"]: item for item in (await node_watcher.final())["state"]}
    await deltas.__aexit__()

    expected = "".join(TOKENS)
    assert final["status"] == "completed" and final["message"] == expected
    assert rebuilt_from_deltas(deltas, mid) == expected
    assert transcript.texts[mid] == expected and transcript.status[mid] == "completed"
    assert node_state[mid]["message"] == expected and node_state[mid]["status"] == "completed"
    assert node_state[accepted["userMessageId"]]["message"] == "hello cluster"
    seqs = [frame["event"]["data"]["seq"] for frame in deltas.watch.frames if frame["event"]["type"] != "sync"
            and isinstance(frame["event"].get("data"), dict) and "seq" in frame["event"]["data"]]
    assert seqs == sorted(set(seqs)), "a subscriber must see one strictly rising order of changes"
    for server in (a, b, c):
        async with httpx.AsyncClient(base_url=server.url) as client:
            body = (await client.get(f"/api/conversations/{cid}")).json()
        assert [m["message"] for m in body["messages"]] == ["hello cluster", expected]
