"""Checks meant for one request hold for requests that arrive at the same instant.

Real server processes on SQLite and on PostgreSQL; requests are fired together over connections
opened beforehand, so they reach the server within microseconds of each other.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx

from conftest import FakeProvider, Server, ServerFactory

ALICE, BOB = "alice-key-0123456789", "bob-key-9876543210"
ROUNDS = 20


async def warm(client: httpx.AsyncClient) -> None:
    """Open the connection now, so the racing requests do not wait on a handshake."""
    assert (await client.get("/healthz")).status_code == 200


def keyed_client(server: Server, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {key}"})


async def test_two_keys_claiming_one_unused_conversation_get_one_owner(
    servers: ServerFactory, fake_provider: FakeProvider, store_env: dict[str, str],
) -> None:
    server = servers.start(STREAMCHAT_API_KEYS=f"{ALICE},{BOB}", STREAMCHAT_MAX_CONCURRENT_REPLIES="0",
                           STREAMCHAT_MESSAGES_PER_MINUTE="0", **store_env)
    fake_provider.script(tokens=["ok"])
    async with keyed_client(server, ALICE) as alice, keyed_client(server, BOB) as bob:
        await asyncio.gather(warm(alice), warm(bob))
        for _ in range(ROUNDS):
            cid = str(uuid.uuid4())
            answers = await asyncio.gather(alice.post("/chat", json={"message": "mine", "conversationId": cid}),
                                           bob.post("/chat", json={"message": "no, mine", "conversationId": cid}))
            assert sorted(a.status_code for a in answers) == [200, 404], [a.text for a in answers]
            winner, loser = (alice, bob) if answers[0].status_code == 200 else (bob, alice)
            read = await winner.get(f"/api/conversations/{cid}")
            assert read.status_code == 200 and [m["from"] for m in read.json()["messages"]][:1] == ["user"]
            assert (await loser.get(f"/api/conversations/{cid}")).status_code == 404


async def test_a_burst_of_posts_never_runs_more_replies_than_the_quota(
    servers: ServerFactory, fake_provider: FakeProvider, store_env: dict[str, str],
) -> None:
    limit, burst = 2, 24
    server = servers.start(STREAMCHAT_API_KEYS=ALICE, STREAMCHAT_MAX_CONCURRENT_REPLIES=str(limit),
                           STREAMCHAT_MESSAGES_PER_MINUTE="0", **store_env)
    fake_provider.script(tokens=["held ", "reply"], hold=True)
    clients = [keyed_client(server, ALICE) for _ in range(burst)]
    try:
        await asyncio.gather(*(warm(client) for client in clients))
        answers = await asyncio.gather(*(client.post("/chat", json={"message": f"burst {i}"})
                                         for i, client in enumerate(clients)))
        statuses = Counter(answer.status_code for answer in answers)
        assert statuses == {200: limit, 429: burst - limit}, [a.text for a in answers if a.status_code != 429]
        assert all(a.json()["error"] == "too_many_replies" for a in answers if a.status_code == 429)
        listed = (await clients[0].get("/api/conversations")).json()["conversations"]
        assert len(listed) == limit, "a refused POST stores nothing"
    finally:
        fake_provider.release()
        await asyncio.gather(*(client.aclose() for client in clients))
