"""Typed streams over every store (memory, SQLite, PostgreSQL): validation, storage, ordering, what subscribers get."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from helpers import until
from streamchat.conversations.messages import ConversationMessage
from streamchat.framework.store import MemoryStore, PostgresStore, SQLiteStore, Store, store_from_url
from streamchat.framework.streams.changes import Change
from streamchat.framework.streams.hub import StreamHub
from streamchat.framework.streams.stream import Stream
from streamchat.steps.conversation_stream import config as conversation


class Recorder:
    """A subscriber that keeps every frame it is pushed, decoded."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def push(self, change: Change) -> None:
        self.frames.append(orjson.loads(change.motia()))


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
    assert isinstance(store_from_url("postgresql://app@db:5432/chat"), PostgresStore)
    assert isinstance(store_from_url("postgres://app@db/chat"), PostgresStore)
    with pytest.raises(ValueError, match="unsupported STREAMCHAT_STATE_URL scheme 'redis'"):
        store_from_url("redis://localhost")


async def test_appends_are_persisted_coalesced_and_the_final_text_before_completed_is_published() -> None:
    store = MemoryStore()
    hub = StreamHub(store, {"conversation": conversation})
    stream: Stream[ConversationMessage] = Stream(conversation, hub)
    seen_in_store_when_completed: list[str] = []

    class Checker(Recorder):
        def push(self, change: Change) -> None:
            super().push(change)
            if change.kind == "update" and change.payload["status"] == "completed":
                stored = store._items["conversation", "g"]["r"]
                seen_in_store_when_completed.append(stored.data["message"])

    plain, deltas = Checker(), Recorder()
    await hub.subscribe(plain, "conversation", "g")
    await hub.subscribe(deltas, "conversation", "g", deltas=True)
    await stream.set("g", "r", message("", "streaming", "assistant"))
    writes_before = store.writes
    pieces = [f"p{i} " for i in range(2000)]
    for piece in pieces:
        await stream.append("g", "r", "message", piece)
    writes_while_streaming = store.writes - writes_before
    await stream.set("g", "r", message("".join(pieces), "completed", "assistant"))

    assert writes_while_streaming <= 3, f"{writes_while_streaming} store writes for 2000 appends (seq blocks only)"
    assert seen_in_store_when_completed == ["".join(pieces)], "completed was published before the text was stored"
    delta_frames = [f for f in deltas.frames if f["event"]["type"] == "event"]
    assert "".join(f["event"]["event"]["data"]["delta"] for f in delta_frames) == "".join(pieces)
    plain_updates = [f for f in plain.frames if f["event"]["type"] == "update"]
    assert len(plain_updates) <= 3, "plain subscribers get coalesced whole items, not one per append"
    assert plain_updates[-1]["event"]["data"]["message"] == "".join(pieces)


def delta_texts(recorder: Recorder) -> list[tuple[int, str]]:
    return [(f["event"]["event"]["data"]["seq"], f["event"]["event"]["data"]["delta"])
            for f in recorder.frames if f["event"]["type"] == "event"]


async def test_fast_pieces_are_joined_for_sockets_but_every_seq_reaches_sse() -> None:
    hub = StreamHub(MemoryStore(), {"conversation": conversation}, delta_window=0.05)
    stream: Stream[ConversationMessage] = Stream(conversation, hub)
    socket, sse = Recorder(), Recorder()
    await hub.subscribe(socket, "conversation", "g", deltas=True)
    await hub.subscribe(sse, "conversation", "g", deltas=True, sse=True)
    await stream.set("g", "r", message("", "streaming", "assistant"))
    first = await stream.append("g", "r", "message", "first ")
    assert delta_texts(socket) == [(first, "first ")], "the first piece of a burst goes out at once"
    pieces = [f"p{i} " for i in range(20)]
    seqs = [await stream.append("g", "r", "message", piece) for piece in pieces]
    assert delta_texts(socket) == [(first, "first ")], "the rest waits for the window"

    async def window_closed() -> bool:
        return len(delta_texts(socket)) > 1

    await until(window_closed, "the held-back pieces sent when the window closes")
    assert delta_texts(socket)[1] == (seqs[-1], "".join(pieces)), "one frame, carrying the last seq"
    assert [seq for seq, _ in delta_texts(sse)] == [first, *seqs], "SSE: every seq, for exact resume"

    # Held-back pieces go out before the final update, and never again after it.
    await stream.append("g", "r", "message", "held ")
    await stream.append("g", "r", "message", "back")
    await stream.set("g", "r", message("first " + "".join(pieces) + "held back", "completed", "assistant"))
    kinds = [f["event"]["type"] if f["event"]["type"] != "event" else "delta" for f in socket.frames]
    assert kinds[-2:] == ["delta", "update"] and delta_texts(socket)[-1][1] == "held back"
    await asyncio.sleep(0.08)  # past the window: room for a frame that must not come (nothing signals none will)
    assert kinds == [f["event"]["type"] if f["event"]["type"] != "event" else "delta" for f in socket.frames]


