"""Tool calls through the official `openai` SDK's Responses API: server-run calls as `mcp_call` items,
calls that wait for the user as `mcp_approval_request` items answered with `mcp_approval_response`
input, the responses one reply makes when approvals come in between (their exact resume, calls'
events included, is test_openai_tools_resume.py). Real server processes, the fake provider streaming
the calls in pieces, tool files from tests/loop_tools; every item the SDK reads is compared with the
call the conversation stored."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, get_args

import httpx
import openai
import orjson
import pytest
from openai import AsyncOpenAI
from openai.types.responses import Response, ResponseStreamEvent

from conftest import FakeProvider, Server, ServerFactory
from helpers import wait_for_status
from streamchat.conversations.messages import ConversationMessage
from streamchat.protocols.responses_items import approval_item, call_item
from streamchat.tools import Tool, ToolSet

TESTS = Path(__file__).parent
OPEN_MESSAGE = ["response.output_item.added", "response.content_part.added"]
CLOSE_MESSAGE = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
OPEN_CALL = ["response.output_item.added", "response.mcp_call.in_progress", "response.mcp_call_arguments.delta",
             "response.mcp_call_arguments.done"]
APPROVAL = ["response.output_item.added", "response.output_item.done"]
#: Each event type's class in the SDK, to validate an event as that class defines it.
EVENT_CLASSES = {get_args(kind.model_fields["type"].annotation)[0]: kind
                 for kind in get_args(get_args(ResponseStreamEvent)[0])}


#: The settings of a server that also has the tool files of tests/loop_tools.
LOOP_TOOLS = {"STREAMCHAT_TOOLS": "loop_tools",
              "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}


def sdk(url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


async def stored(url: str, cid: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        return list((await client.get(f"/api/conversations/{cid}")).raise_for_status().json()["messages"])


async def stored_calls(url: str, cid: str) -> list[dict[str, Any]]:
    return [message for message in await stored(url, cid) if message["from"] == "tool"]


async def collect(stream: Any) -> list[Any]:
    return [event async for event in stream]


def types(events: list[Any]) -> list[str]:
    return [event.type for event in events]


def same_event(event: Any) -> Any:
    """What makes an event the same event when streamed again: all of it, except the response object of
    the opening two (its status says how far the reply was when that stream began)."""
    if event.type in ("response.created", "response.in_progress"):
        return event.sequence_number, event.type, event.response.id
    return event.model_dump(mode="json")


async def validated(client: AsyncOpenAI, response_id: str) -> list[Any]:
    """The response's events, each validated as the SDK's type for it defines it (the SDK's own stream
    only constructs them, so a missing field would pass there unseen)."""
    raw = await client.responses.with_raw_response.retrieve(response_id, stream=True)
    lines = [line async for line in raw.http_response.aiter_lines() if line.startswith("data: ")]
    return [EVENT_CLASSES[data["type"]].model_validate(data)
            for data in (orjson.loads(line.removeprefix("data: ")) for line in lines)]


def dumped(items: list[Any]) -> list[Any]:
    """Output items as JSON, whichever SDK class read them (the stream helper's add `parsed: None`)."""
    return [item.model_dump(mode="json", exclude_none=True) for item in items]


def assert_call_item(item: Any, call: dict[str, Any], *, approval: bool = False) -> None:
    """An mcp_call item says what the stored call says."""
    assert item.type == "mcp_call" and item.id == f"mcp_{call['id']}"
    assert (item.server_label, item.name, item.arguments) == ("streamchat", call["name"], call["arguments"])
    assert item.approval_request_id == (call["id"] if approval else None)
    if call["status"] == "completed":
        assert item.status == "completed" and item.error is None
        assert item.output is not None and orjson.loads(item.output) == call["result"]
    else:
        assert item.status == ("incomplete" if call["status"] == "cancelled" else "failed") and item.output is None
        assert item.error is not None and item.error.type == "mcp_tool_execution_error"
        said = call.get("error") or "the call was cancelled"  # a stop ends a call without an error of its own
        assert item.error.content == [{"type": "text", "text": said}]


async def test_a_calculator_call_streams_as_an_mcp_call_item_equal_to_the_stored_call(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    server = servers.start(**LOOP_TOOLS)
    fake_provider.script(tool_calls=[[{"text": "Let me work it out. "},
                                      {"name": "calculator", "arguments": {"expression": "2 + 3 * 4"}}]],
                         tokens=["It", " is", " 14."], argument_chunk=4)
    async with sdk(server.url) as client:
        events = await collect(await client.responses.create(model="fake-model", input="2 + 3 * 4?", stream=True))
        final = events[-1].response
        assert final.conversation is not None
        cid = final.conversation.id
        [call] = await stored_calls(server.url, cid)
        retrieved = await client.responses.retrieve(final.id)
        strict = await validated(client, final.id)
        plain = (await client.responses.with_raw_response.retrieve(final.id)).http_response.json()
        assert Response.model_validate(plain).output == final.output
        # The SDK's own stream helper accumulates the same events into the same response.
        fake_provider.script(tool_calls=[[{"text": "Again. "},
                                          {"name": "calculator", "arguments": {"expression": "1 + 1"}}]],
                             tokens=["Two."])
        async with client.responses.stream(model="fake-model", input="1 + 1?") as helper:
            helped = [event async for event in helper]
            accumulated = await helper.get_final_response()

    assert types(events) == [
        "response.created", "response.in_progress", *OPEN_MESSAGE, *["response.output_text.delta"] * 6,
        *CLOSE_MESSAGE, *OPEN_CALL, "response.mcp_call.completed", "response.output_item.done",
        *OPEN_MESSAGE, *["response.output_text.delta"] * 3, *CLOSE_MESSAGE, "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    reply = next(message for message in await stored(server.url, cid) if message["id"] == final.id)
    assert call["parentId"] == final.id and call["status"] == "completed"
    assert call["result"] == {"expression": "2 + 3 * 4", "result": 14}
    first, item, second = final.output
    assert (first.type, second.type) == ("message", "message") and first.id != second.id
    assert_call_item(item, call)
    done = next(event.item for event in events if event.type == "response.output_item.done" and
                event.item.type == "mcp_call")
    assert done == item
    delta = next(event for event in events if event.type == "response.mcp_call_arguments.delta")
    assert (delta.item_id, delta.output_index, delta.delta) == (item.id, 1, call["arguments"])
    assert final.output_text == reply["message"] == "Let me work it out. It is 14."
    assert final.status == "completed" and final.usage is not None
    assert final.usage.output_tokens == reply["usage"]["completionTokens"]
    assert retrieved.output == final.output and retrieved.status == "completed"
    assert [event.type for event in strict] == types(events) and strict[-1].response.output == final.output
    assert helped[-1].type == "response.completed"
    assert accumulated.output_text == "Again. Two." and [entry.type for entry in accumulated.output] == [
        "message", "mcp_call", "message"]


async def test_calls_that_fail_end_as_failed_items_in_the_order_the_model_made_them(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    server = servers.start(**LOOP_TOOLS)
    fake_provider.script(tool_calls=[[{"name": "slow_wait", "arguments": {"seconds": 0.3}},
                                      {"name": "calculator", "arguments": {"expression": "1 / 0"}},
                                      {"name": "weather", "arguments": {"city": "Oslo"}},
                                      {"name": "calculator", "arguments": '{"expression": "2*'}]],
                         tokens=["Sorry."], argument_chunk=3)
    async with sdk(server.url) as client:
        events = await collect(await client.responses.create(model="fake-model", input="try", stream=True))
        assert types(await validated(client, events[-1].response.id)) == types(events)
    final = events[-1].response
    assert final.conversation is not None
    calls = await stored_calls(server.url, final.conversation.id)
    assert [(call["name"], call["status"]) for call in calls] == [
        ("slow_wait", "completed"), ("calculator", "error"), ("weather", "error"), ("calculator", "error")]
    # Every call opens in the order made, then each ends in that order, the slow one first.
    assert types(events)[2:-1] == [*OPEN_CALL * 4, *["response.mcp_call.completed", "response.output_item.done"],
                                   *["response.mcp_call.failed", "response.output_item.done"] * 3,
                                   *OPEN_MESSAGE, "response.output_text.delta", *CLOSE_MESSAGE]
    for item, call in zip(final.output[:4], calls, strict=True):
        assert_call_item(item, call)
    assert final.output_text == "Sorry." and final.status == "completed"


async def approval_turn(client: AsyncOpenAI, server: Server) -> tuple[list[Any], str, dict[str, Any]]:
    """A reply whose first round calls the calculator and delete_file (which waits for approval): the
    events of its first response (read by the SDK's stream helper), the conversation, and the waiting call."""
    async with client.responses.stream(model="fake-model", input="tidy up") as stream:
        events = await collect(stream)
        final = await stream.get_final_response()
    assert final.conversation is not None and dumped(final.output) == dumped(events[-1].response.output)
    cid = final.conversation.id
    waiting = [call for call in await stored_calls(server.url, cid) if call["status"] == "awaiting_approval"]
    assert len(waiting) == 1
    return events, cid, waiting[0]


APPROVAL_SCRIPT: dict[str, Any] = {
    "tool_calls": [[{"text": "Checking. "}, {"name": "calculator", "arguments": {"expression": "6 * 7"}},
                    {"name": "delete_file", "arguments": {"path": "/tmp/old.txt"}}]],
    "tokens": ["Done", "."], "argument_chunk": 3}


async def test_an_approval_request_ends_the_response_and_an_approval_continues_the_reply(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    server = servers.start(**LOOP_TOOLS)
    fake_provider.script(**APPROVAL_SCRIPT)
    async with sdk(server.url) as client:
        events, cid, waiting = await approval_turn(client, server)
        first = events[-1].response
        assert types(events)[2:] == [*OPEN_MESSAGE, *["response.output_text.delta"] * 2, *CLOSE_MESSAGE,
                                     *OPEN_CALL, *APPROVAL, "response.mcp_call.completed",
                                     "response.output_item.done", "response.completed"]
        message, calculated, request = first.output
        assert first.status == "completed" and message.type == "message"
        assert request.type == "mcp_approval_request" and request.id == waiting["id"]
        assert (request.server_label, request.name, request.arguments) == (
            "streamchat", "delete_file", waiting["arguments"])
        reply_id = first.id
        assert dumped((await client.responses.retrieve(reply_id)).output) == dumped(first.output)

        answer = [{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}]
        going_on = await collect(await client.responses.create(
            model="fake-model", previous_response_id=reply_id, input=answer, stream=True))  # type: ignore[arg-type]
        second = going_on[-1].response
        reply = await wait_for_status(server.url, cid, reply_id)
        calls = await stored_calls(server.url, cid)
        retrieved = await client.responses.retrieve(second.id)
        assert types(await validated(client, reply_id)) == types(events)
        assert types(await validated(client, second.id)) == types(going_on)
        with pytest.raises(openai.ConflictError):  # answered already
            await client.responses.create(previous_response_id=reply_id, input=answer)  # type: ignore[arg-type]

    assert_call_item(calculated, calls[0])
    assert types(going_on) == ["response.created", "response.in_progress", *OPEN_CALL, "response.mcp_call.completed",
                               "response.output_item.done", *OPEN_MESSAGE, *["response.output_text.delta"] * 2,
                               *CLOSE_MESSAGE, "response.completed"]
    assert second.id == f"{reply_id}.a0" and second.previous_response_id == reply_id
    assert second.conversation is not None and second.conversation.id == cid
    ran, said = second.output
    assert calls[1]["status"] == "completed" and calls[1]["result"] == {"deleted": "/tmp/old.txt"}
    assert_call_item(ran, calls[1], approval=True)
    assert first.output_text + second.output_text == reply["message"] == "Checking. Done."
    assert said.type == "message" and second.status == "completed" and second.usage is not None
    assert retrieved.output == second.output and retrieved.status == "completed"


async def test_a_denial_continues_the_reply_with_the_call_failed(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    server = servers.start(**LOOP_TOOLS)
    fake_provider.script(**APPROVAL_SCRIPT)
    async with sdk(server.url) as client:
        events, cid, waiting = await approval_turn(client, server)
        reply_id = events[-1].response.id
        answer = [{"type": "mcp_approval_response", "approval_request_id": waiting["id"], "approve": False,
                   "reason": "keep it"}]
        second = await client.responses.create(previous_response_id=reply_id, input=answer)  # type: ignore[arg-type]
    calls = await stored_calls(server.url, cid)
    assert calls[1]["status"] == "denied" and calls[1]["error"] == "denied by the user: keep it"
    denied, said = second.output
    assert_call_item(denied, calls[1], approval=True)
    assert second.status == "completed" and said.content[0].text == "Done."  # type: ignore[union-attr]
    told = [message for message in fake_provider.requests()[-1]["messages"] if message["role"] == "tool"]
    assert told[1] == {"role": "tool", "tool_call_id": calls[1]["toolCallId"], "content": calls[1]["error"]}


async def test_approval_answers_are_checked(servers: ServerFactory, fake_provider: FakeProvider) -> None:
    server = servers.start(**LOOP_TOOLS)
    fake_provider.script(tool_calls=[[{"name": "delete_file", "arguments": {"path": "/a"}},
                                      {"name": "delete_file", "arguments": {"path": "/b"}}]], tokens=["Ok."])
    async with sdk(server.url) as client:
        first = await client.responses.create(model="fake-model", input="both")  # waits for the approval requests
        assert first.status == "completed"
        requests = [item.id for item in first.output if item.type == "mcp_approval_request"]
        assert len(requests) == 2

        def answer(request_id: str, approve: bool = True) -> dict[str, Any]:
            return {"type": "mcp_approval_response", "approval_request_id": request_id, "approve": approve}

        cases: list[tuple[dict[str, Any], str]] = [
            ({"input": [answer(requests[0])]}, "previous_response_id"),
            ({"input": [answer(requests[0])], "previous_response_id": first.id}, "input"),  # one left out
            ({"input": [answer("nope"), answer(requests[1])], "previous_response_id": first.id},
             "input[0].approval_request_id"),
            ({"input": [answer(requests[0]), answer(requests[1]), {"role": "user", "content": "hi"}],
              "previous_response_id": first.id}, "input"),
            ({"input": [answer(requests[0]), answer(requests[1])], "previous_response_id": first.id,
              "temperature": 0.5}, "temperature"),
            ({"input": [{"type": "mcp_approval_response", "approval_request_id": requests[0]}],
              "previous_response_id": first.id}, "input"),
        ]
        for body, param in cases:
            with pytest.raises(openai.BadRequestError) as refused:
                await client.responses.create(**body)
            assert getattr(refused.value.body, "get", dict().get)("param") == param, (body, refused.value.body)
        assert "input[0].approve" in refused.value.message
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(f"{first.id}.a7")
        assert (await client.responses.retrieve(first.id)).status == "completed"
        both = await client.responses.create(previous_response_id=first.id, input=[
            answer(requests[0]), answer(requests[1], approve=False)])  # type: ignore[list-item]
    assert [item.status for item in both.output[:2]] == ["completed", "failed"]
    assert both.output_text == "Ok."


async def test_a_reply_with_two_rounds_of_approvals_is_three_responses_in_a_row(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    server = servers.start(**LOOP_TOOLS)
    fake_provider.script(tool_calls=[[{"text": "One. "}, {"name": "delete_file", "arguments": {"path": "/1"}}],
                                     [{"text": "Two. "}, {"name": "delete_file", "arguments": {"path": "/2"}}]],
                         tokens=["Three."])
    async with sdk(server.url) as client:
        first = await client.responses.create(model="fake-model", input="twice")
        assert first.conversation is not None
        cid, reply_id = first.conversation.id, first.id
        # The next stretch exists before it is asked for: it shows the call waiting, in progress.
        waiting = await client.responses.retrieve(f"{reply_id}.a0")
        assert waiting.status == "in_progress" and waiting.previous_response_id == reply_id
        assert [(item.type, item.status) for item in waiting.output] == [("mcp_call", "in_progress")]

        def approve(response: Any) -> list[Any]:
            [request] = [item for item in response.output if item.type == "mcp_approval_request"]
            return [{"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}]

        second = await client.responses.create(previous_response_id=first.id, input=approve(first))
        third = await client.responses.create(previous_response_id=second.id, input=approve(second))
        reply = await wait_for_status(server.url, cid, reply_id)
    calls = await stored_calls(server.url, cid)
    assert (second.id, third.id) == (f"{reply_id}.a0", f"{reply_id}.a1")
    assert (second.previous_response_id, third.previous_response_id) == (reply_id, second.id)
    assert [item.type for item in first.output] == ["message", "mcp_approval_request"]
    assert [item.type for item in second.output] == ["mcp_call", "message", "mcp_approval_request"]
    assert [item.type for item in third.output] == ["mcp_call", "message"]
    assert_call_item(second.output[0], calls[0], approval=True)
    assert_call_item(third.output[0], calls[1], approval=True)
    assert first.usage is None and second.usage is None and third.usage is not None
    assert first.output_text + second.output_text + third.output_text == reply["message"] == "One. Two. Three."


async def test_cancelling_a_reply_that_waits_for_approval_ends_its_call_and_its_next_response(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    server = servers.start(**LOOP_TOOLS)
    fake_provider.script(**APPROVAL_SCRIPT)
    async with sdk(server.url) as client:
        events, cid, _ = await approval_turn(client, server)
        reply_id = events[-1].response.id
        cancelled = await client.responses.cancel(f"{reply_id}.a0")
        replayed = await validated(client, f"{reply_id}.a0")
        first = await client.responses.retrieve(reply_id)
    calls = await stored_calls(server.url, cid)
    assert calls[1]["status"] == "cancelled"
    assert cancelled.status == "cancelled" and [item.type for item in cancelled.output] == ["mcp_call"]
    assert_call_item(cancelled.output[0], calls[1], approval=True)
    assert types(replayed) == ["response.created", "response.in_progress", *OPEN_CALL, "response.mcp_call.failed",
                               "response.output_item.done", "response.incomplete"]
    assert replayed[-1].response.output == cancelled.output
    assert first.status == "completed", "the first response ended with its approval request"


def test_an_mcp_servers_tool_is_shown_on_its_server_under_its_own_name() -> None:
    async def handler(args: Any, ctx: Any) -> None:
        return None

    def tool(name: str, source: str) -> Tool:
        return Tool(name=name, description="", parameters={"type": "object"}, handler=handler, source=source,
                    origin=source)

    tools = ToolSet([tool("files__read", "mcp:files"), tool("my__tool", "file"), tool("calculator", "builtin")])
    for name, label in (("files__read", ("files", "read")), ("my__tool", ("streamchat", "my__tool")),
                        ("calculator", ("streamchat", "calculator")), ("gone__tool", ("streamchat", "gone__tool"))):
        call = ConversationMessage.model_validate({"from": "tool", "message": "", "status": "completed", "name": name,
                                                   "arguments": "{}", "result": {"b": 1, "a": 2},
                                                   "timestamp": "2026-01-01T00:00:00.000Z"})
        item = call_item(tools, "r.t0.0", call, approval=False, arguments="{}", ended=True)
        assert (item["server_label"], item["name"]) == label
        assert item["output"] == '{"a":2,"b":1}', "keys sorted: the same text whichever store kept the result"
        request = approval_item(tools, "r.t0.0", call)
        assert (request["server_label"], request["name"]) == label
