"""Checks meant for one request hold for requests that arrive at the same instant.

Real server processes on SQLite and on PostgreSQL; requests are fired together over connections
opened beforehand, so they reach the server within microseconds of each other.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable

import httpx
import pytest

from conftest import FakeProvider, InProcessStarter, Server, ServerFactory
from helpers import post_chat, wait_for_status
from streamchat.catalog.sqlite import SQLiteCatalog
from streamchat.framework.errors import StoreUnavailable
from streamchat.framework.leases import Lease
from streamchat.framework.store import SQLiteStore, StoredItem

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


async def test_a_message_sent_as_its_conversation_is_deleted_never_outlives_the_delete(
    servers: ServerFactory, fake_provider: FakeProvider, store_env: dict[str, str],
) -> None:
    """Either the message was in first (it goes with the rest: 200, then nothing left) or it came
    after the delete (a conversation of its own, whole and listed) or it is refused (404, nothing
    of it stored); never messages without their record, nor a reply without its question."""
    server = servers.start(STREAMCHAT_API_KEYS=ALICE, STREAMCHAT_MAX_CONCURRENT_REPLIES="0",
                           STREAMCHAT_MESSAGES_PER_MINUTE="0", **store_env)
    fake_provider.script(tokens=["ok"])
    outcomes: Counter[str] = Counter()
    async with keyed_client(server, ALICE) as poster, keyed_client(server, ALICE) as deleter:
        await asyncio.gather(warm(poster), warm(deleter))
        for round_number in range(ROUNDS):
            started = await poster.post("/chat", json={"message": "the first message"})
            cid = started.json()["conversationId"]
            sent, deleted = await asyncio.gather(
                poster.post("/chat", json={"message": f"at the instant {round_number}", "conversationId": cid}),
                later(deleter.delete(f"/api/conversations/{cid}"), round_number % 8 / 1000))
            assert deleted.status_code == 204, deleted.text
            assert sent.status_code in (200, 404), sent.text
            read = await poster.get(f"/api/conversations/{cid}")
            listed = [c["conversationId"] for c in (await poster.get("/api/conversations")).json()["conversations"]]
            if read.status_code == 404:
                assert cid not in listed, "a record without its messages"
                outcomes["gone" if sent.status_code == 200 else "refused"] += 1
                continue
            assert sent.status_code == 200, "a refused message was kept"
            messages = read.json()["messages"]
            assert [m["message"] for m in messages if m["from"] == "user"] == [f"at the instant {round_number}"]
            assert [m["from"] for m in messages] == ["user", "assistant"], messages
            assert cid in listed, "messages without their record"
            outcomes["after"] += 1
    assert sum(outcomes.values()) == ROUNDS, outcomes


async def later(request: Awaitable[httpx.Response], seconds: float) -> httpx.Response:
    """The request, sent after `seconds`: racing requests meet at every step of each other."""
    await asyncio.sleep(seconds)
    return await request


@pytest.mark.parametrize("held_up", ["a message's own write", "a message's last write, to the conversation list",
                                     "a regenerated reply's write"])
async def test_a_message_whose_writes_land_during_a_delete_is_taken_back(
    in_process: InProcessStarter, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch, held_up: str,
) -> None:
    """The send checked before the delete began, and a write of it is held up (a slow disk) until the
    delete has read the conversation: the send answers 404 and nothing of it, nor of the
    conversation, is left: no message, no reply, no record in the list."""
    armed, holding, go_on, delete_read = asyncio.Event(), asyncio.Event(), asyncio.Event(), asyncio.Event()
    reads: list[str] = []

    async def hold() -> None:
        """Hold up the first write after arming."""
        if armed.is_set() and not holding.is_set():
            holding.set()
            await go_on.wait()

    list_items = SQLiteStore.list_items

    async def seen_list_items(self: SQLiteStore, stream: str, group: str) -> list[StoredItem]:
        """Note the delete's read of the conversation (its step's check that it exists comes first)."""
        items = await list_items(self, stream, group)
        if holding.is_set() and stream == "conversation":
            reads.append(group)
            if len(reads) == 2:
                delete_read.set()
        return items

    monkeypatch.setattr(SQLiteStore, "list_items", seen_list_items)

    if held_up.endswith("to the conversation list"):
        touch = SQLiteCatalog.touch

        async def slow_touch(self: SQLiteCatalog, conversation_id: str, owner: str | None, message_id: str,
                             message: str, at: str) -> None:
            await hold()
            await touch(self, conversation_id, owner, message_id, message, at)

        monkeypatch.setattr(SQLiteCatalog, "touch", slow_touch)
    else:
        put_item = SQLiteStore.put_item

        async def slow_put_item(self: SQLiteStore, stream: str, group: str, item: StoredItem,
                                lease: Lease | None = None) -> bool:
            await hold()
            return await put_item(self, stream, group, item, lease)

        monkeypatch.setattr(SQLiteStore, "put_item", slow_put_item)
    server = await in_process()
    fake_provider.script(tokens=["ok"])
    first = await post_chat(server, "the first message")
    cid, reply_id = first["conversationId"], first["assistantMessageId"]
    await wait_for_status(server, cid, reply_id)
    async with server.client() as client:
        armed.set()
        sending = asyncio.create_task(
            client.post(f"/api/conversations/{cid}/messages/{reply_id}/regenerate") if "regenerated" in held_up
            else client.post("/chat", json={"message": "held up", "conversationId": cid}))
        await asyncio.wait_for(holding.wait(), 10)
        deleting = asyncio.create_task(client.delete(f"/api/conversations/{cid}"))
        await asyncio.wait_for(delete_read.wait(), 30)  # the delete has read the conversation: the write is late
        go_on.set()
        sent, deleted = await asyncio.wait_for(asyncio.gather(sending, deleting), 30)
        assert deleted.status_code == 204, deleted.text
        assert sent.status_code == 404 and "deleted as the message arrived" in sent.json()["detail"], sent.text
        assert (await client.get(f"/api/conversations/{cid}")).status_code == 404
        listed = (await client.get("/api/conversations")).json()["conversations"]
        assert cid not in [c["conversationId"] for c in listed]
        again = await client.post("/chat", json={"message": "afresh", "conversationId": cid})
        assert again.status_code == 200, "the id is free again"


async def test_a_delete_that_fails_part_way_leaves_the_conversation_open_to_messages(
    in_process: InProcessStarter, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The catalog is unreachable as the delete removes the record: the delete answers 503, and the
    next message into the conversation is taken (its "running" mark does not stay behind)."""
    async def unreachable(self: SQLiteCatalog, conversation_id: str) -> None:
        raise StoreUnavailable("the catalog's database is unreachable")

    server = await in_process()
    fake_provider.script(tokens=["ok"])
    first = await post_chat(server, "the first message")
    cid = first["conversationId"]
    await wait_for_status(server, cid, first["assistantMessageId"])  # no reply's end meets the delete
    async with server.client() as client:
        with monkeypatch.context() as patch:
            patch.setattr(SQLiteCatalog, "remove", unreachable)
            failed = await client.delete(f"/api/conversations/{cid}")
        assert failed.status_code == 503, failed.text
        again = await client.post("/chat", json={"message": "still here?", "conversationId": cid})
        assert again.status_code == 200, again.text
        assert (await client.delete(f"/api/conversations/{cid}")).status_code == 204, "the delete sent again"