async def test_a_socket_joining_mid_window_gets_each_piece_once() -> None:
    hub = StreamHub(MemoryStore(), {"conversation": conversation}, delta_window=0.05)
    stream: Stream[ConversationMessage] = Stream(conversation, hub)
    early, late = Recorder(), Recorder()
    await hub.subscribe(early, "conversation", "g", deltas=True)
    await stream.set("g", "r", message("", "streaming", "assistant"))
    for piece in ("a", "b", "c"):
        await stream.append("g", "r", "message", piece)
    await hub.subscribe(late, "conversation", "g", deltas=True)  # "b" and "c" are held back now
    for piece in ("d", "e"):
        await stream.append("g", "r", "message", piece)

    [sync] = [f for f in late.frames if f["event"]["type"] == "sync"]

    def shown(recorder: Recorder, before: str = "") -> str:
        return before + "".join(text for _, text in delta_texts(recorder))

    async def window_closed() -> bool:
        return len(shown(early)) >= 5 and len(shown(late, sync["event"]["data"][0]["message"])) >= 5

    await until(window_closed, "the held-back pieces sent to both when the window closes")
    assert shown(late, sync["event"]["data"][0]["message"]) == "abcde"
    assert shown(early) == "abcde"


async def test_reads_see_the_live_text_and_a_restart_keeps_the_flushed_text(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "live.db"))
    await store.connect()
    hub = StreamHub(store, {"conversation": conversation})
    stream: Stream[ConversationMessage] = Stream(conversation, hub)
    await stream.set("g", "r", message("", "streaming", "assistant"))
    for piece in ("a", "b", "c"):
        await stream.append("g", "r", "message", piece)
    live = await stream.get("g", "r")
    assert live is not None and live.data.message == "abc"
    assert [item.data.message for item in await stream.get_group("g")] == ["abc"]
    await hub.close()
    await store.disconnect()

    reopened = SQLiteStore(str(tmp_path / "live.db"))
    await reopened.connect()
    again = StreamHub(reopened, {"conversation": conversation})
    item = await Stream(conversation, again).get("g", "r")
    assert item is not None and item.data.message == "abc", "shutdown flushes the streaming text"
    next_seq = (await Stream(conversation, again).set("g", "x", message("later"))).seq
    assert next_seq > item.seq, "seq keeps rising across a restart"
    await reopened.disconnect()


class SseRecorder:
    """A subscriber that keeps the SSE frame (bytes) of every change it is pushed, with its seq."""

    def __init__(self) -> None:
        self.frames: list[tuple[int | None, bytes]] = []

    def push(self, change: Change) -> None:
        frame = change.sse()
        if frame is not None:
            self.frames.append((change.seq, frame))


async def test_a_resume_within_interleaved_deltas_gets_each_one_as_it_was() -> None:
    """Deltas are kept as runs of pieces (replay.py); a resume from inside a run, across another item's
    deltas and a whole-item write between them, gets every change after its seq, in order, as sent live."""
    hub = StreamHub(MemoryStore(), {"conversation": conversation})
    stream: Stream[ConversationMessage] = Stream(conversation, hub)
    live = SseRecorder()
    await hub.subscribe(live, "conversation", "g", deltas=True, sse=True)
    await stream.set("g", "a", message("", "streaming", "assistant"))
    await stream.set("g", "b", message("", "streaming", "assistant"))
    seqs = [await stream.append("g", "a", "message", f"a{index} ") for index in range(5)]
    await stream.append("g", "b", "message", "b0 ")
    await stream.append("g", "b", "message", "b1 ")
    await stream.set("g", "c", message("between"))
    await stream.append("g", "a", "message", "a5 ")
    assert hub.memory()["replayChanges"] == 3 + 5 + 2 + 1, "every change counted, runs or not"

    resumed = SseRecorder()
    await hub.subscribe(resumed, "conversation", "g", deltas=True, after_seq=seqs[2], sse=True)
    expected = [(seq, frame) for seq, frame in live.frames if seq is not None and seq > seqs[2]]
    assert len(expected) == 6 and resumed.frames == expected
    assert [orjson.loads(frame.split(b"data: ", 1)[1])["delta"] for _, frame in expected
            if b"event: delta" in frame] == ["a3 ", "a4 ", "b0 ", "b1 ", "a5 "]


