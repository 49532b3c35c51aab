"""The streaming core's promises where they once rested on timing: nothing written after its delete,
nothing doubled, nothing stuck, no cancellation swallowed.

Each test holds the interleaving that a careful read of the code found open, on the real stores
and the real Redis: a write held up until a delete has run, a connection dropped after Redis ran
a change, a partition lost and taken again while events wait behind a running one.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError

from helpers import until
from streamchat.conversations.messages import ConversationMessage
from streamchat.framework import Runtime
from streamchat.framework.bus import Event, Subscription
from streamchat.framework.bus.redis import RedisBus
from streamchat.framework.config import Emit, EventConfig
from streamchat.framework.discovery import EventStep, StepSet
from streamchat.framework.redis_link import RedisLink
from streamchat.framework.stops.registry import Stoppable, StopRegistry
from streamchat.framework.store import MemoryStore, PostgresStore, SQLiteStore, Store, StoredItem
from streamchat.framework.streams.hub import StreamHub
from streamchat.framework.streams.sequencers.redis import RedisSequencer
from streamchat.framework.streams.stream import Stream
from streamchat.steps.conversation_stream import config as conversation

WAIT = 20.0  # the longest a test waits for something that must happen; a pass takes milliseconds


def message(text: str, status: str = "streaming") -> dict[str, Any]:
    return {"message": text, "from": "assistant", "status": status, "timestamp": "2026-12-07T08:00:00.000Z"}


async def clean(link: RedisLink) -> None:
    keys = [key async for key in link.client.scan_iter(match=f"{link.prefix}:*")]
    if keys:
        await link.client.delete(*keys)
    await link.close()


# -- a write that lands after its item's delete ------------------------------------------------------

async def test_a_batched_write_that_lands_after_the_delete_does_not_bring_the_item_back(store: Store) -> None:
    """The flush took its snapshot of the streaming text before the delete and reaches the store
    after it: the store's guard must know the item was deleted (a tombstone), not only its last seq."""
    hub = StreamHub(store, {"conversation": conversation})
    stream: Stream[ConversationMessage] = Stream(conversation, hub)
    await stream.set("g", "r", message(""))
    seq = await stream.append("g", "r", "message", "text before the delete")
    late = StoredItem("r", message("text before the delete"), seq)
    assert await stream.delete("g", "r") is not None

    assert await store.put_items("conversation", [("g", late)]) == set()
    await store.put_item("conversation", "g", late)
    assert await store.get_item("conversation", "g", "r") is None
    assert await stream.get_group("g") == []
    assert "g" not in await store.list_groups("conversation")

    # A write sequenced after the delete is a new item of that id, ordered after the others.
    await stream.set("g", "other", message("another", "completed"))
    again = await stream.set("g", "r", message("written afresh", "completed"))
    assert again.seq > seq
    assert [item.id for item in await stream.get_group("g")] == ["other", "r"]
    await hub.close()


async def test_a_delete_is_a_write_of_its_own_seq_in_every_store(store: Store) -> None:
    """The newest seq wins, a delete included, whichever order the writes arrive in."""
    assert await store.put_item("s", "g", StoredItem("a", {"v": "first"}, 5)) is True
    assert await store.delete_item("s", "g", "a", 4) is False, "a delete older than the item's last write"
    assert await store.get_item("s", "g", "a") == StoredItem("a", {"v": "first"}, 5)
    assert await store.delete_item("s", "g", "a", 6) is True
    assert await store.delete_item("s", "g", "a", 7) is False, "nothing left to delete"
    assert await store.put_item("s", "g", StoredItem("a", {"v": "late"}, 6)) is False
    assert await store.get_item("s", "g", "a") is None
    assert await store.delete_item("s", "g", "never stored", 8) is False
    assert await store.put_item("s", "g", StoredItem("never stored", {"v": "late"}, 3)) is False
    assert await store.list_items("s", "g") == [] and await store.list_groups("s") == []
    assert await store.max_seq("s", "g") == 8, "a new count starts above the deletes too"

    assert await store.put_item("s", "g", StoredItem("b", {"v": "b"}, 9)) is True
    assert await store.put_item("s", "g", StoredItem("a", {"v": "anew"}, 10)) is True, "written anew: created"
    assert [(item.id, item.data["v"]) for item in await store.list_items("s", "g")] == [("b", "b"), ("a", "anew")]
    assert await store.prune_tombstones(time.time() - 3600) == 0, "recent tombstones stay"
    assert await store.prune_tombstones(time.time() + 1) == 1, "the tombstone of the item never stored"
    assert await store.put_item("s", "g", StoredItem("never stored", {"v": "much later"}, 3)) is True


