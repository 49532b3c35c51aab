"""Plain Motia subscribers (whole items, no deltas) of a long streaming reply: how often they get it, and that
the last one is exact, over a compressed connection and over one without compression."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import orjson
import pytest
import websockets

from conftest import FakeProvider, InProcessStarter, ServerFactory
from helpers import post_chat, until
from streamchat.framework.streams.changes import Change
from streamchat.framework.streams.fanout import DEFLATE_REACH_BYTES, PLAIN_GROWTH, PLAIN_MAX_GAP_SECONDS

#: What a steady provider on a busy two-core machine may add to a gap: the send is a loop timer, so it
#: comes as late as the event loop is busy, and a piece must have come since the last send. The slack
#: is the gap itself: still a quarter of the one-second wait that plain subscribers had before.
SLACK_SECONDS = PLAIN_MAX_GAP_SECONDS


class ReplyFrames:
    """A hub subscriber keeping the Motia frames of the conversation's assistant item."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def push(self, change: Change) -> None:
        frame = orjson.loads(change.motia())
        data = frame["event"].get("data")
        if frame["event"]["type"] in ("create", "update") and data.get("from") == "assistant":
            self.frames.append(frame)

    def finished(self) -> bool:
        return bool(self.frames) and self.frames[-1]["event"]["data"]["status"] == "completed"

    def texts(self) -> list[str]:
        return [frame["event"]["data"]["message"] for frame in self.frames]


def script_long_slow_reply(fake_provider: FakeProvider) -> list[str]:
    """A long first piece, then slow growth: 5 characters every 20 ms, in all less than PLAIN_GROWTH of
    the text, so waiting for growth would leave a plain client a second behind."""
    tokens = ["x" * 12_000, *(f" w{i:03d}" for i in range(100))]
    fake_provider.script(tokens=tokens, delay=0.02)
    return tokens


async def test_plain_subscribers_of_a_long_reply_get_it_every_quarter_second_and_exact_at_the_end(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    tokens = script_long_slow_reply(fake_provider)
    server = await in_process()
    cid = str(uuid.uuid4())
    compressed, uncompressed = ReplyFrames(), ReplyFrames()
    await server.runtime.hub.subscribe(compressed, "conversation", cid)
    await server.runtime.hub.subscribe(uncompressed, "conversation", cid, compressed=False)
    await post_chat(server, "a long answer, please", cid)

    async def both_finished() -> bool:
        return compressed.finished() and uncompressed.finished()

    await until(both_finished, "the reply finishing for both plain subscribers")
    reply = "".join(tokens)
    for seen in (compressed, uncompressed):
        texts = seen.texts()
        assert texts[-1] == reply, "the last whole item is the reply, exactly"
        assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))

    # The server's frame timestamps (ms) say when each whole item went out, whatever the client does.
    sent = [frame["timestamp"] / 1000 for frame in compressed.frames if frame["event"]["data"]["message"]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert len(gaps) >= 6, f"a {len(tokens) * 0.02:.1f} s reply came in {len(sent)} whole items"
    assert max(gaps) <= PLAIN_MAX_GAP_SECONDS + SLACK_SECONDS, f"gaps between whole items: {gaps}"

    # Without compression every update costs the whole text: the text grows by less than PLAIN_GROWTH
    # after its first piece, so the first piece and the end are all such a subscriber gets (one more
    # only if the provider paused for PLAIN_QUIET_SECONDS).
    streaming = [text for text in uncompressed.texts()[:-1] if text]
    assert (len(reply) - len(tokens[0])) / len(tokens[0]) < PLAIN_GROWTH
    assert 1 <= len(streaming) <= 2, f"{len(streaming)} whole items while streaming, without compression"


async def test_the_reach_is_counted_in_bytes_so_a_reply_in_a_wider_script_is_not_sent_forty_times_a_second(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    # Fewer characters than the compressor reaches back in bytes, but three bytes each: out of its reach
    # from the start. The text then grows fast (over 1% a piece), which within reach is sent every 25 ms.
    tokens = ["語" * (DEFLATE_REACH_BYTES // 3 + 100), *("語" * 200 for _ in range(50))]
    fake_provider.script(tokens=tokens, delay=0.02)
    server = await in_process()
    cid = str(uuid.uuid4())
    seen = ReplyFrames()
    await server.runtime.hub.subscribe(seen, "conversation", cid)
    await post_chat(server, "an answer in Japanese", cid)

    async def finished() -> bool:
        return seen.finished()

    await until(finished, "the reply finishing")
    texts = [text for text in seen.texts() if text]
    assert texts[-1] == "".join(tokens)
    # ~1 s of pieces 20 ms apart: every 250 ms is ~6 whole items; on the 25 ms cadence it would be ~50.
    assert len(texts) <= 2 + (len(tokens) * 0.02) / PLAIN_MAX_GAP_SECONDS + 2, f"{len(texts)} whole items"


@pytest.mark.parametrize(("server_compresses", "client_offers", "compressed"), [
    (True, True, True), (True, False, False), (False, True, False)])
async def test_a_socket_is_paced_as_compressed_only_when_both_ends_use_permessage_deflate(
    servers: ServerFactory, fake_provider: FakeProvider, server_compresses: bool, client_offers: bool,
    compressed: bool,
) -> None:
    tokens = script_long_slow_reply(fake_provider)
    server = servers.start(STREAMCHAT_WS_COMPRESSION="on" if server_compresses else "off")
    cid = str(uuid.uuid4())
    async with websockets.connect(server.ws_url, compression="deflate" if client_offers else None) as socket:
        await socket.send(orjson.dumps({"type": "join", "data": {
            "streamName": "conversation", "groupId": cid, "subscriptionId": str(uuid.uuid4())}}).decode())
        assert orjson.loads(await socket.recv())["event"]["type"] == "sync"
        await post_chat(server.url, "a long answer, please", cid)
        texts: list[str] = []
        while not texts or texts[-1] != "".join(tokens):
            frame = orjson.loads(await asyncio.wait_for(socket.recv(), 30))
            data = frame["event"].get("data") or {}
            if frame["event"]["type"] in ("create", "update") and data.get("from") == "assistant" and data["message"]:
                texts.append(data["message"])
    # The reply lasts ~2 s: a compressed socket gets it every 250 ms, the other at its start and its end
    # (and once more only if the provider paused for PLAIN_QUIET_SECONDS).
    assert (len(texts) >= 6) if compressed else (len(texts) <= 3), f"{len(texts)} whole items"