async def test_append_refuses_unknown_items_and_non_text_fields() -> None:
    hub = StreamHub(MemoryStore(), {"conversation": conversation})
    stream: Stream[ConversationMessage] = Stream(conversation, hub)
    with pytest.raises(LookupError):
        await stream.append("g", "missing", "message", "x")
    await stream.set("g", "r", message(""))
    with pytest.raises(ValueError, match="no string field 'status'"):
        await stream.append("g", "r", "status", "x")


async def test_resume_buffers_are_bounded_and_fall_back_to_a_snapshot() -> None:
    hub = StreamHub(MemoryStore(), {"conversation": conversation}, replay_budget=50 * 700)
    stream: Stream[ConversationMessage] = Stream(conversation, hub)
    await stream.set("old", "a", message("old news"))
    await stream.set("busy", "r", message("", "streaming", "assistant"))
    for index in range(100):
        await stream.append("busy", "r", "message", f"{index} ")
    assert not hub._groups["conversation", "old"].replay, "the idle group's buffer went first"

    resumed_busy, resumed_old = Recorder(), Recorder()
    await hub.subscribe(resumed_busy, "conversation", "busy", deltas=True, after_seq=95, sse=True)
    await hub.subscribe(resumed_old, "conversation", "old", deltas=True, after_seq=0, sse=True)
    assert [f["event"]["type"] for f in resumed_busy.frames] == ["event"] * 6, "recent changes replay exactly"
    assert [f["event"]["type"] for f in resumed_old.frames] == ["update"], "a trimmed group resumes from a snapshot"
    assert hub.memory()["replayBytes"] <= 50 * 700


async def test_a_run_trimmed_from_its_start_lets_the_dropped_text_go() -> None:
    """The budget counts what a resume buffer can still send; the pieces it dropped from the start of a
    run of deltas are let go with it, a chunk at a time, not kept until the whole run goes."""
    hub = StreamHub(MemoryStore(), {"conversation": conversation}, replay_budget=1_000_000)
    stream: Stream[ConversationMessage] = Stream(conversation, hub)
    await stream.set("g", "r", message("", "streaming", "assistant"))
    for index in range(200):
        await stream.append("g", "r", "message", f"p{index:03d} ")
    state = hub._groups["conversation", "g"]
    [run] = [kept for kept in state.replay if not isinstance(kept, Change)]
    for _ in range(100):
        hub.replay._drop_oldest(state)
    held = run.pieces.text()
    assert "p000 " not in held and "p063 " not in held, "the chunks passed are let go"
    assert held.endswith("".join(f"p{index:03d} " for index in range(100, 200)))
    resumed = Recorder()
    await hub.subscribe(resumed, "conversation", "g", deltas=True, after_seq=run.first + 149, sse=True)
    assert "".join(f["event"]["event"]["data"]["delta"] for f in resumed.frames) == "".join(
        f"p{index:03d} " for index in range(150, 200))


async def test_a_deleted_items_text_is_not_resumed_but_that_it_went_is() -> None:
    hub = StreamHub(MemoryStore(), {"conversation": conversation})
    stream: Stream[ConversationMessage] = Stream(conversation, hub)
    live = Recorder()
    await hub.subscribe(live, "conversation", "g")
    await stream.set("g", "kept", message("stays"))
    await stream.set("g", "r", message("", "streaming", "assistant"))
    for piece in ("secret ", "words"):
        await stream.append("g", "r", "message", piece)
    await stream.set("g", "r", message("secret words", "completed", "assistant"))
    await stream.delete("g", "r")
    before_purge = hub.memory()["replayBytes"]

    resumed = Recorder()  # at once: the purge runs before anything is replayed
    await hub.subscribe(resumed, "conversation", "g", deltas=True, after_seq=0, sse=True)
    assert [(f["event"]["type"], f["event"]["data"]["id"]) for f in resumed.frames] == [
        ("create", "kept"), ("delete", "r")], "exact from the start for the item that stays"
    assert b"secret" not in orjson.dumps(resumed.frames)
    assert b"secret" in orjson.dumps(live.frames[-1]), "a watcher at the time gets the whole deleted item"
    assert hub.memory()["replayBytes"] < before_purge

    await stream.set("g", "later", message("after"))
    again = Recorder()
    await hub.subscribe(again, "conversation", "g", deltas=True, after_seq=1, sse=True)
    assert [f["event"]["data"]["id"] for f in again.frames] == ["r", "later"]


