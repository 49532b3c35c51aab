"""Responses with tool calls resumed `starting_after` any event, calls' events included: live while the
reply runs (its model rounds held after their first piece) and after it ended, on the instance that
streams them and on another (Redis + PostgreSQL). The events must be the very ones the first stream had."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import Cluster, FakeProvider
from helpers import wait_for_status
from test_openai_tools import LOOP_TOOLS, assert_call_item, collect, same_event, sdk, stored_calls, types


async def read_until(stream: Any, stop: Any) -> list[Any]:
    """Events of a stream until (and with) the first for which `stop(event)`; the stream is closed then."""
    seen: list[Any] = []
    async for event in stream:
        seen.append(event)
        if stop(event):
            break
    await stream.close()
    return seen


async def test_streams_resume_exactly_after_any_event_live_and_on_another_instance(
    cluster: Cluster, fake_provider: FakeProvider,
) -> None:
    """Each round's model stream is held after its first piece: the responses are resumed there, with
    calls before and after, on the instance that streams them and on the other; once the reply has
    ended, every N of both responses resumes with exactly the events after N."""
    a, b = cluster.start_many(2, **LOOP_TOOLS)
    fake_provider.script(tool_calls=[[{"text": "Checking. "},
                                      {"name": "calculator", "arguments": {"expression": "6 * 7"}},
                                      {"name": "delete_file", "arguments": {"path": "/tmp/old.txt"}}],
                                     [{"text": "Now "}, {"name": "calculator", "arguments": {"expression": "1 + 1"}}]],
                         tokens=["Done", "."], argument_chunk=3, hold_after=1)
    async with sdk(a.url) as on_a, sdk(b.url) as on_b:
        opened = await on_a.responses.create(model="fake-model", input="tidy up", stream=True)
        head = await read_until(opened, lambda event: event.type == "response.output_text.delta")
        reply_id = head[0].response.id
        resumed = await asyncio.gather(*(client.responses.retrieve(
            reply_id, stream=True, starting_after=head[-1].sequence_number) for client in (on_a, on_b)))
        fake_provider.release_stream(0)
        tails = await asyncio.gather(*(collect(stream) for stream in resumed))
        first = [*head, *tails[0]]
        assert [same_event(e) for e in tails[0]] == [same_event(e) for e in tails[1]]
        assert [event.sequence_number for event in first] == list(range(len(first)))
        assert first[-1].type == "response.completed"
        request = next(item for item in first[-1].response.output if item.type == "mcp_approval_request")

        answer = [{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}]
        going_on = await on_b.responses.create(previous_response_id=reply_id, input=answer,  # type: ignore[arg-type]
                                               stream=True)
        head2 = await read_until(going_on, lambda event: event.type == "response.output_text.delta")
        assert "response.mcp_call.completed" in types(head2), "the approved call's events came before the hold"
        continuation = head2[0].response.id
        resumed = await asyncio.gather(*(client.responses.retrieve(
            continuation, stream=True, starting_after=head2[-1].sequence_number) for client in (on_a, on_b)))
        fake_provider.release_stream(1)
        await fake_provider.until_held(1)  # the last round, held after its first piece
        fake_provider.release()
        tails = await asyncio.gather(*(collect(stream) for stream in resumed))
        second = [*head2, *tails[0]]
        assert [same_event(e) for e in tails[0]] == [same_event(e) for e in tails[1]]
        assert [event.sequence_number for event in second] == list(range(len(second)))
        assert second[-1].type == "response.completed"
        assert "response.mcp_call.completed" in types(tails[0]), "the second round's call came after the hold"

        cid = first[-1].response.conversation.id
        reply = await wait_for_status(b.url, cid, reply_id)
        assert first[-1].response.output_text + second[-1].response.output_text == reply["message"]
        for whole, response_id in ((first, reply_id), (second, continuation)):
            expected = [same_event(event) for event in whole]
            for after in range(-1, len(whole)):
                client = (on_a, on_b)[after % 2]
                again = await collect(await client.responses.retrieve(response_id, stream=True,
                                                                      starting_after=after))
                assert [same_event(event) for event in again] == expected[after + 1:], (response_id, after)
        calls = await stored_calls(a.url, cid)
    assert [(call["name"], call["status"]) for call in calls] == [
        ("calculator", "completed"), ("delete_file", "completed"), ("calculator", "completed")]
    shown = [event.item for event in first + second if event.type == "response.output_item.done"
             and event.item.type == "mcp_call"]
    for item, call in zip(shown, calls, strict=True):
        assert_call_item(item, call, approval=call["name"] == "delete_file")
