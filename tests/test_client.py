"""streamchat.client against real server processes: HTTP calls, WebSocket deltas, SSE resume, errors, keys."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from conftest import FakeProvider, Server, ServerFactory
from streamchat.client import FINISHED, Events, SseFrame, SseParser, StreamchatClient, StreamchatError

ALICE, BOB = "alice-key-0123456789", "bob-key-9876543210"


async def test_send_then_reply_text_streams_what_the_server_stores(server: Server, fake_provider: FakeProvider) -> None:
    tokens = [f"piece{i} " for i in range(30)]
    fake_provider.script(tokens=tokens, delay=0.02)
    async with StreamchatClient(server.url) as client:
        accepted = await client.send("stream to me")
        reply = client.reply_text(accepted.conversation_id, accepted.assistant_message_id)
        pieces = [piece async for piece in reply]
        messages = await client.conversation(accepted.conversation_id)
        listed = await client.conversations()
        models = await client.models()
    assert "".join(pieces) == "".join(tokens)
    assert len(pieces) > 1, "the text arrives as it is written, not at the end"
    assert reply.item is not None and reply.item["status"] == "completed" and reply.restarts == 0
    assert [(m["id"], m["from"], m["status"], m["message"]) for m in messages] == [
        (accepted.user_message_id, "user", "completed", "stream to me"),
        (accepted.assistant_message_id, "assistant", "completed", "".join(tokens))]
    assert accepted.body["status"] == "streaming"
    assert accepted.conversation_id in [c["conversationId"] for c in listed]
    assert models["serving"]["model"] == "fake-model"


async def test_reply_text_ends_with_a_failed_or_stopped_reply(server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(fail=[500] * 10)
    async with StreamchatClient(server.url) as client:
        failed = await client.send("doomed")
        reply = client.reply_text(failed.conversation_id, failed.assistant_message_id)
        assert [piece async for piece in reply] == []
        assert reply.item is not None and reply.item["status"] == "error" and "500" in reply.item["error"]

        fake_provider.reset()
        fake_provider.script(tokens=[f"slow{i} " for i in range(200)], delay=0.05)
        slow = await client.send("take your time")
        reply = client.reply_text(slow.conversation_id, slow.assistant_message_id)
        shown, stopped = "", None
        async for piece in reply:
            shown += piece
            if stopped is None and len(shown) > 20:
                stopped = await client.stop(slow.conversation_id, slow.assistant_message_id)
                assert stopped["status"] == "stopped"
        assert reply.item is not None and reply.item["status"] == "stopped"
        [_, stored] = await client.conversation(slow.conversation_id)
        assert shown == stored["message"] and 0 < len(shown) < len("".join(f"slow{i} " for i in range(200)))

        fake_provider.script(tokens=["again"])
        again = await client.regenerate(slow.conversation_id, slow.assistant_message_id)
        assert (again.conversation_id, again.user_message_id) == (slow.conversation_id, slow.user_message_id)
        pieces = [p async for p in client.reply_text(again.conversation_id, again.assistant_message_id)]
        assert "".join(pieces) == "again"


async def test_deltas_rebuild_exactly_the_stored_reply(server: Server, fake_provider: FakeProvider) -> None:
    tokens = ["Grüße ", "🌊 ", "海 ", "e\u0301 ", '"quoted" ', "\\back\\slash ", "\n"] * 10
    fake_provider.script(tokens=tokens, delay=0.01)
    cid = str(uuid.uuid4())
    async with StreamchatClient(server.url) as client, client.watch(cid, deltas=True) as early:
        accepted = await client.send("unicode, please", cid)
        mid = accepted.assistant_message_id
        late = None
        rebuilt, deltas = "", 0
        async for change in early.changes():
            if change.item["id"] != mid:
                continue
            if change.kind == "delta":
                rebuilt += change.appended
                deltas += 1
                assert early.text(mid) == rebuilt
                if late is None and deltas == 3:
                    late = await client.watch(cid, deltas=True).__aenter__()  # joins mid-reply
            elif change.item["status"] in FINISHED:
                break
        assert late is not None
        try:
            assert 0 < len(late.text(mid)) < len("".join(tokens)), "the late joiner's sync has the text so far"
            final = await late.until_finished(mid, timeout=30)
        finally:
            await late.aclose()
        stored = {m["id"]: m for m in await client.conversation(cid)}[mid]
    assert deltas > 1 and rebuilt == stored["message"] == "".join(tokens)
    assert final["message"] == early.text(mid) == stored["message"]


class Cutter:
    """A TCP forwarder in front of the server whose connections the test can cut, as a network drop does."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.open: list[asyncio.StreamWriter] = []
        self.accepted = 0
        self.listener: asyncio.Server | None = None

    async def start(self) -> str:
        self.listener = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.listener.sockets[0].getsockname()[1]}"

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.open += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for writer in self.open:
            writer.transport.abort()
        self.open.clear()

    async def close(self) -> None:
        self.cut()
        if self.listener is not None:
            self.listener.close()