async def test_the_resume_budget_counts_the_text_a_change_holds() -> None:
    hub = StreamHub(MemoryStore(), {"conversation": conversation}, replay_budget=1_000_000)
    stream: Stream[ConversationMessage] = Stream(conversation, hub)
    await stream.set("g", "r", message("", "streaming", "assistant"))
    before = hub.memory()["replayBytes"]
    await stream.append("g", "r", "message", "x" * 10_000)
    assert hub.memory()["replayBytes"] - before >= 20_000, "a piece's text is held twice: payload and frame"
    await stream.set("g", "r", message("x" * 10_000, "completed", "assistant"))
    await stream.set("g", "big", message("y" * 100_000))
    assert hub.memory()["replayBytes"] <= 1_000_000, "over budget, older changes go"
    assert hub.memory()["replayChanges"] >= 1


async def test_idle_groups_past_the_cap_are_forgotten_and_cost_nothing_after() -> None:
    hub = StreamHub(MemoryStore(), {"conversation": conversation}, idle_groups_kept=10)
    stream: Stream[ConversationMessage] = Stream(conversation, hub)
    for index in range(100):
        await stream.set(f"g{index}", "a", message(f"hello {index}"))
    assert hub.memory()["groups"] <= 11
    assert [item.data.message for item in await stream.get_group("g0")] == ["hello 0"], "read from the store again"
    watcher = Recorder()
    await hub.subscribe(watcher, "conversation", "g1", deltas=True, after_seq=1, sse=True)
    assert [f["event"]["type"] for f in watcher.frames] == ["update"], "a forgotten group resumes from a snapshot"


async def test_item_writes_report_creation_and_never_go_back_in_seq(store: Store) -> None:
    from streamchat.framework.store import StoredItem

    assert await store.put_item("s", "g", StoredItem("a", {"v": "first"}, 5)) is True
    assert await store.put_item("s", "g", StoredItem("a", {"v": "older"}, 3)) is False
    assert (await store.get_item("s", "g", "a")) == StoredItem("a", {"v": "first"}, 5)
    assert await store.put_item("s", "g", StoredItem("a", {"v": "newer"}, 9)) is False
    await store.put_items("s", [("g", StoredItem("b", {"v": "batch"}, 10)), ("g", StoredItem("a", {"v": "stale"}, 6))])
    listed = [(i.id, i.data["v"], i.seq) for i in await store.list_items("s", "g")]
    assert listed == [("a", "newer", 9), ("b", "batch", 10)]
    assert await store.list_groups("s") == ["g"]


async def test_state_and_groups_behave_the_same_in_every_store(store: Store) -> None:
    from streamchat.framework.store import StoredItem

    await store.state_set("scope", "k1", {"n": 1, "text": "ünïcode \u2028 \"q\""})
    await store.state_set("scope", "k1", {"n": 2})
    await store.state_set("scope", "k2", {"n": 3})
    assert await store.state_get("scope", "k1") == {"n": 2}
    assert await store.state_list("scope") == {"k1": {"n": 2}, "k2": {"n": 3}}
    await store.state_delete("scope", "k1")
    assert await store.state_get("scope", "k1") is None
    for group in ("older", "newer"):
        await store.put_item("s", group, StoredItem("x", {"v": group}, 1))
    assert await store.list_groups("s") == ["newer", "older"]
    assert await store.delete_item("s", "older", "x", 2) is True
    assert await store.delete_item("s", "older", "x", 3) is False
    first = await store.reserve_seq("s", "newer", 10)
    assert await store.reserve_seq("s", "newer", 10) == first + 10
    assert await store.max_seq("s", "newer") == first + 10


async def test_claims_keep_the_first_value_even_when_callers_race(store: Store) -> None:
    held = await asyncio.gather(*(store.state_claim("owners", "c1", {"keyId": f"k{i}"}) for i in range(20)))
    assert len({value["keyId"] for value in held}) == 1, "every caller sees the one winner"
    assert await store.state_get("owners", "c1") == held[0]
    assert await store.state_claim("owners", "c1", {"keyId": "late"}) == held[0]


async def test_reservations_never_pass_the_limit_and_stale_entries_do_not_count(store: Store) -> None:
    granted = await asyncio.gather(*(store.state_reserve("running", f"r{i}", {"at": 100.0}, 3, fresh_since=50.0)
                                     for i in range(24)))
    assert granted.count(True) == 3 and len(await store.state_list("running")) == 3
    await store.state_set("stale", "old", {"at": 10.0})
    assert await store.state_reserve("stale", "new", {"at": 100.0}, 1, fresh_since=50.0) is True
    assert await store.state_reserve("stale", "newer", {"at": 100.0}, 1, fresh_since=50.0) is False
    assert await store.state_reserve("stale", "new", {"at": 101.0}, 1, fresh_since=50.0) is True, (
        "renewing one's own entry does not count against itself")
