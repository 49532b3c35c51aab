"""Fencing: a run that lost its lease cannot write into the work its successor does now.

From the stores' atomic check and the relay's script on the real Redis, through the stream hub,
to real processes: an instance frozen with SIGSTOP past its lease and thawed while another
instance regenerates the reply, and two processes that share one SQLite file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from conftest import Cluster, FakeProvider, Server, ServerFactory
from helpers import read_sse, until, wait_until_streaming
from streamchat.conversations.messages import ConversationMessage
from streamchat.framework.leases import Fenced, Lease
from streamchat.framework.redis_link import RedisLink, holder_key
from streamchat.framework.stops.registry import Stoppable, StopRegistry
from streamchat.framework.store import Store, StoredItem
from streamchat.framework.streams.hub import StreamHub
from streamchat.framework.streams.sequencers.redis import RedisSequencer
from streamchat.framework.streams.stream import Stream
from streamchat.steps.conversation_stream import config as conversation_stream
from test_observability import scrape, value
from test_scale import post_to_pair, post_traced, provider_streams

TOKENS = [f"w{i} " for i in range(60)]


def message(text: str, status: str) -> dict[str, Any]:
    return {"message": text, "from": "assistant", "status": status, "timestamp": "2026-12-04T08:00:00.000Z"}


# -- the stores ------------------------------------------------------------------------------------

async def test_a_write_under_a_lease_someone_else_took_is_refused_whole(store: Store) -> None:
    old, new = Lease("AiResponse:c1", "old"), Lease("AiResponse:c1", "new")
    await store.lease_take(old)
    assert await store.put_item("s", "g", StoredItem("r", {"v": "old 1"}, 1), old) is True
    await store.lease_take(new)
    with pytest.raises(Fenced):
        await store.put_item("s", "g", StoredItem("r", {"v": "old 2"}, 2), old)
    with pytest.raises(Fenced):
        await store.put_item("s", "g", StoredItem("other", {"v": "old"}, 3), old)
    assert await store.get_item("s", "g", "r") == StoredItem("r", {"v": "old 1"}, 1)
    assert await store.get_item("s", "g", "other") is None

    assert await store.put_item("s", "g", StoredItem("r", {"v": "new"}, 4), new) is False
    refused = await store.put_items("s", [("g", StoredItem("r", {"v": "old batch"}, 9)),
                                          ("g", StoredItem("x", {"v": "unleased"}, 10))], {("g", "r"): old})
    assert refused == {("g", "r")}, "only the fenced item of a batch is refused"
    assert [(i.id, i.data["v"]) for i in await store.list_items("s", "g")] == [("r", "new"), ("x", "unleased")]

    await store.lease_drop(old)  # not the holder any more: the new holder keeps the lease
    assert await store.put_item("s", "g", StoredItem("r", {"v": "new 2"}, 11), new) is False
    await store.lease_drop(new)
    with pytest.raises(Fenced):
        await store.put_item("s", "g", StoredItem("r", {"v": "after the end"}, 12), new)
    assert (await store.get_item("s", "g", "r")) == StoredItem("r", {"v": "new 2"}, 11)


async def test_no_write_of_a_superseded_holder_lands_after_the_takeover(store: Store) -> None:
    """The old holder keeps writing ever newer seqs, so the seq guard would let them in: only the
    fence stops them, from the moment the takeover returns."""
    old, new = Lease("AiResponse:race", "old"), Lease("AiResponse:race", "new")
    await store.lease_take(old)
    taken = asyncio.Event()
    accepted_after_takeover: list[int] = []
    accepted_before_takeover: list[int] = []

    async def old_writer() -> int:
        for seq in range(1, 100_000):
            started_after = taken.is_set()
            try:
                await store.put_item("s", "g", StoredItem("r", {"by": "old", "seq": seq}, seq), old)
            except Fenced:
                return seq
            (accepted_after_takeover if started_after else accepted_before_takeover).append(seq)
            await asyncio.sleep(0)
        raise AssertionError("the old holder was never fenced off")

    async def writing_under_way() -> bool:
        return len(accepted_before_takeover) >= 2 * len(writers)

    writers = [asyncio.create_task(old_writer()) for _ in range(4)]
    await until(writing_under_way, "the old holder's writes accepted")  # the takeover lands mid-writing
    await store.lease_take(new)
    taken.set()
    await asyncio.wait_for(asyncio.gather(*writers), 30)
    assert accepted_after_takeover == []
    assert await store.put_item("s", "g", StoredItem("r", {"by": "new"}, 1_000_000), new) is False
    assert (await store.get_item("s", "g", "r")) == StoredItem("r", {"by": "new"}, 1_000_000)


@pytest.fixture
def writeback_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The write-back's log, read where it is logged: a server started in this process keeps
    streamchat's logs from reaching the root logger, where caplog reads."""
    logger = logging.getLogger("streamchat.streams")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


