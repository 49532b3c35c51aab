"""Group events at the hub: custom events that are changes of a group (sequenced, resumable, sticky),
over every store, and across two hubs sequenced by the real Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ConfigDict, Field

from helpers import until
from streamchat.framework import StreamConfig
from streamchat.framework.leases import Fenced, Lease
from streamchat.framework.redis_link import RedisLink, holder_key
from streamchat.framework.store import MemoryStore, PostgresStore, SQLiteStore, Store
from streamchat.framework.streams.changes import Change
from streamchat.framework.streams.events import sticky_stream
from streamchat.framework.streams.hub import StreamHub
from streamchat.framework.streams.sequencers.redis import RedisSequencer
from streamchat.framework.streams.stream import Stream


class Note(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    message: str
    sender: str = Field("user", alias="from")


NOTES = StreamConfig(name="conversation", schema=Note, sticky_events=("active-branch",))
BRANCH = {"activeMessageId": "m2", "path": ["m1", "m2"]}


class Socket:
    """A WebSocket subscriber: every Motia frame it is pushed, decoded."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def push(self, change: Change) -> None:
        self.frames.append(orjson.loads(change.motia()))

    def kinds(self) -> list[tuple[str, str | None]]:
        """(frame type, item id or custom event type) of each frame."""
        return [(f["event"]["type"], f.get("id") or f["event"].get("event", {}).get("type")) for f in self.frames]


class Sse:
    """An SSE subscriber: every frame it is pushed, as (id, event, data)."""

    def __init__(self) -> None:
        self.frames: list[tuple[int | None, str, Any]] = []

    def push(self, change: Change) -> None:
        frame = change.sse()
        if frame is None:
            return
        lines = dict(line.split(": ", 1) for line in frame.decode().strip().split("\n"))
        self.frames.append((int(lines["id"]) if "id" in lines else None, lines["event"], orjson.loads(lines["data"])))

    def named(self) -> list[tuple[int | None, str, str | None]]:
        return [(seq, event, data.get("id") if event != "active-branch" else None)
                for seq, event, data in self.frames]


async def fresh_snapshot(hub: StreamHub, group: str) -> list[tuple[int | None, str, Any]]:
    watcher = Sse()
    await hub.subscribe(watcher, "conversation", group, deltas=True, sse=True)
    hub.unsubscribe(watcher, "conversation", group)
    return watcher.frames


async def test_an_event_is_a_change_of_the_group_for_every_watcher_and_survives_a_restart(
    store: Store, tmp_path: Any,
) -> None:
    hub = StreamHub(store, {"conversation": NOTES})
    notes: Stream[Note] = Stream(NOTES, hub)
    socket, sse = Socket(), Sse()
    await hub.subscribe(socket, "conversation", "g")
    await hub.subscribe(sse, "conversation", "g", deltas=True, sse=True)

    await notes.set("g", "m1", {"message": "hi"})
    assert await notes.send_event("g", "active-branch", BRANCH) == 2, "the group's next seq"
    await notes.set("g", "m2", {"message": "there"})

    assert socket.kinds() == [("sync", None), ("create", "m1"), ("event", "active-branch"), ("create", "m2")]
    event_frame = socket.frames[2]
    assert event_frame == {"timestamp": event_frame["timestamp"], "streamName": "conversation", "groupId": "g",
                           "event": {"type": "event", "event": {"type": "active-branch", "data": BRANCH}}}
    assert sse.named() == [(1, "item", "m1"), (2, "active-branch", None), (3, "item", "m2")]
    assert sse.frames[1][2] == BRANCH

    resumed = Sse()
    await hub.subscribe(resumed, "conversation", "g", deltas=True, after_seq=1, sse=True)
    assert resumed.named() == [(2, "active-branch", None), (3, "item", "m2")], "missed: the event, then m2"

    # A fresh snapshot: every item, then the sticky event; only the last frame carries an id, the seq
    # the snapshot is at (a resume from it must not replay m2, which the snapshot holds).
    assert [(seq, event) for seq, event, _ in await fresh_snapshot(hub, "g")] == [
        (None, "item"), (None, "item"), (3, "active-branch")]
    await notes.send_event("g", "active-branch", {"activeMessageId": "m1", "path": ["m1"]})
    snapshot = await fresh_snapshot(hub, "g")
    assert snapshot[-1] == (4, "active-branch", {"activeMessageId": "m1", "path": ["m1"]}), "the latest one"

    joined = Socket()
    await hub.subscribe(joined, "conversation", "g")
    assert joined.kinds() == [("sync", None), ("event", "active-branch")], "a WebSocket join: the sync, then it"
    assert [item["id"] for item in joined.frames[0]["event"]["data"]] == ["m1", "m2"], "the sync holds items only"

    # Stored: a new hub over the same data (a restart, or another instance) ends its snapshot with it.
    reopened: Store = store
    if isinstance(store, SQLiteStore):
        reopened = SQLiteStore(store.path)
    elif isinstance(store, PostgresStore):
        reopened = PostgresStore(store.url)
    if reopened is not store:
        await reopened.connect()
    try:
        again = StreamHub(reopened, {"conversation": NOTES})
        snapshot = await fresh_snapshot(again, "g")
        assert [event for _, event, _ in snapshot] == ["item", "item", "active-branch"]
        assert snapshot[-1] == (4, "active-branch", {"activeMessageId": "m1", "path": ["m1"]})
        seq = await Stream(NOTES, again).send_event("g", "active-branch", BRANCH)
        assert seq > 4, "the count goes on above the stored event"
    finally:
        if reopened is not store:
            await reopened.disconnect()