async def read_until_finished(events: Events, mid: str, cut_after: int | None = None,
                              cutter: Cutter | None = None) -> list[SseFrame]:
    frames: list[SseFrame] = []
    async for frame in events:
        frames.append(frame)
        if cutter is not None and len(frames) == cut_after:
            cutter.cut()
        if frame.event == "item" and frame.data["id"] == mid and frame.data["status"] in FINISHED:
            return frames
    raise AssertionError("the events ended")


async def test_sse_resumes_after_a_dropped_connection_with_exactly_the_missing_frames(
    server: Server, fake_provider: FakeProvider
) -> None:
    tokens = [f"t{i} " for i in range(80)]
    fake_provider.script(tokens=tokens, delay=0.02)
    cutter = Cutter(server.port)
    cid = str(uuid.uuid4())
    try:
        async with StreamchatClient(server.url) as direct, StreamchatClient(await cutter.start()) as dropped, \
                direct.events(cid) as whole, dropped.events(cid) as resumed:
            accepted = await direct.send("cut me off", cid)
            mid = accepted.assistant_message_id
            expected, got = await asyncio.wait_for(asyncio.gather(
                read_until_finished(whole, mid), read_until_finished(resumed, mid, cut_after=10, cutter=cutter)), 60)
            assert resumed.reconnects == 1 and cutter.accepted == 2 and whole.reconnects == 0
            assert got == expected, "after the drop: exactly the frames missed, then live, nothing twice"
            ids = [frame.id for frame in got if frame.id is not None]
            assert len(ids) == len(got) and ids == list(range(ids[0], ids[0] + len(ids))), "every seq, once each"
            assert "".join(f.data["delta"] for f in got if f.event == "delta") == "".join(tokens)

            # Resuming from any id of the past gives the rest, as a client that was away would see it.
            async with direct.events(cid, last_event_id=got[30].id) as later:
                assert await read_until_finished(later, mid) == got[31:]
    finally:
        await cutter.close()


async def test_api_errors_are_streamchat_errors_with_the_api_code(server: Server) -> None:
    async with StreamchatClient(server.url) as client:
        with pytest.raises(StreamchatError) as blank:
            await client.send("   ")
        assert (blank.value.status, blank.value.code) == (422, "validation_error")
        assert "message" in blank.value.detail and blank.value.body["error"] == "validation_error"

        with pytest.raises(StreamchatError) as unknown:
            await client.conversation("no-such-conversation")
        assert (unknown.value.status, unknown.value.code) == (404, "not_found")

        accepted = await client.send("hello")
        [piece async for piece in client.reply_text(accepted.conversation_id, accepted.assistant_message_id)]
        with pytest.raises(StreamchatError) as finished:
            await client.stop(accepted.conversation_id, accepted.assistant_message_id)
        assert (finished.value.status, finished.value.code) == (409, "conflict")
        with pytest.raises(StreamchatError) as nothing:
            await client.regenerate(accepted.conversation_id, "no-such-message")
        assert nothing.value.status == 404

        with pytest.raises(StreamchatError) as bad_resume:
            async with client.events(accepted.conversation_id, last_event_id=-1):
                pass
        assert (bad_resume.value.status, bad_resume.value.code) == (400, "validation_error")


async def test_the_api_key_goes_with_every_request_socket_and_stream(
    servers: ServerFactory, fake_provider: FakeProvider
) -> None:
    keyed = servers.start(STREAMCHAT_API_KEYS=f"{ALICE},{BOB}")
    fake_provider.script(tokens=["for ", "alice"], delay=0.01)
    async with StreamchatClient(keyed.url) as anonymous:
        with pytest.raises(StreamchatError) as refused:
            await anonymous.send("hello?")
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
        with pytest.raises(StreamchatError) as no_socket:
            async with anonymous.watch(str(uuid.uuid4())):
                pass
        assert no_socket.value.status == 401

    async with StreamchatClient(keyed.url, ALICE) as alice, StreamchatClient(keyed.url, BOB) as bob:
        cid = str(uuid.uuid4())
        async with alice.events(cid) as events:
            accepted = await alice.send("hello", cid)
            text = "".join([p async for p in alice.reply_text(cid, accepted.assistant_message_id)])
            first = await anext(events)
        assert text == "for alice"
        assert (first.event, first.data["id"]) == ("item", accepted.user_message_id)
        assert [c["conversationId"] for c in await alice.conversations()] == [cid]

        assert await bob.conversations() == []
        with pytest.raises(StreamchatError) as hidden:
            await bob.conversation(cid)
        assert (hidden.value.status, hidden.value.code) == (404, "not_found")
        with pytest.raises(StreamchatError) as denied:
            async with bob.watch(cid):
                pass
        assert (denied.value.status, denied.value.code) == (None, "STREAM_ACCESS_DENIED")


def test_the_sse_parser_follows_the_format() -> None:
    parser = SseParser()
    lines = ["retry: 1500", "", ": ping", "id: 7", "event: delta", 'data: {"id": "m",', 'data: "delta": "x"}', "",
             "data:[1]", "", "id: 8", "event: item", ""]
    parsed = [parser.feed(line) for line in lines]
    assert [p for p in parsed if p is not None] == [
        ": ping", SseFrame(7, "delta", {"id": "m", "delta": "x"}), SseFrame(None, "message", [1])]
    assert parser.retry_ms == 1500, "and a frame without data is no event"
