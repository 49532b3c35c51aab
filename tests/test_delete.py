"""Deleting a conversation while its reply streams: watchers see it go, the provider request
closes, and nothing comes back after a restart (real server processes, a real WebSocket and SSE)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from redis.asyncio import Redis

from conftest import Cluster, FakeProvider, ServerFactory
from helpers import SseFrame, Watcher, post_chat, read_sse, wait_until_streaming

SLOW = [f"slow{i} " for i in range(200)]


async def deletes_then_nothing(watcher: Watcher, items: int) -> list[str]:
    """The ids of the next `items` delete frames a watcher gets, then a second of nothing more."""
    deletes: list[str] = []
    while len(deletes) < items:
        frame = await watcher.next_frame(10)
        if frame["event"]["type"] == "delete":
            deletes.append(frame["event"]["data"]["id"])
    with pytest.raises(TimeoutError):
        extra = await watcher.next_frame(1.0)
        raise AssertionError(f"a frame after the deletes: {extra}")
    return deletes


async def frames_until_deleted(url: str, cid: str, last_event_id: int, ids: list[str]) -> list[SseFrame]:
    """The frames an SSE client resuming after `last_event_id` gets, up to the deletes of every item in `ids`."""
    frames: list[SseFrame] = []

    async def read() -> None:
        async with httpx.AsyncClient(timeout=30) as client, client.stream(
                "GET", f"{url}/api/conversations/{cid}/events", headers={"Last-Event-ID": str(last_event_id)}
        ) as response:
            assert response.status_code == 200
            async for frame in read_sse(response):
                if isinstance(frame, SseFrame):
                    frames.append(frame)
                    if set(ids) <= {f.data["id"] for f in frames if f.event == "delete"}:
                        return

    await asyncio.wait_for(read(), 30)
    return frames


async def test_deleting_while_a_reply_streams_stops_it_and_watchers_see_every_item_go(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    server = servers.start()
    fake_provider.script(tokens=SLOW, hold_after=3)  # held mid-way, never released: only the delete ends it
    accepted = await post_chat(server.url, "talk for a long time")
    cid, mid = accepted["conversationId"], accepted["assistantMessageId"]
    await fake_provider.until_held()
    await wait_until_streaming(server.url, cid, mid)
    sse_frames: list[SseFrame] = []
    subscribed = asyncio.Event()

    async def read_events() -> None:
        async with httpx.AsyncClient(timeout=30) as client, client.stream(
                "GET", f"{server.url}/api/conversations/{cid}/events") as response:
            async for frame in read_sse(response):
                if isinstance(frame, SseFrame):
                    sse_frames.append(frame)
                    subscribed.set()

    reader = asyncio.create_task(read_events())
    async with Watcher(server.ws_url, cid, deltas=True) as watcher:
        await asyncio.wait_for(subscribed.wait(), 10)
        async with server.client() as client:
            gone = await client.delete(f"/api/conversations/{cid}")
        assert gone.status_code == 204, gone.text
        deletes = await deletes_then_nothing(watcher, 2)
    reader.cancel()

    assert sorted(deletes) == sorted([accepted["userMessageId"], mid])
    sse_deletes = [f.data["id"] for f in sse_frames if f.event == "delete"]
    assert sorted(sse_deletes) == sorted([accepted["userMessageId"], mid])
    assert sse_frames[-1].event == "delete", "nothing after the deletes on SSE either"

    # A client that resumes from before the delete gets only that the items went, none of their text.
    mark = next(frame.id for frame in sse_frames if frame.id is not None)
    resumed = await frames_until_deleted(server.url, cid, mark, [accepted["userMessageId"], mid])
    assert sorted(f.data["id"] for f in resumed if f.event == "delete") == sorted([accepted["userMessageId"], mid])
    assert "slow" not in str([f.data for f in resumed]) and "talk" not in str([f.data for f in resumed]), resumed

    record = await fake_provider.until_closed_by_client(0)
    assert not record["finished"] and len(fake_provider.streams()) == 1, record

    assert server.stop() == 0
    restarted = servers.start()
    async with restarted.client() as client:
        assert (await client.get(f"/api/conversations/{cid}")).status_code == 404
        assert (await client.get("/api/conversations")).json()["conversations"] == []
        assert (await client.get("/api/conversations", params={"q": "talk"})).json()["conversations"] == []


async def test_deleting_on_one_instance_empties_the_conversation_on_every_instance(
    cluster: Cluster, fake_provider: FakeProvider,
) -> None:
    """Reply running on one instance, a watcher on another, the delete sent to a third place (the
    first instance): the provider request closes, the other instance's watcher sees every item go,
    the group's log leaves Redis, and neither instance knows the conversation afterwards."""
    first, second = cluster.start_many(2)
    fake_provider.script(tokens=SLOW, hold_after=3)  # held mid-way, never released: only the delete ends it
    accepted = await post_chat(first.url, "talk across instances")
    cid, mid = accepted["conversationId"], accepted["assistantMessageId"]
    await fake_provider.until_held()
    await wait_until_streaming(first.url, cid, mid)
    redis = Redis.from_url(cluster.redis_url)
    log_key = f"{cluster.prefix}:log:conversation:{cid}"
    try:
        assert await redis.exists(log_key) == 1, f"the group's log is in Redis while it streams ({log_key})"
        async with Watcher(second.ws_url, cid, deltas=True) as watcher:
            # It is live (joined and synced): the other instance shows the running reply.
            [running] = watcher.watch.items(mid)
            assert running["status"] == "streaming" and "".join(SLOW).startswith(running["message"]), running
            async with first.client() as client:
                assert (await client.delete(f"/api/conversations/{cid}")).status_code == 204
            deletes = await deletes_then_nothing(watcher, 2)
        assert sorted(deletes) == sorted([accepted["userMessageId"], mid])
        assert await redis.exists(log_key) == 0, "the group's log is gone from Redis"
    finally:
        await redis.aclose()
    record = await fake_provider.until_closed_by_client(0)
    assert not record["finished"] and len(fake_provider.streams()) == 1, record
    for server in (first, second):
        async with server.client() as client:
            assert (await client.get(f"/api/conversations/{cid}")).status_code == 404
            assert (await client.get("/api/conversations")).json()["conversations"] == []
