"""Following a reply and its tool calls from inside the server (what the AI SDK and Responses views
read): live from the start and joined mid-reply, both lay out the same text and calls in the same
order and end with the calls as stored. In-process, the real fake provider, tests/loop_tools."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import FakeProvider, InProcessStarter
from helpers import InProcessServer, wait_for_status
from streamchat.framework import Quiet
from streamchat.protocols.turn import CallArguments, CallChanged, CallShown, FollowedTurn
from test_tool_loop import messages, send, until_call


class Layout:
    """A view's reading of a turn: text runs and calls in the order they came, each call's last state."""

    def __init__(self) -> None:
        self.order: list[tuple[str, str]] = []
        self.calls: dict[str, dict[str, Any]] = {}

    def take(self, event: object) -> None:
        if isinstance(event, str):
            if self.order and self.order[-1][0] == "text":
                self.order[-1] = ("text", self.order[-1][1] + event)
            else:
                self.order.append(("text", event))
        elif isinstance(event, CallShown):
            self.order.append(("call", event.call_id))
            self.calls[event.call_id] = event.call.model_dump(by_alias=True, exclude_none=True)
        elif isinstance(event, CallArguments):
            self.calls[event.call_id]["arguments"] += event.piece
        elif isinstance(event, CallChanged):
            self.calls[event.call_id] = event.call.model_dump(by_alias=True, exclude_none=True)
        else:
            assert isinstance(event, Quiet), event


async def read(server: InProcessServer, cid: str, reply_id: str) -> tuple[Layout, FollowedTurn]:
    turn = FollowedTurn(server.runtime.context("test", (), "follow"), cid, reply_id)
    layout = Layout()
    async for event in turn.events():
        layout.take(event)
    return layout, turn


async def test_a_turn_read_live_and_one_joined_mid_reply_lay_out_the_same_text_and_calls(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_TOOLS="loop_tools")
    fake_provider.script(tool_calls=[[{"text": "First "}, {"name": "calculator", "arguments": {"expression": "1+1"}},
                                      {"name": "delete_file", "arguments": {"path": "/tmp/t"}}],
                                     [{"text": "then "}, {"name": "calculator", "arguments": {"expression": "2+2"}}]],
                         tokens=["last."], argument_chunk=2, hold_after=1)
    sent = await send(server, "turn")
    cid, reply_id = sent["conversationId"], sent["assistantMessageId"]
    await fake_provider.until_held()
    live = asyncio.create_task(read(server, cid, reply_id))
    await asyncio.sleep(0.05)  # a head start is all this needs: it joins before the release either way
    fake_provider.release()
    [waiting] = await until_call(server, cid, "awaiting_approval")
    joined = asyncio.create_task(read(server, cid, reply_id))
    await asyncio.sleep(0.05)
    async with server.client() as client:
        assert (await client.post(f"/api/conversations/{cid}/messages/{waiting['id']}/approve")).status_code == 200
    await wait_for_status(server, cid, reply_id)
    (live_layout, live_turn), (joined_layout, joined_turn) = await asyncio.wait_for(asyncio.gather(live, joined), 30)

    stored = await messages(server, cid)
    calls = [message for message in stored if message["from"] == "tool"]
    expected_order = [("text", "First "), ("call", calls[0]["id"]), ("call", calls[1]["id"]), ("text", "then "),
                      ("call", calls[2]["id"]), ("text", "last.")]
    for layout in (live_layout, joined_layout):
        assert layout.order == expected_order
        for call in calls:
            shown = {key: value for key, value in call.items() if key not in ("id", "seq", "siblings", "siblingIndex")}
            assert layout.calls[call["id"]] == shown
    assert live_turn.end is not None and joined_turn.end is not None
    assert live_turn.end.message is not None and live_turn.end.message.status == "completed"
