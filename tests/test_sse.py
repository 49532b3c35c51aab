"""Server-Sent Events: snapshot then live, and exact resume with Last-Event-ID."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FakeProvider, Server, ServerFactory
from helpers import SseFrame, Transcript, post_chat, read_sse, wait_for_status

FINISHED = ("completed", "error", "stopped")


def events_url(server: Server, cid: str) -> str:
    return f"{server.url}/api/conversations/{cid}/events"


async def follow(server: Server, cid: str, transcript: Transcript, *, until_done: str | None = None,
                 max_frames: int | None = None, use_query: bool = False,
                 opened: asyncio.Event | None = None) -> list[SseFrame]:
    """Read frames into `transcript` until `until_done` finishes or `max_frames` were read; `opened`
    is set once the server has answered."""
    headers, params = {}, {}
    if transcript.last_id is not None:
        if use_query:
            params["lastEventId"] = str(transcript.last_id)
        else:
            headers["Last-Event-ID"] = str(transcript.last_id)
    seen: list[SseFrame] = []
    async with httpx.AsyncClient(timeout=30) as client, client.stream(
        "GET", events_url(server, cid), headers=headers, params=params
    ) as response:
        assert response.status_code == 200
        if opened is not None:
            opened.set()
        async for frame in read_sse(response):
            if isinstance(frame, str):
                continue
            transcript.apply(frame)
            seen.append(frame)
            if max_frames is not None and len(seen) >= max_frames:
                break
            if until_done is not None and transcript.status.get(until_done) in FINISHED:
                break
    return seen


async def test_headers_and_a_snapshot_then_live_frames(server: Server, fake_provider: FakeProvider) -> None:
    tokens = [f"s{i} " for i in range(20)]
    fake_provider.script(tokens=tokens, hold_after=5)  # held mid-way until the snapshot has come
    accepted = await post_chat(server.url, "sse please")
    cid, mid = accepted["conversationId"], accepted["assistantMessageId"]
    await fake_provider.until_held()
    async with httpx.AsyncClient(timeout=30) as client, client.stream("GET", events_url(server, cid)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        transcript = Transcript()
        frames = []
        async for frame in read_sse(response):
            if isinstance(frame, SseFrame):
                frames.append(frame)
                transcript.apply(frame)
                if len(frames) == 2:
                    await asyncio.to_thread(fake_provider.release)  # the rest of the reply comes live
                if transcript.status.get(mid) in FINISHED:
                    break
    assert [f.event for f in frames[:2]] == ["item", "item"], "a fresh connection starts with a snapshot"
    assert {f.data["id"] for f in frames[:2]} == {accepted["userMessageId"], mid}
    assert "delta" in {f.event for f in frames}
    assert transcript.texts[mid] == "".join(tokens)
    live_ids = [f.id for f in frames[2:]]
    assert live_ids == sorted(live_ids) and len(set(live_ids)) == len(live_ids)


async def test_resume_after_a_completed_reply_gets_exactly_what_was_missed(
    server: Server, fake_provider: FakeProvider
) -> None:
    fake_provider.script(tokens=[f"r{i} " for i in range(10)])
    cid = str(uuid.uuid4())
    first = await post_chat(server.url, "one", cid)
    await wait_for_status(server.url, cid, first["assistantMessageId"])
    transcript = Transcript()
    await follow(server, cid, transcript, until_done=first["assistantMessageId"])
    mark = transcript.last_id
    second = await post_chat(server.url, "two", cid)
    await wait_for_status(server.url, cid, second["assistantMessageId"])
    for use_query in (False, True):
        resumed = Transcript(texts=dict(transcript.texts), status=dict(transcript.status), last_id=mark)
        frames = await follow(server, cid, resumed, until_done=second["assistantMessageId"], use_query=use_query)
        assert frames[0].event == "item" and frames[0].data["id"] == second["userMessageId"]
        assert [f.id for f in frames] == list(range(mark + 1, mark + 1 + len(frames))), "no gap, no repeat"
        assert resumed.texts[second["assistantMessageId"]] == "".join(f"r{i} " for i in range(10))


async def test_resume_at_the_latest_id_waits_for_new_frames(server: Server) -> None:
    accepted = await post_chat(server.url, "caught up")
    cid = accepted["conversationId"]
    await wait_for_status(server.url, cid, accepted["assistantMessageId"])
    transcript = Transcript()
    await follow(server, cid, transcript, until_done=accepted["assistantMessageId"])
    opened = asyncio.Event()
    follower = asyncio.create_task(follow(server, cid, transcript, max_frames=1, opened=opened))
    await asyncio.wait_for(opened.wait(), 30)
    await asyncio.sleep(0.3)  # room for a frame that must not come: nothing signals that none will
    assert not follower.done(), "nothing was missed, so nothing should be sent yet"
    nxt = await post_chat(server.url, "news", cid)
    [frame] = await asyncio.wait_for(follower, 10)
    assert frame.data["id"] == nxt["userMessageId"]


async def test_an_unknown_last_event_id_falls_back_to_a_snapshot(server: Server) -> None:
    accepted = await post_chat(server.url, "snapshot fallback")
    cid = accepted["conversationId"]
    await wait_for_status(server.url, cid, accepted["assistantMessageId"])
    transcript = Transcript(last_id=10**9)
    frames = await follow(server, cid, transcript, max_frames=2)
    assert {f.data["id"] for f in frames} == {accepted["userMessageId"], accepted["assistantMessageId"]}
    assert all(f.event == "item" for f in frames)


async def test_a_bad_last_event_id_is_a_400(server: Server) -> None:
    response = httpx.get(events_url(server, "whatever"), headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 400
    assert "lastEventId" in response.json()["detail"]


async def test_idle_connections_get_ping_comments(servers: ServerFactory) -> None:
    server = servers.start(STREAMCHAT_SSE_PING_SECONDS="0.2")
    async with httpx.AsyncClient(timeout=10) as client, client.stream("GET", events_url(server, "idle")) as response:
        async for frame in read_sse(response):
            if frame == ": ping":
                break


async def test_a_stopping_server_ends_its_event_streams_instead_of_waiting_for_them(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    """SIGTERM with watchers connected: their streams end at once (they resume from their last id),
    so the shutdown is not held for STREAMCHAT_SHUTDOWN_SECONDS (killed after 30 s below: status -9)."""
    server = servers.start(STREAMCHAT_SHUTDOWN_SECONDS="60")
    accepted = await post_chat(server.url, "something to watch")
    cid = accepted["conversationId"]
    await wait_for_status(server.url, cid, accepted["assistantMessageId"])
    transcript = Transcript()
    async with httpx.AsyncClient(timeout=30) as client, client.stream("GET", events_url(server, cid)) as response:
        frames = read_sse(response)
        while transcript.status.get(accepted["assistantMessageId"]) != "completed":
            frame = await anext(frames)
            if isinstance(frame, SseFrame):
                transcript.apply(frame)
        stopping = asyncio.create_task(asyncio.to_thread(server.stop, timeout=30))
        rest = [frame async for frame in frames]  # the stream ends, cleanly, without the client closing it
        assert await stopping == 0, "the server exited cleanly, not killed after the timeout"
    assert [frame for frame in rest if isinstance(frame, SseFrame)] == []


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=1, max_value=25), min_size=1, max_size=6))
def test_reconnecting_at_random_points_never_gaps_or_repeats(
    server: Server, fake_provider: FakeProvider, cuts: list[int]
) -> None:
    tokens = [f"p{i} " for i in range(60)]
    fake_provider.script(tokens=tokens, delay=0.004)

    async def scenario() -> None:
        cid = str(uuid.uuid4())
        transcript = Transcript()
        accepted = await post_chat(server.url, "reconnect storm", cid)
        mid = accepted["assistantMessageId"]
        all_frames: list[SseFrame] = []
        for cut in cuts:
            all_frames += await follow(server, cid, transcript, max_frames=cut, until_done=mid)
            if transcript.status.get(mid) in FINISHED:
                break
        if transcript.status.get(mid) not in FINISHED:
            all_frames += await follow(server, cid, transcript, until_done=mid)
        assert transcript.texts[mid] == "".join(tokens)
        ids = [f.id for f in all_frames if f.id is not None]
        assert ids == list(range(ids[0], ids[0] + len(ids))), "after the first id, every seq exactly once"

    asyncio.run(scenario())