OLD_SQLITE_ITEMS = """
CREATE TABLE stream_items (stream TEXT NOT NULL, group_id TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL,
                           seq INTEGER NOT NULL, position INTEGER NOT NULL, PRIMARY KEY (stream, group_id, id));
INSERT INTO stream_items VALUES ('s', 'g', 'kept', '{"v": "from before"}', 3, 3);
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_database_made_before_tombstones_keeps_its_items_and_takes_them_up(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    store: Store
    if backend == "sqlite":
        with sqlite3.connect(tmp_path / "old.db") as old:
            old.executescript(OLD_SQLITE_ITEMS)
        store = SQLiteStore(str(tmp_path / "old.db"))
    else:
        url = request.getfixturevalue("postgres_url")
        made = PostgresStore(url)
        await made.connect()
        await made.put_item("s", "g", StoredItem("kept", {"v": "from before"}, 3))
        await made.disconnect()
        connection = await asyncpg.connect(url)
        try:  # back to the first schema, as a database made before tombstones
            await connection.execute("DROP INDEX stream_items_tombstones; ALTER TABLE stream_items DROP COLUMN "
                                     "deleted_at; DELETE FROM streamchat_schema WHERE version > 1")
        finally:
            await connection.close()
        store = PostgresStore(url)
    await store.connect()
    try:
        assert await store.list_items("s", "g") == [StoredItem("kept", {"v": "from before"}, 3)]
        assert await store.delete_item("s", "g", "kept", 4) is True
        assert await store.put_item("s", "g", StoredItem("kept", {"v": "late"}, 3)) is False
        assert await store.list_items("s", "g") == []
    finally:
        await store.disconnect()


async def test_a_flush_under_way_writes_back_no_item_deleted_meanwhile(
    store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two whole items wait to be retried (the store refused them once); the flush is held up on the
    first while the second is deleted: the flush must not write the second one at all."""
    hub = StreamHub(store, {"conversation": conversation})
    stream: Stream[ConversationMessage] = Stream(conversation, hub)
    await stream.set("g", "a", message("a, stored"))
    await stream.set("g", "b", message("b, stored"))
    hub.writes.keep_unstored(("conversation", "g", "a"), StoredItem("a", message("a, retried"), 10))
    hub.writes.keep_unstored(("conversation", "g", "b"), StoredItem("b", message("b, retried"), 11))

    holding, go_on = asyncio.Event(), asyncio.Event()
    written: list[str] = []
    put_item = store.put_item

    async def held_put_item(stream_name: str, group: str, item: StoredItem, lease: Any = None) -> bool:
        written.append(item.id)
        if item.id == "a" and not holding.is_set():
            holding.set()
            await go_on.wait()
        return await put_item(stream_name, group, item, lease)

    monkeypatch.setattr(store, "put_item", held_put_item)
    flushing = asyncio.create_task(hub.writes.flush())
    await asyncio.wait_for(holding.wait(), WAIT)
    assert await stream.delete("g", "b") is not None
    go_on.set()
    await asyncio.wait_for(flushing, WAIT)

    assert "b" not in written, "the flush wrote an item deleted while it ran"
    assert await store.get_item("conversation", "g", "b") is None
    assert [item.id for item in await stream.get_group("g")] == ["a"]
    await hub.close()


# -- a cancellation that arrives while a stoppable scope winds up -----------------------------------

async def test_a_cancellation_during_a_scopes_close_of_its_source_is_not_swallowed() -> None:
    """The handler leaves its scope and the provider stream takes a while to close (its connection):
    a shutdown cancelling the handler just then must end it, not be swallowed by the scope."""
    closing, never = asyncio.Event(), asyncio.Event()
    ran_on: list[str] = []

    async def provider() -> AsyncIterator[str]:
        try:
            yield "first"
            yield "second"
        finally:
            closing.set()
            await never.wait()  # the connection's close, still under way when the cancellation comes

    async def handler() -> None:
        async with Stoppable[str](StopRegistry(), "reply") as scope:
            async for _ in scope.iterate(provider()):
                break  # the handler is done with the source early (a refused write, say)
        ran_on.append("the handler ran on past its cancellation")

    task = asyncio.create_task(handler())
    await asyncio.wait_for(closing.wait(), WAIT)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)
    assert task.cancelled(), "the scope swallowed the task's own cancellation"
    assert ran_on == []


