"""A switch of the active branch is live and shared: two instances (Redis + PostgreSQL) agree on it,
and a WebSocket watcher and an SSE watcher on the other instance get it at once; an SSE watcher that
reconnects after a switch it missed gets it, and a fresh one's snapshot ends with it."""

from __future__ import annotations

from typing import Any

import httpx

from conftest import Cluster, FakeProvider, Server
from helpers import Watcher, wait_for_status
from test_group_events_http import SseClient


async def call(server: Server, method: str, path: str, body: dict[str, Any] | None = None,
               status: int = 200) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        answer = await client.request(method, path, json=body)
    assert answer.status_code == status, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def test_two_instances_agree_on_the_active_branch_and_every_watcher_sees_each_switch(
    cluster: Cluster, fake_provider: FakeProvider,
) -> None:
    one, two = cluster.start_many(2)
    sent = await call(one, "POST", "/chat", {"message": "first"})
    cid, u1, a1 = sent["conversationId"], sent["userMessageId"], sent["assistantMessageId"]
    await wait_for_status(one.url, cid, a1)
    base = f"/api/conversations/{cid}"
    regenerated = await call(two, "POST", f"{base}/messages/{a1}/regenerate", status=202)
    a1b = regenerated["assistantMessageId"]
    await wait_for_status(two.url, cid, a1b)

    async with Watcher(two.ws_url, cid) as socket, SseClient(two, cid) as sse:
        snapshot = await sse.snapshot()
        assert (snapshot[-1].event, snapshot[-1].data) == ("active-branch", {"activeMessageId": a1b,
                                                                           "path": [u1, a1b]})
        seen_before = snapshot[-1].id
        switched = await call(one, "PUT", f"{base}/active", {"messageId": a1})
        assert switched == {"activeMessageId": a1, "path": [u1, a1]}
        frame = await sse.next()
        assert (frame.event, frame.data) == ("active-branch", switched) and frame.id is not None
        assert frame.id > (seen_before or 0)

        async def branch_event() -> dict[str, Any]:
            while True:
                received = await socket.next_frame()
                if received["event"]["type"] == "event" and received["event"]["event"]["type"] == "active-branch":
                    return dict(received["event"]["event"]["data"])

        assert await branch_event() == {"activeMessageId": a1b, "path": [u1, a1b]}, "the one after the join's sync"
        assert await branch_event() == switched
        missed_from = frame.id

    for server in (one, two):
        body = await call(server, "GET", base)
        assert body["activeMessageId"] == a1 and [m["id"] for m in body["messages"]] == [u1, a1]

    # A switch made while nobody watched two: an SSE watcher resuming from before it gets it.
    async with SseClient(two, cid) as keeps_the_group_watched:
        await keeps_the_group_watched.snapshot()
        back = await call(one, "PUT", f"{base}/active", {"messageId": a1b})
        async with SseClient(two, cid, last_event_id=missed_from) as resumed:
            frame = await resumed.next()
        assert (frame.event, frame.data) == ("active-branch", back)