async def test_deleting_the_group_deletes_its_sticky_events(store: Store) -> None:
    hub = StreamHub(store, {"conversation": NOTES})
    notes: Stream[Note] = Stream(NOTES, hub)
    await notes.set("g", "m1", {"message": "hi"})
    await notes.send_event("g", "active-branch", BRANCH)
    watcher = Sse()
    await hub.subscribe(watcher, "conversation", "g", deltas=True, sse=True)
    assert watcher.frames[-1][1] == "active-branch"

    await notes.delete_group("g")
    assert await fresh_snapshot(hub, "g") == [], "nothing of the group is left"
    assert await store.list_items(sticky_stream("conversation"), "g") == []
    resumed = Sse()
    await hub.subscribe(resumed, "conversation", "g", deltas=True, after_seq=1, sse=True)
    assert [event for _, event, _ in resumed.frames] == ["delete"], "nor replayed to a client from before"
    assert await fresh_snapshot(StreamHub(store, {"conversation": NOTES}), "g") == [], "nor stored"

    await notes.send_event("g", "active-branch", BRANCH)  # the group taken up afresh
    assert [event for _, event, _ in await fresh_snapshot(hub, "g")] == ["active-branch"]


async def test_an_event_not_declared_sticky_is_sequenced_and_resumable_but_not_kept() -> None:
    store = MemoryStore()
    hub = StreamHub(store, {"conversation": NOTES})
    notes: Stream[Note] = Stream(NOTES, hub)
    await notes.set("g", "m1", {"message": "hi"})
    assert await notes.send_event("g", "title", {"title": "Greetings"}) == 2
    resumed = Sse()
    await hub.subscribe(resumed, "conversation", "g", deltas=True, after_seq=1, sse=True)
    assert resumed.frames == [(2, "title", {"title": "Greetings"})]
    assert [event for _, event, _ in await fresh_snapshot(hub, "g")] == ["item"]
    assert await store.list_items(sticky_stream("conversation"), "g") == []


@pytest.mark.parametrize(("name", "data", "error"), [
    ("item", {}, ValueError), ("delta", {}, ValueError), ("two words", {}, ValueError), ("a\nb", {}, ValueError),
    ("", {}, ValueError), ("active-branch", {"at": object()}, TypeError),
])
async def test_a_bad_event_is_refused_before_it_takes_a_seq(name: str, data: Any, error: type[Exception]) -> None:
    hub = StreamHub(MemoryStore(), {"conversation": NOTES})
    notes: Stream[Note] = Stream(NOTES, hub)
    watcher = Socket()
    await hub.subscribe(watcher, "conversation", "g")
    with pytest.raises(error):
        await notes.send_event("g", name, data)
    assert await notes.send_event("g", "active-branch", BRANCH) == 1
    assert watcher.kinds() == [("sync", None), ("event", "active-branch")]


