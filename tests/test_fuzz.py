"""Bad input tried on purpose: Hypothesis-made garbage on the WebSocket, schemathesis on the HTTP API."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import orjson
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FakeProvider, Server
from helpers import Watcher, post_chat

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELD = st.one_of(JSON, st.sampled_from(["conversation", "__workbench", "nope", "", "log"]))
JOINISH = st.fixed_dictionaries(
    {"type": st.sampled_from(["join", "leave", "JOIN", "subscribe", 7])},
    optional={"data": st.one_of(JSON, st.fixed_dictionaries(
        {"streamName": FIELD, "groupId": FIELD}, optional={"id": FIELD, "delta": JSON, "subscriptionId": FIELD}))},
)
FRAMES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    # The standard library's encoder: it also writes what orjson refuses (integers past 64 bits).
    JSON.map(json.dumps),
    JOINISH.map(json.dumps),
    st.integers(min_value=70_000, max_value=200_000).map(lambda size: "x" * size),  # over the frame limit
)
REPLY = [f"calm{i} " for i in range(30)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(FRAMES, min_size=1, max_size=6))
def test_garbage_on_a_socket_gets_errors_or_a_clean_close_and_hurts_nobody_else(
    server: Server, fake_provider: FakeProvider, frames: list[Any],
) -> None:
    fake_provider.script(tokens=REPLY, delay=0.001)

    async def scenario() -> None:
        cid = str(uuid.uuid4())
        async with Watcher(server.ws_url, cid, deltas=True) as bystander:
            accepted = await post_chat(server.url, "a calm conversation", cid)
            socket = await websockets.connect(server.ws_url)
            closed = False
            for index, frame in enumerate(frames):
                # A well-formed leave is not answered, so each frame is followed by a probe that always
                # is (a join of a stream that does not exist): its answer shows the frame was handled.
                probe = f"probe-{index}"
                try:
                    await socket.send(frame)
                    await socket.send(orjson.dumps({"type": "join", "data": {"streamName": probe, "groupId": "g"}}))
                    while (reply := orjson.loads(await asyncio.wait_for(socket.recv(), 5))).get("streamName") != probe:
                        event = reply["event"]
                        assert event["type"] in ("error", "sync", "event", "create", "update", "delete"), reply
                        if event["type"] == "error":
                            assert event["error"]["code"] in (
                                "INVALID_MESSAGE", "STREAM_NOT_FOUND", "RATE_LIMITED", "TOO_MANY_JOINS"), reply
                except websockets.ConnectionClosed as error:
                    assert error.rcvd is not None and error.rcvd.code in (1009, 1013), error
                    closed = True
                    break
                assert reply["event"]["error"]["code"] == "STREAM_NOT_FOUND", reply
            if not closed:
                await socket.close()
            final = await bystander.until_finished(accepted["assistantMessageId"])
            assert (final["status"], final["message"]) == ("completed", "".join(REPLY))

    asyncio.run(scenario())
