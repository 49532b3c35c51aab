"""The reply's life in the conversation stream, watched over a real WebSocket (Motia protocol)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import websockets

from conftest import FakeProvider, InProcessStarter, Server, ServerFactory
from helpers import Watcher, post_chat, wait_for_status, wait_until_streaming
from streamchat.llm.base import INSTRUCTION_PROMPT

TOKENS = [f"tok{i} " for i in range(12)]
#: Tokens the provider sends in one write right before it hangs up: far more than the server
#: consumes before the hang-up reaches its HTTP client, which buffers ~1000 of them.
BURST = 2000


async def test_reply_streams_token_by_token_and_ends_completed_with_the_provider_text(
    server: Server, fake_provider: FakeProvider
) -> None:
    held = "".join(TOKENS[:4])
    fake_provider.script(tokens=TOKENS, hold_after=4)  # held mid-way until the watcher has seen it
    cid = str(uuid.uuid4())
    async with Watcher(server.ws_url, cid) as watcher:
        accepted = await post_chat(server.url, "stream to me", cid)
        await watcher.until_text(accepted["assistantMessageId"], held)
        fake_provider.release()
        final = await watcher.until_finished(accepted["assistantMessageId"])
    assert final["status"] == "completed"
    assert final["message"] == "".join(TOKENS)
    versions = watcher.watch.items(accepted["assistantMessageId"])
    statuses = [v["status"] for v in versions]
    assert statuses[0] == "created"
    assert statuses[-1] == "completed"
    assert "streaming" in statuses
    growing = [v["message"] for v in versions if v["status"] == "streaming"]
    assert held in growing, "reply did not arrive progressively"
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(growing))
    user = watcher.watch.final(accepted["userMessageId"])
    assert (user["from"], user["status"], user["message"]) == ("user", "completed", "stream to me")


async def test_frames_follow_the_motia_protocol(server: Server) -> None:
    cid = str(uuid.uuid4())
    async with Watcher(server.ws_url, cid) as watcher:
        accepted = await post_chat(server.url, "protocol check", cid)
        await watcher.until_finished(accepted["assistantMessageId"])
    sync, *changes = watcher.watch.frames
    assert sync["event"] == {"type": "sync", "data": []}
    assert sync["streamName"] == "conversation" and sync["groupId"] == cid and "id" not in sync
    first_seen: dict[str, str] = {}
    last_timestamp: dict[str, int] = {}
    seqs = []
    for frame in changes:
        assert set(frame) == {"timestamp", "streamName", "groupId", "id", "event"}
        assert frame["id"] == frame["event"]["data"]["id"]
        first_seen.setdefault(frame["id"], frame["event"]["type"])
        assert frame["timestamp"] > last_timestamp.get(frame["id"], 0), "timestamps must rise per item"
        last_timestamp[frame["id"]] = frame["timestamp"]
        seqs.append(frame["event"]["data"]["seq"])
    assert set(first_seen.values()) == {"create"}, "every item is announced with create first"
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_item_join_gets_a_sync_of_the_item_then_its_changes(server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(tokens=TOKENS, delay=0.02)
    accepted = await post_chat(server.url, "item subscription")
    cid, mid = accepted["conversationId"], accepted["assistantMessageId"]
    async with Watcher(server.ws_url, cid, mid) as watcher:
        sync = watcher.watch.frames[0]
        assert sync["id"] == mid and sync["event"]["data"]["id"] == mid
        final = await watcher.until_finished(mid)
    assert final["message"] == "".join(TOKENS)
    assert all(frame.get("id") == mid for frame in watcher.watch.frames)


async def test_joining_mid_reply_gets_the_text_so_far_then_the_rest(
    server: Server, fake_provider: FakeProvider
) -> None:
    fake_provider.script(tokens=TOKENS, hold_after=4)  # held mid-way until the late watcher has joined
    accepted = await post_chat(server.url, "late joiner")
    cid, mid = accepted["conversationId"], accepted["assistantMessageId"]
    await fake_provider.until_held()
    await wait_until_streaming(server.url, cid, mid)
    async with Watcher(server.ws_url, cid) as watcher:
        snapshot = {item["id"]: item for item in watcher.watch.frames[0]["event"]["data"]}
        assert snapshot[mid]["status"] == "streaming"
        assert "".join(TOKENS[:4]).startswith(snapshot[mid]["message"]) and snapshot[mid]["message"]
        fake_provider.release()
        final = await watcher.until_finished(mid)
    assert final["message"] == "".join(TOKENS)


async def test_every_watcher_sees_the_same_final_text(server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(tokens=TOKENS, delay=0.01)
    cid = str(uuid.uuid4())
    watchers = [Watcher(server.ws_url, cid) for _ in range(5)]
    for watcher in watchers:
        await watcher.__aenter__()
    accepted = await post_chat(server.url, "many eyes", cid)
    finals = await asyncio.gather(*(w.until_finished(accepted["assistantMessageId"]) for w in watchers))
    for watcher in watchers:
        await watcher.__aexit__()
    assert {final["message"] for final in finals} == {"".join(TOKENS)}


async def test_a_disconnected_client_does_not_stop_the_reply(server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(tokens=TOKENS, hold_after=4)  # held mid-way until the client has left
    cid = str(uuid.uuid4())
    async with Watcher(server.ws_url, cid) as watcher:
        accepted = await post_chat(server.url, "leave early", cid)
        await watcher.until_text(accepted["assistantMessageId"], "".join(TOKENS[:4]))
    fake_provider.release()
    final = await wait_for_status(server.url, cid, accepted["assistantMessageId"])
    assert (final["status"], final["message"]) == ("completed", "".join(TOKENS))


async def test_second_turn_sends_the_history(server: Server, fake_provider: FakeProvider) -> None:
    first = await post_chat(server.url, "My name is Ada.")
    cid = first["conversationId"]
    await wait_for_status(server.url, cid, first["assistantMessageId"])
    second = await post_chat(server.url, "What is my name?", cid)
    await wait_for_status(server.url, cid, second["assistantMessageId"])
    sent = fake_provider.requests()[-1]
    assert sent["stream"] is True
    assert sent["model"] == "fake-model"
    roles = [(m["role"], m["content"]) for m in sent["messages"]]
    assert roles[0] == ("system", INSTRUCTION_PROMPT), "a chat model gets the instruction prompt by default"
    assert roles[1:] == [("user", "My name is Ada."), ("assistant", "Hello! I am the fake provider."),
                         ("user", "What is my name?")]


async def test_the_system_prompt_setting_replaces_the_default(in_process: InProcessStarter,
                                                              fake_provider: FakeProvider) -> None:
    server = await in_process(STREAMCHAT_SYSTEM_PROMPT="You answer in haiku.")
    accepted = await post_chat(server, "Hello")
    await wait_for_status(server, accepted["conversationId"], accepted["assistantMessageId"])
    sent = fake_provider.requests()[-1]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [("system", "You answer in haiku."), ("user", "Hello")]


async def test_history_is_trimmed_to_the_budget_newest_first(
    in_process: InProcessStarter, fake_provider: FakeProvider
) -> None:
    server = await in_process(STREAMCHAT_HISTORY_CHARS="120")
    cid = str(uuid.uuid4())
    for word in ("alpha", "bravo", "charlie"):
        accepted = await post_chat(server, f"{word} " + "x" * 20, cid)
        await wait_for_status(server, cid, accepted["assistantMessageId"])
    contents = [m["content"] for m in fake_provider.requests()[-1]["messages"][1:]]
    assert contents[-1].startswith("charlie")
    assert sum(len(c) for c in contents) <= 120
    assert not any(c.startswith("alpha") for c in contents), "the oldest turn should have been dropped"


async def test_two_conversations_stream_concurrently(server: Server, fake_provider: FakeProvider) -> None:
    # Both replies are held mid-way: B has provably started before A can finish.
    fake_provider.script(tokens=[f"w{i} " for i in range(20)], hold_after=5)
    cid_a, cid_b = str(uuid.uuid4()), str(uuid.uuid4())
    async with Watcher(server.ws_url, cid_a) as watch_a, Watcher(server.ws_url, cid_b) as watch_b:
        a = await post_chat(server.url, "conversation A", cid_a)
        b = await post_chat(server.url, "conversation B", cid_b)
        await fake_provider.until_held(2)
        await watch_b.until_text(b["assistantMessageId"], "".join(f"w{i} " for i in range(5)))
        fake_provider.release()
        final_a, final_b = await asyncio.gather(
            watch_a.until_finished(a["assistantMessageId"]), watch_b.until_finished(b["assistantMessageId"]))
    expected = "".join(f"w{i} " for i in range(20))
    assert final_a["message"] == final_b["message"] == expected
    a_done = frame_time(watch_a, a["assistantMessageId"], lambda item: item["status"] == "completed")
    b_started = frame_time(watch_b, b["assistantMessageId"], lambda item: bool(item["message"]))
    assert b_started < a_done, "B only started after A finished: conversations ran one at a time"


def frame_time(watcher: Watcher, item_id: str, condition: Callable[[dict[str, Any]], bool]) -> int:
    """Server timestamp of the first frame about `item_id` whose item meets `condition`."""
    for frame in watcher.watch.frames:
        data = frame["event"].get("data")
        if frame.get("id") == item_id and isinstance(data, dict) and condition(data):
            return int(frame["timestamp"])
    raise AssertionError(f"no frame for {item_id} met the condition")


async def test_transient_provider_errors_are_retried(server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(fail=[500, 429])
    accepted = await post_chat(server.url, "flaky provider")
    final = await wait_for_status(server.url, accepted["conversationId"], accepted["assistantMessageId"])
    assert final["status"] == "completed"
    assert len(fake_provider.requests()) == 3


async def test_a_provider_that_keeps_failing_ends_the_reply_as_error(
    server: Server, fake_provider: FakeProvider
) -> None:
    fake_provider.script(fail=[503] * 10)
    accepted = await post_chat(server.url, "broken provider")
    cid = accepted["conversationId"]
    final = await wait_for_status(server.url, cid, accepted["assistantMessageId"])
    assert final["status"] == "error"
    assert "503" in final["error"]
    assert "sk-test" not in final["error"]
    user = await wait_for_status(server.url, cid, accepted["userMessageId"])
    assert (user["status"], user["message"]) == ("completed", "broken provider")


async def test_a_hang_up_mid_stream_keeps_every_token_sent_and_ends_as_error(
    server: Server, fake_provider: FakeProvider
) -> None:
    tokens = [f" t{i}" for i in range(BURST + 50)]
    fake_provider.script(tokens=tokens, hang_up_after=BURST, burst=True)
    accepted = await post_chat(server.url, "cut me off")
    final = await wait_for_status(server.url, accepted["conversationId"], accepted["assistantMessageId"])
    [stream] = fake_provider.streams()
    assert stream["sent"] == BURST and not stream["finished"], stream
    assert (final["status"], final["error"]) == ("error", "provider connection broke mid-reply")
    assert len(final["message"].split()) == BURST, "tokens the provider sent are missing from the reply"
    assert final["message"] == "".join(tokens[:BURST])


async def test_an_unreachable_provider_ends_the_reply_as_error(in_process: InProcessStarter) -> None:
    server = await in_process(OPENAI_BASE_URL="http://127.0.0.1:9/v1", STREAMCHAT_PROVIDER_RETRIES="1")
    accepted = await post_chat(server, "anyone there?")
    final = await wait_for_status(server, accepted["conversationId"], accepted["assistantMessageId"])
    assert (final["status"], final["error"]) == ("error", "could not reach the provider")


@pytest.mark.parametrize("bypassed", [False, True])
async def test_the_provider_is_reached_through_the_proxy_the_environment_names(
    in_process: InProcessStarter, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch, bypassed: bool,
) -> None:
    """HTTP_PROXY names the fake provider and the base URL a host that does not resolve: the reply
    can only come through the proxy; NO_PROXY for that host sends it direct (and it cannot)."""
    monkeypatch.setenv("HTTP_PROXY", fake_provider.url)
    if bypassed:
        monkeypatch.setenv("NO_PROXY", "provider.invalid")
    else:
        monkeypatch.delenv("NO_PROXY", raising=False)
    server = await in_process(OPENAI_BASE_URL="http://provider.invalid/v1", STREAMCHAT_PROVIDER_RETRIES="0")
    fake_provider.script(tokens=["through ", "the proxy"])
    accepted = await post_chat(server, "via the proxy")
    final = await wait_for_status(server, accepted["conversationId"], accepted["assistantMessageId"])
    if bypassed:
        assert (final["status"], final["error"]) == ("error", "could not reach the provider")
    else:
        assert (final["status"], final["message"]) == ("completed", "through the proxy")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"not json at all", "INVALID_MESSAGE"),
        (b'{"type": "dance"}', "INVALID_MESSAGE"),
        (b'{"type": "join", "data": {"streamName": 5, "groupId": "g"}}', "INVALID_MESSAGE"),
        (b'{"type": "join", "data": {"streamName": "nope", "groupId": "g"}}', "STREAM_NOT_FOUND"),
    ],
)
async def test_bad_socket_frames_get_an_error_event_and_the_socket_stays_usable(
    server: Server, frame: bytes, code: str
) -> None:
    async with websockets.connect(server.ws_url) as socket:
        await socket.send(frame)
        error = orjson.loads(await asyncio.wait_for(socket.recv(), 5))
        assert error["event"]["type"] == "error"
        assert error["event"]["error"]["code"] == code
        await socket.send(orjson.dumps({"type": "join", "data": {
            "streamName": "conversation", "groupId": "still-works", "subscriptionId": "s"}}))
        sync = orjson.loads(await asyncio.wait_for(socket.recv(), 5))
        assert sync["event"]["type"] == "sync"


def delta_frames(watcher: Watcher) -> list[dict[str, Any]]:
    return [f["event"]["event"]["data"] for f in watcher.watch.frames
            if f["event"]["type"] == "event" and f["event"]["event"]["type"] == "delta"]


async def test_with_no_window_delta_subscribers_get_every_piece_once_with_contiguous_seqs(
    servers: ServerFactory, fake_provider: FakeProvider
) -> None:
    server = servers.start(STREAMCHAT_DELTA_WINDOW_MS="0")
    tokens = [f"d{i} " for i in range(60)]
    fake_provider.script(tokens=tokens)
    cid = str(uuid.uuid4())
    async with Watcher(server.ws_url, cid, deltas=True) as watcher:
        accepted = await post_chat(server.url, "deltas please", cid)
        final = await watcher.until_finished(accepted["assistantMessageId"])
    mid = accepted["assistantMessageId"]
    deltas = delta_frames(watcher)
    assert [d["delta"] for d in deltas] == tokens
    assert all(d["id"] == mid for d in deltas)
    assert final["message"] == "".join(tokens)
    seqs = [f["event"]["data"]["seq"] if f["event"]["type"] != "event" else f["event"]["event"]["data"]["seq"]
            for f in watcher.watch.frames[1:]]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a delta subscriber sees every seq exactly once"
    full_updates = [f["event"]["data"]["status"] for f in watcher.watch.frames
                    if f["event"]["type"] == "update" and f["id"] == mid]
    assert full_updates == ["streaming", "completed"], "only status changes come as whole items"


async def test_fast_pieces_reach_delta_subscribers_joined_in_few_frames_each_piece_once(
    server: Server, fake_provider: FakeProvider
) -> None:
    tokens = [f"j{i} " for i in range(400)]
    # One piece, held: it must reach the subscriber on its own (not held back for company); then the
    # other 399 come as fast as the provider can send them, to be joined.
    fake_provider.script(tokens=tokens, hold_after=1)
    cid = str(uuid.uuid4())
    async with Watcher(server.ws_url, cid, deltas=True) as watcher:
        accepted = await post_chat(server.url, "a fast model", cid)
        await watcher.until_text(accepted["assistantMessageId"], tokens[0])
        fake_provider.release()
        final = await watcher.until_finished(accepted["assistantMessageId"])
    deltas = delta_frames(watcher)
    assert "".join(d["delta"] for d in deltas) == "".join(tokens) == final["message"], "every piece exactly once"
    assert deltas[0]["delta"] == tokens[0], "the first piece is not held back"
    seqs = [d["seq"] for d in deltas]
    assert seqs == sorted(set(seqs)) and seqs[-1] < final["seq"]
    assert len(deltas) < len(tokens) / 4, f"{len(deltas)} frames for {len(tokens)} pieces sent at once"


async def test_plain_subscribers_get_coalesced_updates_and_always_the_final_one(
    server: Server, fake_provider: FakeProvider
) -> None:
    tokens = [f"c{i} " for i in range(300)]
    fake_provider.script(tokens=tokens)
    cid = str(uuid.uuid4())
    async with Watcher(server.ws_url, cid) as watcher:
        accepted = await post_chat(server.url, "coalesce", cid)
        final = await watcher.until_finished(accepted["assistantMessageId"])
    assert final["message"] == "".join(tokens)
    updates = [f for f in watcher.watch.frames if f["event"]["type"] == "update"]
    assert len(updates) < len(tokens) // 3, f"{len(updates)} updates for {len(tokens)} tokens: not coalesced"
    assert updates[-1]["event"]["data"]["status"] == "completed"
    texts = [f["event"]["data"]["message"] for f in updates]
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))


async def test_websocket_compression_is_negotiated_unless_switched_off(server: Server, servers: ServerFactory) -> None:
    async with websockets.connect(server.ws_url) as socket:
        assert "permessage-deflate" in (socket.response.headers.get("Sec-WebSocket-Extensions") or "")
    plain = servers.start(STREAMCHAT_WS_COMPRESSION="off")
    async with websockets.connect(plain.ws_url) as socket:
        assert socket.response.headers.get("Sec-WebSocket-Extensions") is None


async def test_temperature_reaches_the_provider_only_when_set(
    server: Server, servers: ServerFactory, fake_provider: FakeProvider
) -> None:
    accepted = await post_chat(server.url, "default sampling")
    await wait_for_status(server.url, accepted["conversationId"], accepted["assistantMessageId"])
    assert "temperature" not in fake_provider.requests()[-1]
    tuned = servers.start(STREAMCHAT_TEMPERATURE="0.2")
    accepted = await post_chat(tuned.url, "cooler sampling")
    await wait_for_status(tuned.url, accepted["conversationId"], accepted["assistantMessageId"])
    assert fake_provider.requests()[-1]["temperature"] == 0.2