async def test_a_cancellation_while_a_scope_waits_for_its_first_piece_is_not_swallowed() -> None:
    """The first piece is fetched in a task of its own; the scope cancels it on the way out and
    waits for it. A cancellation of the handler during that wait belongs to the handler."""
    fetching, never = asyncio.Event(), asyncio.Event()
    ran_on: list[str] = []

    async def provider() -> AsyncIterator[str]:
        fetching.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            await never.wait()  # slow to give up its request
            raise
        yield "never"

    async def handler() -> None:
        with contextlib.suppress(RuntimeError):
            async with Stoppable[str](StopRegistry(), "reply") as scope:
                scope.iterate(provider())
                await asyncio.wait_for(fetching.wait(), WAIT)
                raise RuntimeError("the status write failed before the first piece came")
        ran_on.append("the handler ran on past its cancellation")

    task = asyncio.create_task(handler())
    await asyncio.wait_for(fetching.wait(), WAIT)
    for _ in range(5):
        await asyncio.sleep(0)  # the handler is now in the scope's exit, waiting for the first fetch
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)
    assert task.cancelled(), "the scope swallowed the task's own cancellation"
    assert ran_on == []


# -- the Redis bus: a partition lost while events wait in it -----------------------------------------

class HeldFirst:
    """A handler whose event named "first" waits until `go_on` (or its cancellation, noted in `lost`)."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.finished: list[str] = []
        self.first_running, self.lost, self.go_on = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def __call__(self, event: Event) -> None:
        name = event.data["name"]
        self.runs.append(name)
        if name == "first" and not self.go_on.is_set():
            self.first_running.set()
            try:
                await self.go_on.wait()
            except asyncio.CancelledError:
                self.lost.set()
                raise
        self.finished.append(name)


async def lose_the_partition(link: RedisLink, handler: HeldFirst) -> str:
    """Another instance takes the partition's lease while "first" runs and "second" waits behind it;
    returns the lease key once this instance has stopped the work."""
    lease = link.key("lease", "Receiver", "0")
    await asyncio.wait_for(handler.first_running.wait(), WAIT)
    await link.client.set(lease, b"another-instance:token", px=60_000)
    await link.client.set(f"{lease}:holder", b"another-instance:token")
    await asyncio.wait_for(handler.lost.wait(), WAIT)
    return lease


async def test_events_queued_behind_a_lost_partition_run_in_order_once_it_is_taken_again(redis_url: str) -> None:
    """The other instance gives the partition back before running anything: this instance takes it
    again and runs the conversation's events from where they stood, in their order."""
    link = RedisLink(redis_url, prefix=f"test-integrity-{uuid.uuid4().hex[:8]}")
    bus = RedisBus(link, partitions=1, lease_seconds=1.5, block_ms=50)
    handler = HeldFirst()
    bus.subscribe(Subscription("Receiver", "ping", handler, max_retries=5, group_by="conversationId"))
    try:
        await bus.connect()
        for name in ("first", "second"):
            await bus.publish(Event("ping", {"conversationId": "c1", "name": name}, trace_id="t"))
        lease = await lose_the_partition(link, handler)
        handler.go_on.set()
        await link.client.delete(lease)  # the other instance released it: this one takes it again

        async def both_finished() -> bool:
            return sorted(handler.finished) == ["first", "second"]

        async def nothing_in_flight() -> bool:
            return not bus.stats()["inFlight"] and not await link.client.xlen(link.key("bus", "Receiver", "0"))

        await until(both_finished, "the events queued behind the lost partition ran", WAIT)
        assert handler.runs == ["first", "first", "second"], "the conversation's order, the cut event run again"
        await until(nothing_in_flight, "every entry acknowledged, nothing left in flight", WAIT)
    finally:
        handler.go_on.set()
        await bus.disconnect(timeout=1)
        await clean(link)


