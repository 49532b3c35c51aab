"""Tools that run in the client, through the Vercel AI SDK: `ai` 5.0.0, the latest 5.x, 6.x and 7.x (7
on Node 22) drive a real server process. The chat sends its tool's definition in the transport's
`body` (`clientTools`; or names a models-file client tool in `tools`), the stream stops at the call's
`tool-input-available`, the chat's `onToolCall` runs the tool and gives its output (addToolResult in
`ai` 5, addToolOutput in 6 and 7), `sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls`
sends it back, and the reply goes on in the same message. Each UI message the SDK assembled is compared
with what the server stored (tests/ai_sdk_client/client_tools.mjs drives the SDK). The contract's
refusals are checked in process at the end."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from conftest import FakeProvider, InProcessStarter, Server, ServerFactory
from test_ai_sdk import chat_id, node_for
from test_ai_sdk_tools import EVERY, SPEAKS, compared, expected_parts, reply_and_calls, squeezed, stored, system_node
from test_client_tools import client_tools_file
from test_tool_clients import with_loop_tools
from test_tool_loop import tool_messages

CLIENT_DIR = Path(__file__).parent / "ai_sdk_client"
GET_LOCATION = {"name": "get_location", "description": "Where the user is, as the browser knows it.",
                "parameters": {"type": "object", "properties": {"accuracy": {"type": "string"}},
                               "required": ["accuracy"]}}
LYON = {"city": "Lyon", "country": "FR"}
ASK = [[{"text": "Let me look. "}, {"name": "get_location", "arguments": {"accuracy": "city"}}]]
PAUSED = ["start", "start-step", "text-start", "text-delta", "text-end", "tool-input-start", "tool-input-delta",
          "tool-input-available", "finish-step", "finish"]
GOES_ON = ["start", "finish-step", "start-step", "text-start", "text-delta", "text-end", "finish-step",
           "message-metadata", "finish"]


@pytest.fixture(scope="module")
def tool_server(fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server process for the module: the loop tools, and a models file with the client tool
    `pick_color` (the clients connect over the network)."""
    folder = tmp_path_factory.mktemp("ai-sdk-client-tools")
    factory = ServerFactory(fake_provider, folder)
    yield factory.start(**with_loop_tools(), STREAMCHAT_MODELS_FILE=str(client_tools_file(folder, fake_provider)))
    factory.stop_all()


async def drive(client: str, scenario: str, url: str, chat: str, text: str = "hello", *,
                tools: list[dict[str, Any]] | None = None, body: dict[str, Any] | None = None,
                outputs: dict[str, Any] | None = None, errors: dict[str, str] | None = None) -> dict[str, Any]:
    """Run client_tools.mjs; its result."""
    assert (CLIENT_DIR / "node_modules" / client / "package.json").is_file(), "run ./scripts/test (npm ci)"
    speaks = SPEAKS[client]
    env = {**os.environ, "CLIENT_TOOLS": json.dumps(tools or []), "BODY": json.dumps(body or {}),
           "OUTPUTS": json.dumps(outputs or {}), "ERRORS": json.dumps(errors or {}),
           **({"AI_SDK_VERSION": speaks} if speaks else {})}
    process = await asyncio.create_subprocess_exec(
        node_for(client, system_node()), "client_tools.mjs", client, scenario, url, chat, text, cwd=CLIENT_DIR,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=2**24)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    lines = stdout.decode().splitlines()
    assert lines, f"no output from client_tools.mjs: {stderr.decode()}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert process.returncode == 0, (result, stderr.decode())
    return result


def tool_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [part for part in message["parts"] if part["type"].startswith("tool-")]


@pytest.mark.parametrize("client", EVERY)
async def test_a_tool_without_execute_is_run_by_the_chat_and_the_reply_goes_on_in_the_same_message(
    client: str, tool_server: Server, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tool_calls=ASK, tokens=["You are ", "in Lyon."], argument_chunk=4)
    chat = chat_id()
    result = await drive(client, "send", tool_server.url, chat, "where am I?", tools=[GET_LOCATION],
                         outputs={"get_location": LYON})
    messages = await stored(tool_server.url, chat)
    reply, [call] = reply_and_calls(messages)
    assert (reply["status"], reply["message"]) == ("completed", "Let me look. You are in Lyon.")
    assert (call["name"], call["status"], call["result"]) == ("get_location", "completed", LYON)
    assert result["calls"] == [{"toolName": "get_location", "toolCallId": call["id"], "input": {"accuracy": "city"}}]
    [user, assistant] = result["messages"]
    assert user["role"] == "user" and assistant["id"] == reply["id"]
    assert compared(assistant["parts"]) == expected_parts(messages, client)
    assert assistant["metadata"]["status"] == "completed"
    first, second = result["chunks"]
    assert squeezed(first) == PAUSED, "the stream stops at the call the client runs"
    assert squeezed(second) == GOES_ON, "the output goes back and the same message goes on"
    [_, again] = result["sent"]
    assert again["trigger"] == "submit-message" and again["last"]["id"] == reply["id"]
    assert [(part["state"], part["output"]) for part in tool_parts(again["last"])] == [("output-available", LYON)]
    requests = fake_provider.requests()
    offered = next(tool["function"] for tool in requests[0]["tools"] if tool["function"]["name"] == "get_location")
    assert offered["parameters"] == GET_LOCATION["parameters"]
    said = tool_messages(requests[-1])
    assert orjson.loads(said[-1]["content"]) == LYON