async def test_a_fenced_writer_of_the_local_hub_stops_at_its_next_write(
    store: Store, writeback_log: pytest.LogCaptureFixture,
) -> None:
    hub = StreamHub(store, {"conversation": conversation_stream})
    old, new = Lease("AiResponse:g", "old"), Lease("AiResponse:g", "new")
    await store.lease_take(old)
    stale: Stream[ConversationMessage] = Stream(conversation_stream, hub, lease=old)
    await stale.set("g", "r", message("", "streaming"))
    await stale.append("g", "r", "message", "old ")

    await store.lease_take(new)  # another process took the group's events over

    async def refused() -> bool:
        return "a streaming item's lease was taken over" in writeback_log.text

    # The batched write (on its beat, STORE_FLUSH_SECONDS) finds the lease taken, whenever it comes.
    await until(refused, "the batched write refused")
    with pytest.raises(Fenced):
        await stale.append("g", "r", "message", "more ")
    with pytest.raises(Fenced):
        await stale.set("g", "r", message("old ", "completed"))

    fresh: Stream[ConversationMessage] = Stream(conversation_stream, hub, lease=new)
    await fresh.set("g", "r", message("", "streaming"))
    await fresh.append("g", "r", "message", "new")
    await fresh.set("g", "r", message("new", "completed"))
    stored = await store.get_item("conversation", "g", "r")
    assert stored is not None and (stored.data["message"], stored.data["status"]) == ("new", "completed")
    await hub.close()


async def test_a_scope_left_by_an_error_closes_its_source_at_once() -> None:
    closed = asyncio.Event()

    async def provider() -> AsyncIterator[str]:
        try:
            for index in range(1000):
                yield f"t{index}"
                await asyncio.sleep(0.001)
        finally:
            closed.set()

    with pytest.raises(Fenced):
        async with Stoppable[str](StopRegistry(), "reply") as scope:
            async for piece in scope.iterate(provider()):
                if piece == "t3":
                    raise Fenced(Lease("k", "t"), "a write")
    assert closed.is_set(), "the provider stream is closed when the scope exits, not when it is collected"


# -- the relay's script on the real Redis ---------------------------------------------------------

async def test_the_relay_refuses_a_change_under_a_lease_another_run_holds(redis_url: str) -> None:
    link = RedisLink(redis_url, prefix=f"test-fence-{uuid.uuid4().hex[:8]}")
    relay = RedisSequencer(link)
    lease_key = link.key("lease", "AiResponse", "0")
    mine, theirs = Lease(lease_key, "a:1"), Lease(lease_key, "b:2")

    async def hold(lease: Lease) -> None:
        await link.client.set(lease_key, lease.token, px=60_000)
        await link.client.set(holder_key(lease_key), lease.token)

    async def write(lease: Lease, text: str) -> int | None:
        return await relay.sequence("conversation", "g", "delta", "r", text, "message", floor=0, lease=lease)

    try:
        await hold(mine)
        first = await write(mine, "mine ")
        await hold(theirs)
        with pytest.raises(Fenced):
            await write(mine, "stale ")
        assert await relay.current_seq("conversation", "g") == first, "a refused change takes no seq"
        assert [change.payload for change in await relay.read_log("conversation", "g")] == ["mine "]
        assert await write(theirs, "theirs ") == (first or 0) + 1

        await link.client.delete(lease_key)  # their lease expired and nobody took it: still theirs
        with pytest.raises(Fenced):
            await write(mine, "stale again ")
        assert await write(theirs, "slow but still theirs ") is not None

        await link.client.delete(lease_key, holder_key(lease_key))  # Redis lost its data
        assert await write(mine, "re-asserted ") is not None
    finally:
        keys = [key async for key in link.client.scan_iter(match=f"{link.prefix}:*")]
        if keys:
            await link.client.delete(*keys)
        await link.close()


