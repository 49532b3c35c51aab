"""The contract of the AI SDK's tool chunks, in process (the real fake provider, tests/loop_tools):
only the fields `ai` 5.0.0 defines without the version header, the header itself, an `ai` 6 stream
ending at an approval (and its resume), the answer streaming the rest, an approval given elsewhere,
a stop, and approval answers that name nothing. The published clients are in test_ai_sdk_tools.py.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from conftest import FakeProvider, InProcessStarter
from test_ai_sdk import chat_id
from test_ai_sdk_tools import DELETE_ROUNDS
from test_tool_loop import until_call

#: The fields `ai` 5.0.0 defines for each chunk this server sends (its parser refuses any other).
AI_5_0_0_FIELDS = {
    "start": {"type", "messageId", "messageMetadata"}, "finish": {"type", "messageMetadata"},
    "start-step": {"type"}, "finish-step": {"type"}, "message-metadata": {"type", "messageMetadata"},
    "text-start": {"type", "id"}, "text-delta": {"type", "id", "delta"}, "text-end": {"type", "id"},
    "error": {"type", "errorText"}, "abort": {"type"},
    "tool-input-start": {"type", "toolCallId", "toolName"},
    "tool-input-delta": {"type", "toolCallId", "inputTextDelta"},
    "tool-input-available": {"type", "toolCallId", "toolName", "input"},
    "tool-output-available": {"type", "toolCallId", "output"},
    "tool-output-error": {"type", "toolCallId", "errorText"},
}


def joined_up(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chunks with each run of deltas as one (how a text was split is not part of the contract)."""
    joined: list[dict[str, Any]] = []
    for chunk in chunks:
        previous = joined[-1] if joined else {}
        grows = {"text-delta": "delta", "tool-input-delta": "inputTextDelta"}.get(chunk["type"])
        if grows and previous.get("type") == chunk["type"]:
            joined[-1] = {**previous, grows: previous[grows] + chunk[grows]}
        else:
            joined.append(chunk)
    return joined


def ui_body(chat: str, text: str = "hi") -> dict[str, Any]:
    return {"id": chat, "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": text}]}],
            "trigger": "submit-message"}


def chunks_of(body: str) -> list[dict[str, Any]]:
    assert body.rstrip().endswith("data: [DONE]"), body[-300:]
    return [json.loads(frame.removeprefix("data: ")) for frame in body.split("\n\n") if frame.startswith("data: {")]


async def test_without_the_version_header_every_chunk_is_one_ai_5_0_0_reads(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_TOOLS="loop_tools")
    fake_provider.script(tool_calls=[[{"text": "Two. "}, {"name": "calculator", "arguments": {"expression": "1+1"}},
                                      {"name": "calculator", "arguments": "not json"}],
                                     [{"name": "nope", "arguments": {}}]],
                         tokens=["Done."], argument_chunk=3)
    async with server.client() as client:
        response = await client.post("/api/chat", json=ui_body("fields1"))
    assert response.status_code == 200
    chunks = chunks_of(response.text)
    for chunk in chunks:
        assert set(chunk) <= AI_5_0_0_FIELDS[chunk["type"]], chunk
    inputs = [chunk["input"] for chunk in chunks if chunk["type"] == "tool-input-available"]
    assert inputs == [{"expression": "1+1"}, "not json", {}]
    ids = [chunk["toolCallId"] for chunk in chunks if chunk["type"] == "tool-input-start"]
    assert len(set(ids)) == 3 and all(call_id.startswith(chunks[0]["messageId"] + ".t") for call_id in ids)
    # three rounds, three steps: the second round's call opens a step of its own
    assert [chunk["type"] for chunk in chunks].count("start-step") == 3


@pytest.mark.parametrize(("header", "status"), [("6", 200), ("7.0.185", 200), ("v6.1", 200), ("six", 422),
                                                 ("", 422)])
async def test_the_version_header_is_a_version_or_422_naming_it(
    in_process: InProcessStarter, header: str, status: int,
) -> None:
    server = await in_process()
    async with server.client() as client:
        response = await client.post("/api/chat", json=ui_body(chat_id()), headers={"X-AI-SDK-Version": header})
        resumed = await client.get(f"/api/chat/{chat_id()}/stream", headers={"X-AI-SDK-Version": header})
    assert response.status_code == status, response.text
    assert resumed.status_code == (204 if status == 200 else status)
    if status == 422:
        assert "X-AI-SDK-Version" in response.json()["detail"]


def answering(chat: str, call_id: str, approved: bool = True, state: str = "approval-responded") -> dict[str, Any]:
    part = {"type": "tool-delete_file", "toolCallId": call_id, "state": state, "input": {"path": "/x"},
            "approval": {"id": call_id, "approved": approved}}
    return {"id": chat, "trigger": "submit-message", "messageId": "r1",
            "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]},
                         {"id": "r1", "role": "assistant", "parts": [{"type": "step-start"}, part]}]}


