"""Typed streams over both embedded stores: validation, storage, ordering, and what subscribers receive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from streamchat.framework.changes import Change
from streamchat.framework.store import MemoryStore, SQLiteStore, Store, store_from_url
from streamchat.framework.streams import Stream, StreamHub
from streamchat.steps.conversation_stream import ConversationMessage
from streamchat.steps.conversation_stream import config as conversation


class Recorder:
    """A subscriber that keeps every frame it is pushed, decoded."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def push(self, change: Change) -> None:
        self.frames.append(orjson.loads(change.motia()))


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend: Store = MemoryStore() if request.param == "memory" else SQLiteStore(str(tmp_path / "s.db"))
    await backend.connect()
    yield backend
    await backend.disconnect()


def message(text: str, status: str = "completed", sender: str = "user") -> dict[str, Any]:
    return {"message": text, "from": sender, "status": status, "timestamp": "2026-11-25T08:00:00.000Z"}


async def test_set_get_group_delete_and_send_reach_subscribers(store: Store) -> None:
    hub = StreamHub(store, {"conversation": conversation})
    stream: Stream[ConversationMessage] = Stream(conversation, hub)
    group_watcher, item_watcher = Recorder(), Recorder()
    await hub.subscribe(group_watcher, "conversation", "g1")
    await hub.subscribe(item_watcher, "conversation", "g1", "b")

    await stream.set("g1", "a", message("first"))
    await stream.set("g1", "b", message("", "created", "assistant"))
    await stream.set("g1", "b", message("hi", "streaming", "assistant"))
    await stream.send("g1", "typing", {"who": "assistant"})
    assert [item.id for item in await stream.get_group("g1")] == ["a", "b"]
    got = await stream.get("g1", "b")
    assert got is not None and got.data.message == "hi" and got.data.sender == "assistant"
    deleted = await stream.delete("g1", "a")
    assert deleted is not None and deleted.data.message == "first"
    assert await stream.get("g1", "a") is None
    assert await stream.delete("g1", "a") is None

    assert [f["event"]["type"] for f in (group_watcher.frames[0], item_watcher.frames[0])] == ["sync", "sync"]
    assert item_watcher.frames[0]["event"]["data"] is None, "an item join before the item exists syncs null"
    del group_watcher.frames[0], item_watcher.frames[0]
    kinds = [(f["event"]["type"], f.get("id")) for f in group_watcher.frames]
    assert kinds == [("create", "a"), ("create", "b"), ("update", "b"), ("event", None), ("delete", "a")]
    assert group_watcher.frames[3]["event"]["event"] == {"type": "typing", "data": {"who": "assistant"}}
    assert [(f["event"]["type"], f["id"]) for f in item_watcher.frames] == [("create", "b"), ("update", "b")]
    seqs = [f["event"]["data"]["seq"] for f in group_watcher.frames if f["event"]["type"] != "event"]
    assert seqs == [1, 2, 3, 4], "every change, a delete too, takes the group's next seq"
    stamps = [f["timestamp"] for f in group_watcher.frames]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


async def test_every_write_is_validated_and_a_bad_one_changes_nothing(store: Store) -> None:
    hub = StreamHub(store, {"conversation": conversation})
    stream: Stream[ConversationMessage] = Stream(conversation, hub)
    watcher = Recorder()
    await hub.subscribe(watcher, "conversation", "g")
    await stream.set("g", "a", message("kept"))
    for bad in (message("x", status="dancing"), {**message("x"), "from": "robot"},
                {**message("x"), "timestamp": "yesterday"}, {"message": "no other fields"}):
        with pytest.raises(ValidationError):
            await stream.set("g", "a", bad)
    item = await stream.get("g", "a")
    assert item is not None and item.data.message == "kept"
    assert len(watcher.frames) == 2, "the sync and the one good write"


async def test_leaving_stops_delivery() -> None:
    hub = StreamHub(MemoryStore(), {"conversation": conversation})
    watcher = Recorder()
    await hub.subscribe(watcher, "conversation", "g")
    hub.unsubscribe(watcher, "conversation", "g")
    await Stream(conversation, hub).set("g", "a", message("unseen"))
    assert [f["event"]["type"] for f in watcher.frames] == ["sync"]
    assert hub.subscriber_count("conversation", "g") == 0


def test_store_urls() -> None:
    assert isinstance(store_from_url("memory://"), MemoryStore)
    relative = store_from_url("sqlite:///data/state.db")
    absolute = store_from_url("sqlite:////var/lib/streamchat/state.db")
    assert isinstance(relative, SQLiteStore) and relative.path == "data/state.db"
    assert isinstance(absolute, SQLiteStore) and absolute.path == "/var/lib/streamchat/state.db"
    with pytest.raises(ValueError, match="unsupported STREAMCHAT_STATE_URL scheme 'redis'"):
        store_from_url("redis://localhost")