# -- real processes ---------------------------------------------------------------------------------

@dataclass
class SseTexts:
    """Every text of one item an SSE client showed, frame by frame, and each status it was sent."""

    texts: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)


async def follow(server: Server, cid: str, item_id: str, seen: SseTexts, until: str = "completed") -> None:
    text = ""
    async with httpx.AsyncClient(timeout=60) as client, client.stream(
            "GET", f"{server.url}/api/conversations/{cid}/events") as response:
        async for frame in read_sse(response):
            if isinstance(frame, str) or frame.data.get("id") != item_id:
                continue
            if frame.event == "item":
                text = frame.data["message"]
                seen.statuses.append(frame.data["status"])
            elif frame.event == "delta":
                text += frame.data["delta"]
            seen.texts.append(text)
            if frame.event == "item" and frame.data["status"] == until:
                return


def assert_each_a_prefix_of_one_run(texts: list[str], runs: list[str]) -> None:
    for text in texts:
        assert any(run.startswith(text) for run in runs), f"a client showed text of no single run: {text!r}"


async def stream_until(seen: SseTexts, prefix: str, tokens: int, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (seen.texts and seen.texts[-1].startswith(prefix) and seen.texts[-1].count(" ") >= tokens):
        assert asyncio.get_running_loop().time() < deadline, f"no run {prefix!r} seen: {seen.texts[-1:]}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("thawed", ["while the new run writes", "after the new run ended"])
async def test_an_instance_paused_past_its_lease_cannot_write_into_the_reply_taken_over(
    cluster: Cluster, fake_provider: FakeProvider, thawed: str,
) -> None:
    # Every run is held open after two tokens until the test releases it, so the instance is frozen
    # mid-reply and thaws while the new run is mid-reply or after it ended, however fast the machine
    # is. The frozen run never ends by itself (endless): only its client, the thawed instance, ends it.
    fake_provider.script(tokens=TOKENS, tag=True, hold_after=2, endless=True)
    servers = cluster.start_many(2)
    cid = str(uuid.uuid4())
    posted = await post_to_pair(servers, "pause me", cid)
    mid, paused, survivor, trace = posted.mid, posted.generator, posted.other, posted.trace
    on_survivor, on_paused = SseTexts(), SseTexts()
    watchers = [asyncio.create_task(follow(survivor, cid, mid, on_survivor)),
                asyncio.create_task(follow(paused, cid, mid, on_paused))]
    await fake_provider.until_held(1)
    await wait_until_streaming(survivor.url, cid, mid)
    fake_provider.script(endless=False)  # the run that takes the reply over ends by itself

    paused.process.send_signal(signal.SIGSTOP)
    try:
        await fake_provider.until_held(2)  # the lease ran out; the survivor regenerates the reply
        await stream_until(on_survivor, "r1-", 2)
        if thawed == "after the new run ended":
            fake_provider.release_stream(1)
            await asyncio.wait_for(asyncio.shield(watchers[0]), 60)
    finally:
        paused.process.send_signal(signal.SIGCONT)
    fake_provider.release_stream(0)  # the thawed run reads on, in a reply it lost
    await fake_provider.until_closed_by_client(0)  # fenced at its next write, or cancelled with its lease

    async def stopped_by_the_fence_or_the_lease() -> bool:
        fenced = value(await scrape(paused), "streamchat_handler_runs_total", step="AiResponse", outcome="fenced")
        return fenced == 1 or "lost a bus partition lease" in paused.logs()

    await until(stopped_by_the_fence_or_the_lease, "the thawed run stopped by the fence or by losing the lease")
    fake_provider.release_stream(1)
    await asyncio.wait_for(asyncio.gather(*watchers), 60)
    await until(lambda: provider_stream_finished(fake_provider, 1), "the new run's provider stream finished")

    runs = [str(stream["text"]) for stream in provider_streams(fake_provider)]
    assert len(runs) == 2
    for seen in (on_survivor, on_paused):
        assert_each_a_prefix_of_one_run(seen.texts, runs)
        assert seen.texts[-1] == runs[1]
        assert seen.statuses.count("completed") == 1, seen.statuses
    first = provider_streams(fake_provider)[0]
    assert not first["finished"] and first["sent"] >= 2, "the paused run was cut off mid-reply"
    finished = f'"msg":"handler finished","step":"AiResponse","trace_id":"{trace}"'
    assert finished not in paused.logs(), "the paused instance did not finish the reply"
    # The reply journal (the pieces a Responses stream numbers its events by) is the new run's on
    # both instances: the thawed run wrote none of its own over it.
    for server in servers:
        assert await response_deltas(server, mid) == [f"r1-{token}" for token in TOKENS]
    # Once the thawed instance has stopped (writing out whatever it still held), no late write of
    # its own can come: what is stored now is final.
    assert paused.stop() == 0
    [stored] = [m for m in (await conversation(survivor, cid)) if m["id"] == mid]
    assert (stored["status"], stored["message"]) == ("completed", runs[1])
    assert await response_deltas(survivor, mid) == [f"r1-{token}" for token in TOKENS]


async def provider_stream_finished(fake: FakeProvider, number: int) -> bool:
    """Whether the provider sent the `number`-th reply to its end (it marks that just after the last chunk)."""
    streams = await asyncio.to_thread(fake.streams)
    return len(streams) > number and bool(streams[number]["finished"])


async def response_deltas(server: Server, reply_id: str) -> list[str]:
    """The text deltas of the reply's Responses event stream, read from its beginning."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.get(f"/v1/responses/{reply_id}", params={"stream": "true"})
    assert response.status_code == 200, response.text
    events = [json.loads(line[len("data: "):]) for line in response.text.splitlines() if line.startswith("data: ")]
    return [event["delta"] for event in events if event["type"] == "response.output_text.delta"]


async def conversation(server: Server, cid: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.get(f"/api/conversations/{cid}")
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


async def test_a_second_process_on_the_same_sqlite_file_takes_the_reply_over_cleanly(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    """A restart that overlaps the old process: the new one replays the journal and regenerates the
    running reply, and the old one, fenced off in the store, stops instead of writing on."""
    # The old process's run is held open after two tokens, so it is still running when the new
    # process starts, and it never ends by itself (endless): only the old process can end it.
    fake_provider.script(tokens=TOKENS, tag=True, hold_after=2, endless=True)
    old = servers.start()
    cid = str(uuid.uuid4())
    accepted, trace = await post_traced(old, "overlap", cid)
    mid = accepted["assistantMessageId"]
    await fake_provider.until_held(1)
    await wait_until_streaming(old.url, cid, mid)
    fake_provider.script(endless=False)  # the new process's run ends by itself
    new = servers.start()  # same SQLite file: it replays the old process's journal
    on_new = SseTexts()
    following = asyncio.create_task(follow(new, cid, mid, on_new))
    await fake_provider.until_held(2)  # the new process took the group over and regenerates the reply

    fake_provider.release_stream(0)  # the old run writes on, under a lease it lost, while the new run is held
    await fake_provider.until_closed_by_client(0)

    async def fenced_off() -> bool:
        fenced = value(await scrape(old), "streamchat_handler_runs_total", step="AiResponse", outcome="fenced")
        return fenced == 1 and "another process took this group's events over" in old.logs()

    await until(fenced_off, "the old process fenced off and leaving the group to the new one")
    fake_provider.release_stream(1)
    await asyncio.wait_for(following, 60)
    await until(lambda: provider_stream_finished(fake_provider, 1), "the new run's provider stream finished")

    runs = [str(stream["text"]) for stream in provider_streams(fake_provider)]
    assert len(runs) == 2
    assert_each_a_prefix_of_one_run(on_new.texts, runs)
    assert on_new.texts[-1] == runs[1] and on_new.statuses.count("completed") == 1
    first = provider_streams(fake_provider)[0]
    assert not first["finished"] and first["sent"] > 2, "the old run read on past the takeover, then hung up"
    finished = f'"msg":"handler finished","step":"AiResponse","trace_id":"{trace}"'
    assert finished not in old.logs(), "the old process did not finish the reply"
    for server in (old, new):
        [stored] = [m for m in (await conversation(server, cid)) if m["id"] == mid]
        assert (stored["status"], stored["message"]) == ("completed", runs[1])
    # Once the old process has stopped (writing out whatever it still held), no late write of its
    # own can come: what the new one serves now is final.
    assert old.stop() == 0
    [stored] = [m for m in (await conversation(new, cid)) if m["id"] == mid]
    assert (stored["status"], stored["message"]) == ("completed", runs[1])
    assert new.stop() == 0
