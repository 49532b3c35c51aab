"""streamchat.client against real server processes: HTTP calls, WebSocket deltas, SSE resume, errors, keys."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
import pytest

from conftest import FakeProvider, Server, ServerFactory
from helpers import until, wait_for_status, wait_until_streaming
from streamchat.client import (
    FINISHED,
    Events,
    SseFrame,
    SseParser,
    StreamchatClient,
    StreamchatError,
    SyncStreamchatClient,
)

ALICE, BOB = "alice-key-0123456789", "bob-key-9876543210"


async def test_send_then_reply_text_streams_what_the_server_stores(server: Server, fake_provider: FakeProvider) -> None:
    tokens = [f"piece{i} " for i in range(30)]
    fake_provider.script(tokens=tokens, hold_after=15)  # the rest is written once the reader has a piece
    async with StreamchatClient(server.url) as client:
        accepted = await client.send("stream to me")
        reply = client.reply_text(accepted.conversation_id, accepted.assistant_message_id)
        pieces = [piece async for piece in releasing_after_the_first(reply, fake_provider)]
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
        # Held after five tokens and never released: only the stop ends it.
        fake_provider.script(tokens=[f"slow{i} " for i in range(200)], hold_after=5)
        slow = await client.send("take your time")
        reply = client.reply_text(slow.conversation_id, slow.assistant_message_id)
        shown, stopped, held = "", None, "".join(f"slow{i} " for i in range(5))
        async for piece in reply:
            shown += piece
            if stopped is None and shown == held:
                stopped = await client.stop(slow.conversation_id, slow.assistant_message_id)
                assert stopped["status"] == "stopped"
        assert reply.item is not None and reply.item["status"] == "stopped"
        [_, stored] = await client.conversation(slow.conversation_id)
        assert shown == stored["message"] == held

        fake_provider.script(tokens=["again"], hold_after=None)
        again = await client.regenerate(slow.conversation_id, slow.assistant_message_id)
        assert (again.conversation_id, again.user_message_id) == (slow.conversation_id, slow.user_message_id)
        pieces = [p async for p in client.reply_text(again.conversation_id, again.assistant_message_id)]
        assert "".join(pieces) == "again"


async def test_deltas_rebuild_exactly_the_stored_reply(server: Server, fake_provider: FakeProvider) -> None:
    tokens = ["Grüße ", "🌊 ", "海 ", "e\u0301 ", '"quoted" ', "\\back\\slash ", "\n"] * 10
    # Held after ten tokens, until a second watcher has joined: it joins mid-reply on any machine.
    fake_provider.script(tokens=tokens, hold_after=10)
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
                if late is None and rebuilt == "".join(tokens[:10]):
                    late = await client.watch(cid, deltas=True).__aenter__()  # joins mid-reply
                    await asyncio.to_thread(fake_provider.release)
            elif change.item["status"] in FINISHED:
                break
        assert late is not None
        try:
            assert late.text(mid) == "".join(tokens[:10]), "the late joiner's sync has the text so far"
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
        #: How many connections had been accepted when the first cut came.
        self.accepted_at_cut: int | None = None
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
        if self.accepted_at_cut is None:
            self.accepted_at_cut = self.accepted
        for writer in self.open:
            writer.transport.abort()
        self.open.clear()

    async def close(self) -> None:
        self.cut()
        if self.listener is not None:
            self.listener.close()


async def releasing_after_the_first(pieces: AsyncIterator[str], fake: FakeProvider) -> AsyncIterator[str]:
    """The pieces of a reply held by the fake provider, which is released once the first has come:
    the rest is written while the reader reads, so it must come as pieces of its own."""
    released = False
    async for piece in pieces:
        if not released:
            await asyncio.to_thread(fake.release)
            released = True
        yield piece


async def release_on_reconnect(cutter: Cutter, fake: FakeProvider) -> None:
    """Release the held reply once the client connected again after the cut: it reconnects while
    the reply still streams."""
    async def reconnected() -> bool:
        return cutter.accepted_at_cut is not None and cutter.accepted > cutter.accepted_at_cut

    await until(reconnected, "a new connection after the cut")
    await asyncio.to_thread(fake.release)


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
    fake_provider.script(tokens=tokens, hold_after=20)  # the rest is written once the dropped client reconnects
    cutter = Cutter(server.port)
    cid = str(uuid.uuid4())
    try:
        async with StreamchatClient(server.url) as direct, StreamchatClient(await cutter.start()) as dropped, \
                direct.events(cid) as whole, dropped.events(cid) as resumed:
            accepted = await direct.send("cut me off", cid)
            mid = accepted.assistant_message_id
            expected, got, _ = await asyncio.wait_for(asyncio.gather(
                read_until_finished(whole, mid), read_until_finished(resumed, mid, cut_after=10, cutter=cutter),
                release_on_reconnect(cutter, fake_provider)), 60)
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


# -- the reply a send returns, read over SSE; the conversation calls; the blocking client --------------------


async def stored_reply(client: StreamchatClient, conversation_id: str, message_id: str) -> dict[str, Any]:
    return {m["id"]: m for m in await client.conversation(conversation_id)}[message_id]


async def test_send_returns_the_reply_to_iterate_from_its_first_character_to_its_end(
    server: Server, fake_provider: FakeProvider
) -> None:
    tokens = [f"word{i} " for i in range(30)]
    fake_provider.script(tokens=tokens, hold_after=15)  # the rest is written once the reader has a piece
    async with StreamchatClient(server.url) as client:
        reply = await client.send("stream to me")
        assert reply.body["status"] == "streaming" and reply.item is None, "nothing is read before iterating"
        pieces = [piece async for piece in releasing_after_the_first(reply, fake_provider)]
        stored = await stored_reply(client, reply.conversation_id, reply.assistant_message_id)
        assert "".join(pieces) == reply.text == stored["message"] == "".join(tokens)
        assert len(pieces) > 1, "the text arrives as it is written, not at the end"
        assert (reply.status, reply.error, reply.restarts, reply.reconnects) == ("completed", None, 0, 0)
        assert [piece async for piece in reply] == [], "one pass"

        # Joining late: the text so far comes first as one piece, then the rest as it is written.
        fake_provider.script(tokens=tokens, hold_after=15)
        late = await client.send("again, later", reply.conversation_id)
        await wait_until_streaming(server.url, late.conversation_id, late.assistant_message_id)
        pieces = [piece async for piece in releasing_after_the_first(late, fake_provider)]
        stored = await stored_reply(client, late.conversation_id, late.assistant_message_id)
        assert "".join(pieces) == stored["message"] == "".join(tokens) and len(pieces) > 1
        assert late.user_message_id != reply.user_message_id and late.status == "completed"

        # A reply that ended before anyone looked: its whole text, at once.
        fake_provider.script(fail=[500] * 10)
        failed = await client.send("doomed", reply.conversation_id)
        await wait_for_status(server.url, failed.conversation_id, failed.assistant_message_id)
        assert await failed.collect() == ""
        assert failed.status == "error" and failed.error is not None and "500" in failed.error


async def test_a_reply_resumes_after_its_connection_drops_with_no_piece_lost_or_repeated(
    server: Server, fake_provider: FakeProvider
) -> None:
    tokens = [f"t{i} " for i in range(80)]
    fake_provider.script(tokens=tokens, hold_after=20)  # the rest is written once the client reconnects
    cutter = Cutter(server.port)
    try:
        async with StreamchatClient(await cutter.start()) as client, StreamchatClient(server.url) as direct:
            reply = await client.send("cut me off")
            pieces: list[str] = []
            releasing = None
            async for piece in reply:
                pieces.append(piece)
                if releasing is None and "".join(pieces) == "".join(tokens[:20]):
                    cutter.cut()  # the SSE connection (and any other) dies mid-reply, as on a network drop
                    releasing = asyncio.create_task(release_on_reconnect(cutter, fake_provider))
            assert releasing is not None
            await releasing
            stored = await stored_reply(direct, reply.conversation_id, reply.assistant_message_id)
    finally:
        await cutter.close()
    assert reply.reconnects == 1 and cutter.accepted >= 2, "the resumed SSE came through a new connection"
    assert stored["status"] == reply.status == "completed" and stored["message"] == "".join(tokens)
    assert "".join(pieces) == stored["message"], "every piece once, in order, across the drop"
    assert pieces[1:] == tokens[len(tokens) - len(pieces) + 1:], "after the first (the text so far), one delta each"


async def test_a_reply_whose_conversation_was_deleted_before_it_was_read_raises_not_found(
    server: Server, fake_provider: FakeProvider
) -> None:
    """Deleted before the events were opened, the reply is in no snapshot and no delete frame
    follows: the reader looks it up instead of waiting for ever."""
    fake_provider.script(tokens=[f"w{i} " for i in range(100)], hold_after=2)  # never released: the delete ends it
    async with StreamchatClient(server.url) as client:
        reply = await client.send("deleted at once")
        await client.delete(reply.conversation_id)
        with pytest.raises(StreamchatError) as gone:
            await asyncio.wait_for(reply.collect(), 30)
        assert (gone.value.status, gone.value.code) in ((None, "not_found"), (404, "not_found"))
        assert reply.text == "" and reply.item is None


async def test_stop_and_regenerate_with_or_without_the_message_id(server: Server, fake_provider: FakeProvider) -> None:
    # Held after five tokens and never released: only the stop ends it.
    fake_provider.script(tokens=[f"slow{i} " for i in range(200)], hold_after=5)
    async with StreamchatClient(server.url) as client:
        slow = await client.send("take your time")
        cid = slow.conversation_id
        held = "".join(f"slow{i} " for i in range(5))
        async for _ in slow:
            if slow.text == held and slow.status != "stopped":
                stopped = await slow.stop()
                assert stopped["status"] == "stopped"
        stored = await stored_reply(client, cid, slow.assistant_message_id)
        assert slow.status == stored["status"] == "stopped" and slow.text == stored["message"] == held

        fake_provider.script(tokens=["the ", "last ", "one"], hold_after=None)
        latest = await client.regenerate(cid)  # no id: the conversation's last reply
        assert (latest.conversation_id, latest.user_message_id) == (cid, slow.user_message_id)
        assert await latest.collect() == "the last one" and latest.status == "completed"

        fake_provider.script(tokens=["named"])
        named = await client.regenerate(cid, slow.assistant_message_id)
        assert named.user_message_id == slow.user_message_id
        assert "".join([piece async for piece in named]) == "named"
        replies = [m["id"] for m in await client.conversation(cid) if m["from"] == "assistant"]
        assert replies == [slow.assistant_message_id, latest.assistant_message_id, named.assistant_message_id]


async def test_conversations_search_export_rename_delete(server: Server) -> None:
    word = f"quokka{uuid.uuid4().hex[:8]}"
    async with StreamchatClient(server.url) as client:
        sent = []
        for i in range(5):  # each reply ends before the next message: their order of activity is the sending order
            reply = await client.send(f"tell me about the {word} number {i}")
            await reply.collect()
            sent.append(reply)
        ids = [reply.conversation_id for reply in sent]

        def mine(listed: list[dict[str, Any]]) -> list[str]:  # other tests' conversations may come between
            return [c["conversationId"] for c in listed if c["conversationId"] in ids]

        first = await client.conversations_page(limit=2)
        assert len(first.conversations) == 2 and first.next_cursor is not None
        second = await client.conversations_page(limit=2, cursor=first.next_cursor)
        paged = [c["conversationId"] for c in first.conversations + second.conversations]
        assert len(set(paged)) == 4 and len(await client.conversations(limit=3)) == 3
        everything = await client.conversations()
        client.page_size = 2  # the same, two at a time, every page followed to the end
        assert await client.conversations() == everything and mine(everything) == ids[::-1], "most recent first"
        assert len(everything) > 4 and paged == [c["conversationId"] for c in everything[:4]]

        hits = await client.search(word)
        assert sorted(hit["conversationId"] for hit in hits) == sorted(ids)
        assert all(word in hit["snippet"] for hit in hits)
        assert {hit["messageId"] for hit in hits} == {reply.user_message_id for reply in sent}
        assert len(await client.search(word, limit=1)) == 1

        cid = ids[0]
        renamed = await client.rename(cid, "Quokka facts")
        assert (renamed["conversationId"], renamed["title"]) == (cid, "Quokka facts")
        exported = await client.export(cid)
        assert (exported["format"], exported["conversationId"], exported["title"]) == (
            "streamchat.conversation", cid, "Quokka facts")
        assert [(m["from"], m["message"]) for m in exported["messages"]] == [
            ("user", f"tell me about the {word} number 0"), ("assistant", "Hello! I am the fake provider.")]
        markdown = await client.export(cid, "markdown")
        assert markdown.startswith("# Quokka facts\n") and "## Assistant" in markdown
        assert f"the {word} number 0" in markdown

        await client.delete(cid)
        with pytest.raises(StreamchatError) as gone:
            await client.conversation(cid)
        assert (gone.value.status, gone.value.code) == (404, "not_found")
        assert cid not in [hit["conversationId"] for hit in await client.search(word)]

        with pytest.raises(StreamchatError) as blank:
            await client.rename(ids[1], "   ")
        assert (blank.value.status, blank.value.code) == (422, "validation_error") and "title" in blank.value.detail
        with pytest.raises(StreamchatError) as unknown:
            await client.delete(cid)
        assert unknown.value.status == 404 and cid in unknown.value.detail


def test_the_blocking_client_is_the_async_one_on_a_thread(server: Server, fake_provider: FakeProvider) -> None:
    tokens = [f"sync{i} " for i in range(20)]
    fake_provider.script(tokens=tokens, hold_after=10)  # the rest is written once the reader has a piece
    with SyncStreamchatClient(server.url) as client:
        reply = client.send("hello from a script")
        pieces = []
        for piece in reply:
            if not pieces:
                fake_provider.release()
            pieces.append(piece)
        [user, stored] = client.conversation(reply.conversation_id)
        assert "".join(pieces) == reply.text == stored["message"] == "".join(tokens) and len(pieces) > 1
        assert (user["id"], reply.status) == (reply.user_message_id, "completed")

        # Held after three tokens and never released: only the stop ends it.
        fake_provider.script(tokens=[f"slow{i} " for i in range(200)], hold_after=3)
        slow = client.send("slowly", reply.conversation_id)
        with slow:
            for _ in slow:
                if slow.text == "slow0 slow1 slow2 " and slow.status != "stopped":
                    assert slow.stop()["status"] == "stopped"
        assert slow.status == "stopped" and slow.text == client.conversation(reply.conversation_id)[-1]["message"]
        assert slow.text == "slow0 slow1 slow2 "

        fake_provider.script(tokens=["once ", "more"], hold_after=None)
        again = client.regenerate(reply.conversation_id)
        assert again.collect() == "once more" and again.user_message_id == slow.user_message_id

        markdown = client.export(reply.conversation_id, "markdown")
        assert "hello from a script" in markdown and "once more" in markdown
        assert client.export(reply.conversation_id)["conversationId"] == reply.conversation_id
        assert reply.conversation_id in [c["conversationId"] for c in client.conversations(limit=5)]

        # Leaving a reply half-read closes its stream; the client still works.
        fake_provider.script(tokens=[f"long{i} " for i in range(100)], hold_after=2)  # still running at the stop
        with client.send("a long one") as left:
            assert next(left)
        client.stop(left.conversation_id, left.assistant_message_id)

        with pytest.raises(StreamchatError) as refused:
            client.send("   ")
        assert (refused.value.status, refused.value.code) == (422, "validation_error")
        assert "message" in refused.value.detail
    assert client.loop.closed and not [t for t in threading.enumerate() if t.name == "streamchat-client"]


def test_a_ctrl_c_is_never_taken_by_the_blocking_clients_threads() -> None:
    """The kernel hands a process's SIGINT to any thread that does not block it; one taken by the loop's
    thread (or a worker it starts, as for a name lookup) would not wake the main thread from its wait
    for the next piece, so the Ctrl-C of `streamchat chat` would do nothing while a reply is held up."""
    async def blocked() -> list[bool]:
        def here() -> bool:
            return signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())
        return [here(), await anyio.to_thread.run_sync(here)]

    with SyncStreamchatClient("http://127.0.0.1:9") as client:
        assert client.loop.call(blocked) == [True, True]
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set()), "the main thread still takes it"
