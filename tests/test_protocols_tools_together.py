"""One reply with a tool call, watched at once through six protocols: AG-UI (the published HttpAgent,
which starts it), Motia's npm client, SSE, the AI SDK's resume, an OpenAI Responses stream and a ChatKit
stream. Every reader ends with byte-identical text, equal to the stored reply, and saw the same call,
equal to the stored call item: its id, name, arguments (as JSON) and result.

A real server process (the Node clients connect over the network). The reply's first round writes text
and calls the built-in calculator; its last round is held mid-way until every other reader has attached,
so each joins a reply in progress whose call has already run. Each protocol's frames are read with its
own models: ag_ui.core's events, the openai SDK's stream events (each also validated as its class
defines it), chatkit.types' ThreadStreamEvent, the AI SDK's and Motia's own clients.

How each protocol names the call: AG-UI, Motia, SSE and the AI SDK by the call item's id; Responses as
the `mcp_call` item `mcp_<call item id>`; ChatKit shows a server-run call as a task of the round's
workflow item `<reply>.w<round>`, and its tasks carry no id of their own: the task at index n of round r
is the call item `<reply>.t<r>.<n>`.
"""

from __future__ import annotations

import asyncio
import json
import re
import warnings
from dataclasses import dataclass
from typing import Any

import httpx
from ag_ui.core import TextMessageContentEvent, ToolCallArgsEvent, ToolCallResultEvent, ToolCallStartEvent
from openai import AsyncOpenAI

from conftest import FakeProvider, Server
from helpers import read_sse, wait_for_status
from streamchat.client import SseFrame
from test_ag_ui import EVENTS as AG_UI_EVENTS
from test_ag_ui_client import as_the_client_holds_it, thread_id
from test_ag_ui_client import drive as ag_ui_drive
from test_ai_sdk import node as node
from test_ai_sdk_tools import drive as ai_sdk_drive
from test_chatkit import EVENTS as CHATKIT_EVENTS
from test_chatkit import frames_until, text_of
from test_motia_client import NodeWatcher
from test_openai_tools import EVENT_CLASSES
from test_protocols_together import TOKENS
from test_tool_clients import SseState

with warnings.catch_warnings():  # its widgets module warns about itself on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from chatkit.types import ThreadItemDoneEvent, ThreadItemUpdatedEvent, WorkflowItem, WorkflowTaskAdded

#: Round 0: multi-byte text, then the calculator's call (9 pieces: five words, the call's head and three
#: pieces of its arguments); round 1 is TOKENS, held after its first HOLD_AFTER pieces (mid-emoji).
ROUND_0 = [{"text": "Ich prüfe das — "}, {"name": "calculator", "arguments": {"expression": "6 * 7"}}]
ARGUMENT_CHUNK = 8
HOLD_AFTER = 10
ENDED = {"completed", "error", "stopped"}

#: A call as a reader saw it: its call item's id, the tool's name, the arguments as JSON, the result.
Call = tuple[str, str, Any, Any]


@dataclass
class Seen:
    text: str
    calls: list[Call]


def stored_call(call: dict[str, Any]) -> Call:
    return call["id"], call["name"], json.loads(call["arguments"]), call["result"]


async def ag_ui_reader(server: Server, thread: str) -> tuple[Seen, list[dict[str, Any]]]:
    """Start the reply with HttpAgent's runAgent; every event it applied parsed by ag_ui.core. The run's
    text and calls as its events tell them, and the messages the agent ended with."""
    lines, result = await ag_ui_drive("text", server.url, thread, "what is 6 * 7?")
    events = [AG_UI_EVENTS.validate_python(line["event"]) for line in lines if "event" in line]
    assert events[0].type == "RUN_STARTED" and events[-1].type == "RUN_FINISHED"
    arguments: dict[str, str] = {}
    results: dict[str, Any] = {}
    names: dict[str, str] = {}
    for event in events:
        if isinstance(event, ToolCallStartEvent):
            names[event.tool_call_id] = event.tool_call_name
        elif isinstance(event, ToolCallArgsEvent):
            arguments[event.tool_call_id] = arguments.get(event.tool_call_id, "") + event.delta
        elif isinstance(event, ToolCallResultEvent):
            assert isinstance(event.content, str), event  # a result is its JSON as text
            results[event.tool_call_id] = json.loads(event.content)
    text = "".join(event.delta for event in events if isinstance(event, TextMessageContentEvent))
    calls = [(call_id, name, json.loads(arguments[call_id]), results[call_id]) for call_id, name in names.items()]
    return Seen(text, calls), list(result["messages"])