async def test_approval_answers_naming_no_call_of_the_chat_are_404_naming_the_field(
    in_process: InProcessStarter,
) -> None:
    server = await in_process(STREAMCHAT_TOOLS="loop_tools")
    async with server.client() as client:
        assert (await client.post("/api/chat", json=ui_body("answers1"))).status_code == 200
        response = await client.post("/api/chat", json=answering("answers1", "no-such-call"),
                                     headers={"X-AI-SDK-Version": "6"})
        assert response.status_code == 404, response.text
        assert "messages[1].parts[1].approval.id" in response.json()["detail"]
        # an assistant message that answers nothing is no message to send
        unanswered = await client.post("/api/chat", json=answering("answers1", "x", state="approval-requested"))
        assert unanswered.status_code == 422 and "messages" in unanswered.json()["detail"]


async def test_an_ai_6_stream_ends_at_the_approval_a_resume_ends_there_too_and_the_answer_streams_the_rest(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_TOOLS="loop_tools")
    fake_provider.script(tool_calls=DELETE_ROUNDS, tokens=["Deleted", "."], argument_chunk=4)
    six = {"X-AI-SDK-Version": "6"}
    async with server.client(headers=six) as client:
        sent = chunks_of((await client.post("/api/chat", json=ui_body("pause1"))).text)
        resumed = chunks_of((await client.get("/api/chat/pause1/stream")).text)
        [request] = [chunk for chunk in sent if chunk["type"] == "tool-approval-request"]
        assert sent[-3:] == [request, {"type": "finish-step"}, {"type": "finish", "finishReason": "tool-calls"}]
        # the reply waits: a reconnect gets the same (its text in one piece), up to the same approval request
        assert joined_up(resumed) == joined_up(sent)
        call_id = request["toolCallId"]
        assert request == {"type": "tool-approval-request", "approvalId": call_id, "toolCallId": call_id}
        answer = answering("pause1", call_id)
        answer["messages"][1]["parts"].insert(1, {"type": "text", "text": "Deleting it. ", "state": "done"})
        rest = chunks_of((await client.post("/api/chat", json=answer)).text)
    assert [chunk["type"] for chunk in rest] == ["start", "tool-output-available", "finish-step", "start-step",
                                                 "text-start", "text-delta", "text-delta", "text-end", "finish-step",
                                                 "message-metadata", "finish"]
    assert rest[0]["messageId"] == sent[0]["messageId"]
    assert rest[1] == {"type": "tool-output-available", "toolCallId": call_id, "output": {"deleted": "/tmp/old.txt"}}
    assert "".join(chunk["delta"] for chunk in rest if chunk["type"] == "text-delta") == "Deleted."


async def test_without_the_header_the_stream_waits_through_an_approval_given_elsewhere(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    # ai 5 cannot answer an approval: its stream shows the call waiting (input available) until someone
    # answers on another route (the page), then its outcome and the rest of the reply.
    server = await in_process(STREAMCHAT_TOOLS="loop_tools")
    fake_provider.script(tool_calls=DELETE_ROUNDS, tokens=["Deleted", "."], argument_chunk=4)
    async with server.client() as client:
        streaming = asyncio.create_task(client.post("/api/chat", json=ui_body("elsewhere1")))
        [waiting] = await until_call(server, "elsewhere1", "awaiting_approval")
        assert (await client.post(f"/api/conversations/elsewhere1/messages/{waiting['id']}/approve")).status_code == 200
        chunks = chunks_of((await asyncio.wait_for(streaming, 30)).text)
    for chunk in chunks:
        assert set(chunk) <= AI_5_0_0_FIELDS[chunk["type"]], chunk
    kinds = [chunk["type"] for chunk in chunks]
    assert kinds.index("tool-input-available") < kinds.index("tool-output-available") < kinds.index("finish")
    assert chunks[-2]["messageMetadata"]["status"] == "completed"


async def test_a_stopped_reply_ends_its_running_call_in_the_stream_too(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    # The stop writes the reply's end first and the call's just after (once its handler has wound
    # up): the stream waits for the call's, so no client is left showing a call that never ends.
    server = await in_process(STREAMCHAT_TOOLS="loop_tools")
    fake_provider.script(tool_calls=[[{"text": "Waiting. "}, {"name": "slow_wait", "arguments": {"seconds": 30}}]],
                         tokens=["never"])
    async with server.client() as client:
        streaming = asyncio.create_task(client.post("/api/chat", json=ui_body("stopped1")))
        [running] = await until_call(server, "stopped1", "running")
        stopped = await client.post(f"/api/conversations/stopped1/messages/{running['parentId']}/stop")
        assert stopped.status_code == 202, stopped.text
        chunks = chunks_of((await asyncio.wait_for(streaming, 30)).text)
    assert [chunk["type"] for chunk in chunks][-6:] == ["tool-input-available", "tool-output-error", "finish-step",
                                                        "abort", "message-metadata", "finish"]
    assert chunks[-5] == {"type": "tool-output-error", "toolCallId": running["id"],
                          "errorText": "the call was cancelled"}
    assert chunks[-2]["messageMetadata"]["status"] == "stopped"