async def test_events_queued_behind_a_lost_partition_are_left_to_its_new_holder(redis_url: str) -> None:
    """The other instance runs both events and acknowledges them, then gives the partition back: this
    instance must run neither again (only the conversation's next event), and keep nothing in flight
    (a partition with entries in flight is never handed over when it drains)."""
    link = RedisLink(redis_url, prefix=f"test-integrity-{uuid.uuid4().hex[:8]}")
    bus = RedisBus(link, partitions=1, lease_seconds=1.5, block_ms=50)
    handler = HeldFirst()
    bus.subscribe(Subscription("Receiver", "ping", handler, max_retries=5, group_by="conversationId"))
    stream = link.key("bus", "Receiver", "0")
    try:
        await bus.connect()
        for name in ("first", "second"):
            await bus.publish(Event("ping", {"conversationId": "c1", "name": name}, trace_id="t"))
        lease = await lose_the_partition(link, handler)
        _, claimed, *_ = await link.client.xautoclaim(stream, "workers", "another-instance", min_idle_time=0,
                                                      start_id="0-0")
        assert len(claimed) == 2
        for entry_id, _ in claimed:  # the other instance ran them and acknowledged them
            await link.client.xack(stream, "workers", entry_id)
            await link.client.xdel(stream, entry_id)
        await link.client.delete(lease)

        async def owned_again() -> bool:
            return bool(bus.stats()["partitionsOwned"])

        await until(owned_again, "this instance took the partition again", WAIT)
        await bus.publish(Event("ping", {"conversationId": "c1", "name": "third"}, trace_id="t"))

        async def third_finished() -> bool:
            return "third" in handler.finished

        await until(third_finished, "the conversation's next event ran", WAIT)
        assert handler.runs == ["first", "third"], "an event the other instance had handled ran again here"

        async def nothing_in_flight() -> bool:  # the handler ends before the bus acknowledges its entry
            return not bus.stats()["inFlight"]

        await until(nothing_in_flight, "nothing left in flight", WAIT)
    finally:
        handler.go_on.set()
        await bus.disconnect(timeout=1)
        await clean(link)


# -- the Redis sequencer: a change applied just before its connection dropped ------------------------

async def test_a_change_applied_before_a_dropped_connection_is_not_sent_twice_on_a_busy_group(
    redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis ran the writer's change, then the connection dropped before the answer came back;
    meanwhile other writers added hundreds of changes to the group. The writer must find that its
    change was applied, however far back, rather than send it again (a doubled delta)."""
    link = RedisLink(redis_url, prefix=f"test-integrity-{uuid.uuid4().hex[:8]}")
    other_link = RedisLink(redis_url, prefix=link.prefix)
    writer, others = RedisSequencer(link), RedisSequencer(other_link)
    script = writer._script
    dropped: list[int] = []

    async def runs_then_drops(**arguments: Any) -> Any:
        seq = await script(**arguments)
        if not dropped:
            dropped.append(int(seq))
            for index in range(500):  # a busy group: the other writers go on meanwhile
                await others.sequence("conversation", "g", "delta", "theirs", f"{index} ", "message")
            raise RedisConnectionError("Connection closed by server.")
        return seq

    try:
        await writer.sequence("conversation", "g", "put", "mine", message(""), floor=0)
        await others.sequence("conversation", "g", "put", "theirs", message(""))
        monkeypatch.setattr(writer, "_script", runs_then_drops)
        seq = await writer.sequence("conversation", "g", "delta", "mine", "once", "message")
        assert seq == dropped[0], "the change's own seq, found in the log"
        mine = [change.payload for change in await writer.read_log("conversation", "g")
                if change.item_id == "mine" and change.kind == "delta"]
        assert mine == ["once"], "the change was sent twice"
    finally:
        await other_link.close()
        await clean(link)


# -- dead letters: kept once, where the bus keeps them ------------------------------------------------

class Ping(BaseModel):
    text: str


async def test_the_redis_bus_keeps_dead_letters_itself_and_the_store_gets_none(redis_url: str) -> None:
    link = RedisLink(redis_url, prefix=f"test-integrity-{uuid.uuid4().hex[:8]}")
    bus = RedisBus(link, partitions=1, lease_seconds=5, block_ms=50, retry_delay=0.001)
    cleaned_up = asyncio.Event()

    async def handler(data: Ping, ctx: object) -> None:
        raise RuntimeError(f"cannot handle {data.text}")

    async def on_failure(data: Ping, ctx: object, error: BaseException) -> None:
        cleaned_up.set()

    steps = StepSet(events=[EventStep(EventConfig(name="Broken", subscribes=["ping"], input=Ping, max_retries=1),
                                      handler, "test", on_failure)])  # type: ignore[arg-type]
    store = MemoryStore()
    runtime = Runtime(steps, store, bus, link)
    try:
        await runtime.start()
        await runtime.context("Sender", (Emit("ping", Ping),), "t").emit("ping", Ping(text="this"))
        await asyncio.wait_for(cleaned_up.wait(), WAIT)
        [letter] = await runtime.dead_letters()
        assert (letter["step"], letter["topic"], letter["attempts"]) == ("Broken", "ping", 2)
        assert letter["data"] == {"text": "this"} and "cannot handle this" in letter["error"]
        assert await store.state_list("_dead_letters") == {}, "a second copy nobody reads"
    finally:
        await runtime.stop(timeout=1)
        cleanup = RedisLink(redis_url, prefix=link.prefix)
        await clean(cleanup)