@pytest.mark.parametrize("name", ["active-branch", "title"])
async def test_a_fenced_writer_sends_no_event(store: Store, name: str) -> None:
    old, new = Lease("Switch:g", "old"), Lease("Switch:g", "new")
    await store.lease_take(old)
    hub = StreamHub(store, {"conversation": NOTES})
    watcher = Sse()
    await hub.subscribe(watcher, "conversation", "g", deltas=True, sse=True)
    assert await Stream(NOTES, hub, lease=old).send_event("g", name, BRANCH) == 1
    await store.lease_take(new)  # another run took the work over
    with pytest.raises(Fenced):
        await Stream(NOTES, hub, lease=old).send_event("g", name, {"activeMessageId": "stale", "path": []})
    await Stream(NOTES, hub, lease=new).send_event("g", name, {"activeMessageId": "m9", "path": ["m9"]})
    assert [data["activeMessageId"] for _, _, data in watcher.frames] == ["m2", "m9"]
    stored = await store.list_items(sticky_stream("conversation"), "g")
    assert [entry.data["data"]["activeMessageId"] for entry in stored] == (["m9"] if name == "active-branch" else [])


# -- two instances: Redis sequences, PostgreSQL stores -----------------------------------------------

@pytest.fixture
async def two_hubs(redis_url: str, postgres_url: str) -> AsyncIterator[tuple[StreamHub, StreamHub, RedisLink]]:
    prefix = f"test-events-{uuid.uuid4().hex[:8]}"
    links = [RedisLink(redis_url, prefix=prefix) for _ in range(2)]
    stores = [PostgresStore(postgres_url) for _ in range(2)]
    hubs = [StreamHub(store, {"conversation": NOTES}, RedisSequencer(link))
            for store, link in zip(stores, links, strict=True)]
    for store, hub in zip(stores, hubs, strict=True):
        await store.connect()
        await hub.start()
    try:
        yield hubs[0], hubs[1], links[0]
    finally:
        for store, hub in zip(stores, hubs, strict=True):
            await hub.close()
            await store.disconnect()
        keys = [key async for key in links[0].client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await links[0].client.delete(*keys)
        for link in links:
            await link.close()


async def test_an_event_sent_on_one_instance_reaches_the_other_in_order_with_the_items(
    two_hubs: tuple[StreamHub, StreamHub, RedisLink],
) -> None:
    a, b, link = two_hubs
    notes: Stream[Note] = Stream(NOTES, a)
    socket, sse = Socket(), Sse()
    await b.subscribe(socket, "conversation", "g")
    await b.subscribe(sse, "conversation", "g", deltas=True, sse=True)

    first = (await notes.set("g", "m1", {"message": "hi"})).seq
    event_seq = await notes.send_event("g", "active-branch", BRANCH)
    last = (await notes.set("g", "m2", {"message": "there"})).seq
    assert first < event_seq < last

    async def all_arrived() -> bool:
        return len(sse.frames) == 3 and len(socket.frames) == 4

    await until(all_arrived, "the items and the event on the other instance")
    assert sse.named() == [(first, "item", "m1"), (event_seq, "active-branch", None), (last, "item", "m2")]
    assert socket.kinds() == [("sync", None), ("create", "m1"), ("event", "active-branch"), ("create", "m2")]
    assert socket.frames[2]["event"]["event"] == {"type": "active-branch", "data": BRANCH}

    resumed = Sse()
    await b.subscribe(resumed, "conversation", "g", deltas=True, after_seq=first, sse=True)
    assert resumed.named() == [(event_seq, "active-branch", None), (last, "item", "m2")]
    snapshot = await fresh_snapshot(b, "g")
    assert snapshot[-1] == (last, "active-branch", BRANCH)
    assert (await fresh_snapshot(StreamHub(a.store, {"conversation": NOTES}, RedisSequencer(link)), "g"))[-1] == (
        last, "active-branch", BRANCH), "a third instance reads it from the store and the log"

    # The lease is checked by the sequencer's script: a fenced writer's event takes no seq, reaches nobody.
    lease_key = link.key("lease", "Switch", "0")
    await link.client.set(lease_key, "theirs", px=60_000)
    await link.client.set(holder_key(lease_key), "theirs")
    with pytest.raises(Fenced):
        await Stream(NOTES, a, lease=Lease(lease_key, "mine")).send_event("g", "active-branch", {"stale": True})
    assert await a.sequencer.current_seq("conversation", "g") == last

    await notes.delete_group("g")

    async def cleared() -> bool:
        return await fresh_snapshot(b, "g") == []

    await until(cleared, "the other instance dropping the deleted group's sticky event")
