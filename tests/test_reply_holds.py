"""What a reply holds until it has really ended, and what a delete leaves behind, whatever meets it.

A reply counts against its API key (STREAMCHAT_MAX_CONCURRENT_REPLIES) and, in reject mode, keeps
its conversation busy, from the POST that asks for it until it is completed, stopped, failed for
good, or deleted: never freed by a run that is handed back or retried. A delete leaves nothing of
the conversation, even when a reply's last write or a second delete meets it.
Each test holds the interleaving open with the fake provider's `hold_after` or a held store call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conftest import FakeProvider, InProcessStarter
from helpers import InProcessServer, until, wait_for_status
from streamchat.framework.store import SQLiteStore, StoredItem

WAIT = 30.0
KEY = "k-holds-1"
AUTH = {"Authorization": f"Bearer {KEY}"}


async def post(server: InProcessServer, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    async with server.client(headers=headers or {}) as client:
        return await client.post("/chat", json=body)


async def test_a_reply_handed_back_at_shutdown_still_counts_against_its_key_until_it_ends(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    """The instance stops while the reply streams: the reply is handed back and run again by the
    next start. Meanwhile it is still the key's one running reply (and its conversation's answer),
    so a second message of that key is refused until the reply has really ended."""
    settings = {"STREAMCHAT_API_KEYS": KEY, "STREAMCHAT_MAX_CONCURRENT_REPLIES": "1",
                "STREAMCHAT_BUSY_MODE": "reject", "STREAMCHAT_SHUTDOWN_SECONDS": "0.1"}
    fake_provider.script(tokens=["held ", "until ", "released"], hold_after=1)
    first = await in_process(**settings)
    accepted = await post(first, {"message": "a long answer, please", "conversationId": "handed-back"}, AUTH)
    assert accepted.status_code == 200, accepted.text
    cid, reply_id = accepted.json()["conversationId"], accepted.json()["assistantMessageId"]
    await fake_provider.until_held(1)
    assert first.shutdown is not None
    await first.shutdown()  # the reply cannot finish (the provider holds it): it is handed back

    second = await in_process(**settings)  # the same database: the reply is delivered again
    await fake_provider.until_held(2)
    answering = await second.runtime.store.state_list(f"answering:{cid}")
    assert reply_id in answering, "the conversation's busy mark was freed while its reply still runs"
    refused = await post(second, {"message": "another one"}, AUTH)
    assert refused.status_code == 429, f"the key's one reply still runs: {refused.status_code} {refused.text}"

    fake_provider.release()
    ended = await wait_for_status(second, cid, reply_id, headers=AUTH)
    assert (ended["status"], ended["message"]) == ("completed", "held until released")

    async def freed() -> bool:  # right after the reply's last write
        return await second.runtime.store.state_list(f"answering:{cid}") == {}

    await until(freed, "the ended reply frees its conversation", WAIT)
    allowed = await post(second, {"message": "another one"}, AUTH)
    assert allowed.status_code == 200, "the reply's end frees the key's place"


async def test_a_reply_whose_last_write_meets_the_conversations_delete_leaves_nothing(
    in_process: InProcessStarter, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reply has read itself to write its last state when the conversation is deleted (the
    delete's wait for the stopped reply runs out first): its last write must not bring the reply
    back into a conversation that no longer exists."""
    armed, holding, go_on = asyncio.Event(), asyncio.Event(), asyncio.Event()
    get_item = SQLiteStore.get_item

    async def held_get_item(self: SQLiteStore, stream: str, group: str, item_id: str) -> StoredItem | None:
        found = await get_item(self, stream, group, item_id)
        if armed.is_set() and not holding.is_set() and item_id == armed_for[0]:
            holding.set()
            await go_on.wait()  # the reply's run has read itself and is about to write its last state
        return found

    armed_for: list[str] = [""]
    monkeypatch.setattr(SQLiteStore, "get_item", held_get_item)
    server = await in_process()
    fake_provider.script(tokens=["the ", "last ", "words"], hold_after=1)
    accepted = await post(server, {"message": "answer me"})
    cid, reply_id = accepted.json()["conversationId"], accepted.json()["assistantMessageId"]
    await fake_provider.until_held(1)
    armed_for[0] = reply_id
    armed.set()
    fake_provider.release()
    await asyncio.wait_for(holding.wait(), WAIT)
    async with server.client() as client:
        deleted = await client.delete(f"/api/conversations/{cid}")
        assert deleted.status_code == 204, deleted.text
        go_on.set()
        runtime = server.runtime

        async def run_over() -> bool:
            return not runtime.bus.queue_depth()

        await until(run_over, "the reply's run ended", WAIT)
        assert await runtime.store.list_items("conversation", cid) == [], "the last write brought the reply back"
        assert (await client.get(f"/api/conversations/{cid}")).status_code == 404
        listed = (await client.get("/api/conversations")).json()["conversations"]
        assert cid not in [c["conversationId"] for c in listed]


async def test_a_message_sent_while_the_second_of_two_deletes_still_runs_is_refused(
    in_process: InProcessStarter, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two deletes of one conversation at the same instant; the first ends while the second still
    runs. A message sent now must get 404 at once: the first delete's end must not hide the second."""
    armed, holding, go_on = asyncio.Event(), asyncio.Event(), asyncio.Event()
    reads: list[str] = []
    list_items = SQLiteStore.list_items

    async def held_list_items(self: SQLiteStore, stream: str, group: str) -> list[StoredItem]:
        if armed.is_set() and not holding.is_set() and stream == "conversation":
            reads.append(group)
            if len(reads) == 2:  # the first is the step's check that the conversation exists
                holding.set()
                await go_on.wait()  # the delete under way, slow to read the conversation
        return await list_items(self, stream, group)

    monkeypatch.setattr(SQLiteStore, "list_items", held_list_items)
    server = await in_process()
    fake_provider.script(tokens=["ok"])
    accepted = await post(server, {"message": "the first message"})
    cid = accepted.json()["conversationId"]
    await wait_for_status(server, cid, accepted.json()["assistantMessageId"])
    async with server.client() as client:
        armed.set()
        slow_delete = asyncio.create_task(client.delete(f"/api/conversations/{cid}"))
        await asyncio.wait_for(holding.wait(), WAIT)
        quick = await client.delete(f"/api/conversations/{cid}")
        assert quick.status_code == 204, quick.text
        meanwhile = await client.post("/chat", json={"message": "sent between the two ends", "conversationId": cid})
        go_on.set()
        assert (await asyncio.wait_for(slow_delete, WAIT)).status_code == 204
        assert meanwhile.status_code == 404, f"a delete still ran: {meanwhile.status_code} {meanwhile.text}"
        assert (await client.get(f"/api/conversations/{cid}")).status_code == 404
        again = await client.post("/chat", json={"message": "afresh", "conversationId": cid})
        assert again.status_code == 200, "once both deletes are done the id is free again"