async def motia_reader(node: str, server: Server, cid: str, reply_id: str, opened: asyncio.Event) -> Seen:
    watcher = await NodeWatcher.start(node, server.ws_url, cid, script="watch_tools.mjs")
    opened.set()
    while (line := await watcher.line())["type"] == "call":
        pass
    assert line["type"] == "final", line
    assert await asyncio.wait_for(watcher.process.wait(), 10) == 0
    items = {item["id"]: item for item in line["items"]}
    calls = [stored_call(item) for item in line["items"] if item["from"] == "tool"]
    return Seen(items[reply_id]["message"], calls)


async def sse_reader(server: Server, cid: str, reply_id: str, opened: asyncio.Event) -> Seen:
    state = SseState()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client, \
            client.stream("GET", f"/api/conversations/{cid}/events") as response:
        assert response.status_code == 200
        opened.set()
        async for frame in read_sse(response):
            if isinstance(frame, SseFrame):
                state.apply(frame)
                if state.items.get(reply_id, {}).get("status") in ENDED:
                    return Seen(state.items[reply_id]["message"], [stored_call(call) for call in state.calls()])
    raise AssertionError("the SSE stream ended before the reply did")


async def ai_sdk_reader(server: Server, cid: str, reply_id: str, opened: asyncio.Event) -> Seen:
    """ai 6's chat transport reconnects to the reply in progress and reads it into a UI message."""
    loop = asyncio.get_running_loop()

    def reconnected(_: dict[str, Any]) -> None:  # its one line before the result (called on a thread)
        loop.call_soon_threadsafe(opened.set)

    printed, result = await ai_sdk_drive("ai-6", "resume", server.url, cid, on_line=reconnected)
    assert printed == [{"reconnected": True}], "the reply was still streaming when the AI SDK reconnected"
    message = result["resumed"]
    assert message["id"] == reply_id
    text = "".join(part["text"] for part in message["parts"] if part["type"] == "text")
    calls = [(part["toolCallId"], part["type"].removeprefix("tool-"), part["input"], part["output"])
             for part in message["parts"] if part["type"].startswith("tool-")]
    assert all(part["state"] == "output-available" for part in message["parts"] if part["type"].startswith("tool-"))
    return Seen(text, calls)


async def responses_reader(server: Server, reply_id: str, opened: asyncio.Event) -> Seen:
    async with AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        stream = await client.responses.retrieve(reply_id, stream=True)
        opened.set()
        events = [event async for event in stream]
    for event in events:  # the SDK's stream only constructs its events: validate each as its class defines it
        EVENT_CLASSES[event.type].model_validate(event.to_dict())
    final = events[-1]
    assert final.type == "response.completed" and final.response.id == reply_id
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert final.response.output_text == text
    done = [event.item for event in events if event.type == "response.output_item.done"]
    assert [item.model_dump() for item in done] == [item.model_dump() for item in final.response.output]
    calls = []
    for item in done:
        if item.type == "mcp_call":
            assert item.id.startswith("mcp_") and item.output is not None, item
            calls.append((item.id.removeprefix("mcp_"), item.name, json.loads(item.arguments), json.loads(item.output)))
    return Seen(text, calls)


_WORKFLOW = re.compile(r"^(?P<reply>.+)\.w(?P<round>\d+)$")