@pytest.mark.parametrize("client", ["ai-5.0.0", "ai-6", "ai-7"])
async def test_a_round_mixing_client_and_server_calls_stops_once_the_servers_have_ended_each_round_in_turn(
    client: str, tool_server: Server, fake_provider: FakeProvider,
) -> None:
    # Round 0: the client's call and the calculator (run here); round 1: the client's call again. The
    # chat sends its output once per round; one reply, one message, three responses.
    fake_provider.script(tool_calls=[[{"text": "Checking. "},
                                      {"name": "get_location", "arguments": {"accuracy": "city"}},
                                      {"name": "calculator", "arguments": {"expression": "6 * 7"}}],
                                     [{"text": "Once more. "},
                                      {"name": "get_location", "arguments": {"accuracy": "street"}}]],
                         tokens=["All", " done."], argument_chunk=5)
    chat = chat_id()
    result = await drive(client, "send", tool_server.url, chat, "check twice", tools=[GET_LOCATION],
                         outputs={"get_location": LYON})
    messages = await stored(tool_server.url, chat)
    reply, calls = reply_and_calls(messages)
    assert (reply["status"], reply["message"]) == ("completed", "Checking. Once more. All done.")
    assert [(call["name"], call["status"]) for call in calls] == [
        ("get_location", "completed"), ("calculator", "completed"), ("get_location", "completed")]
    assert [call["toolName"] for call in result["calls"]] == ["get_location", "calculator", "get_location"]
    [_, assistant] = result["messages"]
    assert compared(assistant["parts"]) == expected_parts(messages, client)
    assert len(result["chunks"]) == 3
    first, second, third = (squeezed(chunks) for chunks in result["chunks"])
    assert first[-4:] == ["tool-input-available", "tool-output-available", "finish-step", "finish"], \
        "the calculator's output comes before the stream stops"
    assert second[:3] == ["start", "finish-step", "start-step"] and second[-2:] == ["finish-step", "finish"]
    assert third[-3:] == ["finish-step", "message-metadata", "finish"]


@pytest.mark.parametrize("client", ["ai-5", "ai-6", "ai-7"])
async def test_a_client_tool_that_fails_gives_its_error_text_to_the_model(
    client: str, tool_server: Server, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tool_calls=ASK, tokens=["I could ", "not tell."], argument_chunk=4)
    chat = chat_id()
    result = await drive(client, "send", tool_server.url, chat, "where am I?", tools=[GET_LOCATION],
                         errors={"get_location": "the user refused to share the location"})
    messages = await stored(tool_server.url, chat)
    reply, [call] = reply_and_calls(messages)
    assert reply["status"] == "completed" and reply["message"] == "Let me look. I could not tell."
    assert (call["status"], call["error"]) == ("error", "the user refused to share the location")
    assert tool_messages(fake_provider.requests()[-1])[-1]["content"] == "error: the user refused to share the location"
    [_, assistant] = result["messages"]
    assert compared(assistant["parts"]) == expected_parts(messages, client)
    [part] = tool_parts(assistant)
    assert (part["state"], part["errorText"]) == ("output-error", "the user refused to share the location")


@pytest.mark.parametrize("client", ["ai-5.0.0", "ai-6"])
async def test_a_page_opened_again_resumes_the_waiting_reply_runs_the_tool_and_the_reply_goes_on(
    client: str, tool_server: Server, fake_provider: FakeProvider,
) -> None:
    # The first page sent the message and went away before running the tool: the reply waits, holding
    # nothing. A new chat resumes it (GET /api/chat/{id}/stream), sees the call, and answers it.
    fake_provider.script(tool_calls=ASK, tokens=["Found ", "you."], argument_chunk=4)
    chat = chat_id()
    body = {"id": chat, "trigger": "submit-message", "clientTools": [GET_LOCATION],
            "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "where am I?"}]}]}
    async with httpx.AsyncClient(base_url=tool_server.url, timeout=30) as http:
        first = await http.post("/api/chat", json=body)
    assert first.status_code == 200 and first.text.endswith('data: {"type":"finish"}\n\ndata: [DONE]\n\n'), first.text
    [waiting] = reply_and_calls(await stored(tool_server.url, chat))[1]
    assert waiting["status"] == "awaiting_result"

    result = await drive(client, "resume", tool_server.url, chat, outputs={"get_location": LYON})
    messages = await stored(tool_server.url, chat)
    reply, [call] = reply_and_calls(messages)
    assert (reply["status"], reply["message"]) == ("completed", "Let me look. Found you.")
    assert call["result"] == LYON
    [assistant] = result["messages"]
    assert assistant["id"] == reply["id"] and compared(assistant["parts"]) == expected_parts(messages, client)
    assert squeezed(result["chunks"][0]) == PAUSED, "the resumed stream stops at the call, as the first did"
    assert [sent["last"]["role"] for sent in result["sent"]] == ["assistant"]


@pytest.mark.parametrize("client", ["ai-5", "ai-7"])
async def test_a_last_round_without_text_is_a_step_of_its_own_so_the_chat_does_not_send_again(
    client: str, tool_server: Server, fake_provider: FakeProvider,
) -> None:
    # Were the calls the message's last step, every output there, the chat would send it back again.
    fake_provider.script(tool_calls=ASK, tokens=[], argument_chunk=4)
    chat = chat_id()
    result = await drive(client, "send", tool_server.url, chat, "where am I?", tools=[GET_LOCATION],
                         outputs={"get_location": LYON})
    messages = await stored(tool_server.url, chat)
    reply, _ = reply_and_calls(messages)
    assert (reply["status"], reply["message"]) == ("completed", "Let me look. ")
    assert len(result["sent"]) == 2, "one request for the message, one with the output: no more"
    [_, assistant] = result["messages"]
    assert compared(assistant["parts"]) == expected_parts(messages, client)
    assert assistant["parts"][-1] == {"type": "step-start"}
    assert squeezed(result["chunks"][1]) == ["start", "finish-step", "start-step", "finish-step", "message-metadata",
                                             "finish"]


async def test_a_models_file_client_tool_named_in_the_chats_tools_is_run_by_the_chat(
    tool_server: Server, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tool_calls=[[{"name": "pick_color", "arguments": {"prompt": "Which one?"}}]],
                         tokens=["Teal", " it is."], argument_chunk=6)
    chat = chat_id()
    result = await drive("ai-6", "send", tool_server.url, chat, "pick one", body={"tools": ["pick_color"]},
                         outputs={"pick_color": "teal"})
    messages = await stored(tool_server.url, chat)
    reply, [call] = reply_and_calls(messages)
    assert (reply["message"], call["name"], call["result"]) == ("Teal it is.", "pick_color", "teal")
    assert [tool["function"]["name"] for tool in fake_provider.requests()[0]["tools"]] == ["pick_color"]
    assert compared(result["messages"][-1]["parts"]) == expected_parts(messages, "ai-6")


# -- the contract, in process ------------------------------------------------------------------

def ui_body(chat: str, text: str = "where am I?", **extra: Any) -> dict[str, Any]:
    return {"id": chat, "trigger": "submit-message",
            "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}], **extra}


def answer_body(chat: str, reply_id: str, *parts: dict[str, Any]) -> dict[str, Any]:
    """What the chat sends back: its last message is the reply, with its tool parts as the client has them."""
    return {"id": chat, "trigger": "submit-message", "messageId": reply_id,
            "messages": [{"id": reply_id, "role": "assistant", "parts": [{"type": "step-start"}, *parts]}]}


def output_part(call_id: str, output: Any, name: str = "get_location") -> dict[str, Any]:
    return {"type": f"tool-{name}", "toolCallId": call_id, "state": "output-available",
            "input": {"accuracy": "city"}, "output": output}


async def test_the_stream_stops_at_a_client_call_in_each_dialect_and_the_answer_streams_only_the_rest(
    in_process: InProcessStarter, fake_provider: FakeProvider, tmp_path: Path,
) -> None:
    from test_ai_sdk_tool_contract import AI_5_0_0_FIELDS, chunks_of, joined_up

    server = await in_process(STREAMCHAT_MODELS_FILE=str(client_tools_file(tmp_path, fake_provider)))
    fake_provider.script(tool_calls=ASK, tokens=["In ", "Lyon."], argument_chunk=4)
    async with server.client() as client:
        plain = await client.post("/api/chat", json=ui_body("dialect5", clientTools=[GET_LOCATION]))
        chunks = chunks_of(plain.text)
        for chunk in chunks:
            assert set(chunk) <= AI_5_0_0_FIELDS[chunk["type"]], chunk
        assert chunks[-1] == {"type": "finish"}
        reply_id = chunks[0]["messageId"]
        call_id = f"{reply_id}.t0.0"
        assert joined_up(chunks)[-4:-2] == [
            {"type": "tool-input-delta", "toolCallId": call_id, "inputTextDelta": '{"accuracy":"city"}'},
            {"type": "tool-input-available", "toolCallId": call_id, "toolName": "get_location",
             "input": {"accuracy": "city"}}]
        # The same waiting reply, read by an `ai` 6 client: the finish says why it stopped.
        resumed = await client.get("/api/chat/dialect5/stream", headers={"X-AI-SDK-Version": "6"})
        assert chunks_of(resumed.text)[-1] == {"type": "finish", "finishReason": "tool-calls"}
        text_part = {"type": "text", "text": "Let me look. ", "state": "done"}
        answered = await client.post("/api/chat", json=answer_body("dialect5", reply_id, text_part,
                                                                   output_part(call_id, LYON)))
    rest = chunks_of(answered.text)
    assert [chunk["type"] for chunk in joined_up(rest)] == GOES_ON
    assert rest[0] == {"type": "start", "messageId": reply_id}
    assert "".join(chunk["delta"] for chunk in rest if chunk["type"] == "text-delta") == "In Lyon."


@pytest.mark.parametrize(("tools", "field"), [
    ([{"name": "calculator"}], "clientTools[0].name"),
    ([GET_LOCATION, GET_LOCATION], "clientTools[1].name"),
    ([{"name": "two words"}], "clientTools.0.name"),
    ([{"name": "get_location", "parameters": "an object"}], "clientTools.0.parameters"),
    ([{"name": "get_location", "execute": "no"}], "clientTools.0.execute"),
    ("get_location", "clientTools"),
])
async def test_client_tools_that_cannot_be_offered_are_422_naming_them_and_nothing_is_kept(
    in_process: InProcessStarter, fake_provider: FakeProvider, tools: Any, field: str,
) -> None:
    server = await in_process()
    chat = chat_id()
    async with server.client() as client:
        refused = await client.post("/api/chat", json=ui_body(chat, clientTools=tools))
        kept = await client.get(f"/api/conversations/{chat}")
    assert refused.status_code == 422 and field in refused.json()["detail"], refused.text
    assert kept.status_code == 404
    assert not fake_provider.requests(), "no model was asked"


async def test_answers_naming_no_call_of_the_chat_or_another_keys_are_404_and_other_outputs_are_only_shown(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    from test_ai_sdk_tool_contract import chunks_of

    server = await in_process(STREAMCHAT_TOOLS="loop_tools", STREAMCHAT_API_KEYS="owner-key,other-key")
    fake_provider.script(tool_calls=[[{"name": "get_location", "arguments": {"accuracy": "city"}},
                                      {"name": "calculator", "arguments": {"expression": "2 * 21"}}]],
                         tokens=["ok"])
    chat = chat_id()
    async with (server.client(headers={"Authorization": "Bearer owner-key"}) as owner,
                server.client(headers={"Authorization": "Bearer other-key"}) as other):
        paused = chunks_of((await owner.post("/api/chat", json=ui_body(chat, clientTools=[GET_LOCATION]))).text)
        reply_id = paused[0]["messageId"]
        location, calculator = f"{reply_id}.t0.0", f"{reply_id}.t0.1"
        unknown = await owner.post("/api/chat", json=answer_body(chat, reply_id, output_part(f"{reply_id}.t9.9", 1)))
        theirs = await other.post("/api/chat", json=answer_body(chat, reply_id, output_part(location, LYON)))
        # The calculator's output shown back changes nothing (it is the server's), and the reply still waits.
        shown_back = await owner.post("/api/chat", json=answer_body(
            chat, reply_id, output_part(calculator, 0, "calculator")))
        still = (await owner.get(f"/api/conversations/{chat}")).json()["messages"]
        given = await owner.post("/api/chat", json=answer_body(
            chat, reply_id, output_part(location, LYON), output_part(calculator, "made up", "calculator")))
        done = (await owner.get(f"/api/conversations/{chat}")).json()["messages"]
    assert unknown.status_code == 404 and "messages[0].parts[1].toolCallId" in unknown.json()["detail"]
    assert theirs.status_code == 404
    assert shown_back.status_code == 200 and chunks_of(shown_back.text)[-1]["type"] == "finish"
    assert {m["id"]: m["status"] for m in still if m["from"] == "tool"} == {location: "awaiting_result",
                                                                           calculator: "completed"}
    assert given.status_code == 200 and "ok" in given.text
    calls = {m["id"]: m for m in done if m["from"] == "tool"}
    assert calls[location]["result"] == LYON
    assert calls[calculator]["result"] == {"expression": "2 * 21", "result": 42}, "the server's own result stays"