async def chatkit_reader(server: Server, cid: str, reply_id: str, opened: asyncio.Event) -> Seen:
    """The thread's stream from its start; each frame a ThreadStreamEvent (frames_of checks it). A task
    shows its call's arguments when added, its result when its workflow is done."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client, \
            client.stream("GET", f"/chatkit/threads/{cid}/events") as response:
        assert response.status_code == 200
        opened.set()
        frames = await frames_until(response, lambda frame: False)
    events = [CHATKIT_EVENTS.validate_python(frame.data) for frame in frames]
    assert isinstance(events[-1], ThreadItemDoneEvent) and events[-1].item.id == f"{reply_id}.m1"
    added: dict[tuple[str, int], tuple[str, Any]] = {}
    calls: list[Call] = []
    for event in events:
        if isinstance(event, ThreadItemUpdatedEvent) and isinstance(event.update, WorkflowTaskAdded):
            task = event.update.task
            assert task.type == "custom" and task.content is not None and task.title is not None
            added[event.item_id, event.update.task_index] = (
                task.title, json.loads(task.content.removeprefix("Arguments: ")))
        elif isinstance(event, ThreadItemDoneEvent) and isinstance(event.item, WorkflowItem):
            workflow = _WORKFLOW.match(event.item.id)
            assert workflow is not None and workflow["reply"] == reply_id, event.item.id
            for index, task in enumerate(event.item.workflow.tasks):
                assert task.type == "custom" and task.content is not None
                name, arguments = added[event.item.id, index]
                assert task.title == name
                call_id = f"{reply_id}.t{workflow['round']}.{index}"
                calls.append((call_id, name, arguments, json.loads(task.content.removeprefix("Result: "))))
    return Seen(text_of(frames), calls)


async def reply_held_after_its_call(fake_provider: FakeProvider, server: Server, thread: str) -> str:
    """The reply's id, once round 0 (its text and call) has run whole and the last round is held."""
    streams = await fake_provider.until_held()
    assert [("round" in stream, bool(stream.get("held"))) for stream in streams] == [(True, False), (False, True)]
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        messages = (await http.get(f"/api/conversations/{thread}")).json()["messages"]
    [reply] = [message for message in messages if message["from"] == "assistant"]
    [call] = [message for message in messages if message["from"] == "tool"]
    assert (reply["status"], call["status"]) == ("streaming", "completed")
    return str(reply["id"])


async def test_one_reply_with_a_call_reads_the_same_through_all_six(
    node: str, server: Server, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tool_calls=[ROUND_0], tokens=TOKENS, argument_chunk=ARGUMENT_CHUNK, hold_after=HOLD_AFTER)
    thread = thread_id()
    ag_ui = asyncio.create_task(ag_ui_reader(server, thread))
    opened = [asyncio.Event() for _ in range(5)]

    async def release_once_all_are_attached() -> None:
        await asyncio.gather(*(event.wait() for event in opened))
        await asyncio.to_thread(fake_provider.release)

    try:
        reply_id = await reply_held_after_its_call(fake_provider, server, thread)
        motia, sse, ai_sdk, responses, chatkit, _ = await asyncio.gather(
            motia_reader(node, server, thread, reply_id, opened[0]),
            sse_reader(server, thread, reply_id, opened[1]),
            ai_sdk_reader(server, thread, reply_id, opened[2]),
            responses_reader(server, reply_id, opened[3]),
            chatkit_reader(server, thread, reply_id, opened[4]),
            release_once_all_are_attached(),
        )
    except BaseException:  # the reply goes on to its end, and the run that started it ends with it
        await asyncio.to_thread(fake_provider.release)
        await asyncio.gather(ag_ui, return_exceptions=True)
        raise
    ag_ui_seen, agent_messages = await ag_ui

    stored = await wait_for_status(server.url, thread, reply_id)
    assert stored["status"] == "completed"
    expected_text = ("Ich prüfe das — " + "".join(TOKENS)).encode()
    assert stored["message"].encode() == expected_text
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        messages = (await http.get(f"/api/conversations/{thread}")).json()["messages"]
    stored_calls = [stored_call(message) for message in messages if message["from"] == "tool"]
    assert stored_calls == [(f"{reply_id}.t0.0", "calculator", {"expression": "6 * 7"},
                             {"expression": "6 * 7", "result": 42})]
    assert agent_messages == as_the_client_holds_it(messages), "HttpAgent holds the stored branch"

    seen = {"ag-ui": ag_ui_seen, "motia": motia, "sse": sse, "ai sdk": ai_sdk, "responses": responses,
            "chatkit": chatkit}
    for name, reader in seen.items():
        assert reader.text.encode() == expected_text, name
        assert reader.calls == stored_calls, name
