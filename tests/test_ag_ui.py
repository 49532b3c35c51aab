"""The AG-UI view, in process (the real fake provider, tests/loop_tools): every frame of every run is
parsed by `ag_ui.core`'s own event models and carries an id `<base>:<n>`, unique and rising in its
thread; a run with text, a server-run tool, an approval interrupt resumed (and answered badly), a
front-end tool whose result a later run brings (and bad results), a round with both, the events route
resuming exactly after any event of a run that has ended, cancel, bad input on every route and another
key's thread. The published JavaScript client is in test_ag_ui_client.py, two instances in
test_ag_ui_instances.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from ag_ui.core import PROTOCOL_VERSION, Event, MessagesSnapshotEvent, RunFinishedEvent
from pydantic import TypeAdapter

from conftest import FakeProvider, InProcessStarter, ServerFactory
from helpers import InProcessServer, wait_for_status, wait_until_streaming

EVENTS = TypeAdapter(Event)
LOOP_TOOLS = {"STREAMCHAT_TOOLS": "loop_tools"}


@dataclass(frozen=True)
class Frame:
    id: str
    event: Any  # an ag_ui.core event model
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.data["type"])

    @property
    def number(self) -> tuple[int, int]:
        base, number = self.id.split(":")
        return int(base), int(number)


def frames_of(body: str) -> list[Frame]:
    """Every frame of an AG-UI stream, each event parsed by ag_ui.core's models (pings skipped)."""
    frames = []
    for block in body.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        assert set(fields) == {"id", "data"}, block
        data = json.loads(fields["data"])
        frames.append(Frame(fields["id"], EVENTS.validate_python(data), data))
    return frames


def thread_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def run_input(thread: str, text: str | None = "hello", run: str | None = None, **extra: Any) -> dict[str, Any]:
    messages = [] if text is None else [{"id": f"u-{uuid.uuid4().hex[:8]}", "role": "user", "content": text}]
    return {"threadId": thread, "runId": run or f"r-{uuid.uuid4().hex[:8]}", "state": {}, "messages": messages,
            "tools": [], "context": [], "forwardedProps": {}, **extra}


async def run(client: httpx.AsyncClient, body: dict[str, Any]) -> list[Frame]:
    response = await client.post("/ag-ui", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = frames_of(response.text)
    numbers = [frame.number for frame in frames]
    assert numbers == [(numbers[0][0], n) for n in range(len(frames))], "ids rise by one from <base>:0"
    return frames


def types(frames: list[Frame]) -> list[str]:
    """The frames' types, each run of TEXT_MESSAGE_CONTENT as one (how a text was split is the model's)."""
    shown: list[str] = []
    for frame in frames:
        if not (frame.type == "TEXT_MESSAGE_CONTENT" and shown and shown[-1] == frame.type):
            shown.append(frame.type)
    return shown


def text_of(frames: list[Frame]) -> str:
    return "".join(frame.data["delta"] for frame in frames if frame.type == "TEXT_MESSAGE_CONTENT")


async def stored(server: InProcessServer, thread: str) -> list[dict[str, Any]]:
    async with server.client() as client:
        response = await client.get(f"/api/conversations/{thread}")
        response.raise_for_status()
        return list(response.json()["messages"])


async def test_a_run_streams_the_reply_to_the_new_user_message(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process()
    fake_provider.script(tokens=["Hel", "lo", " there", "."])
    thread = thread_id()
    body = run_input(thread, "hi")
    async with server.client() as client:
        frames = await run(client, body)
    assert types(frames) == ["RUN_STARTED", "MESSAGES_SNAPSHOT", "STEP_STARTED", "TEXT_MESSAGE_START",
                             "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "STEP_FINISHED", "RUN_FINISHED"]
    assert frames[0].data == {"type": "RUN_STARTED", "threadId": thread, "runId": body["runId"],
                              "protocolVersion": PROTOCOL_VERSION}
    messages = await stored(server, thread)
    user, reply = messages
    assert frames[1].data["messages"] == [{"id": user["id"], "role": "user", "content": "hi"}]
    assert {frame.data["messageId"] for frame in frames if "messageId" in frame.data} == {reply["id"]}
    assert text_of(frames) == reply["message"] == "Hello there."
    assert frames[-1].data == {"type": "RUN_FINISHED", "threadId": thread, "runId": body["runId"]}

    # The next run: the thread's history as a snapshot, ids rising past the first run's.
    fake_provider.script(tokens=["Again."])
    async with server.client() as client:
        second = await run(client, {**run_input(thread, "more"), "messages": [
            *frames[1].data["messages"], {"id": reply["id"], "role": "assistant", "content": reply["message"]},
            {"id": "client-side-id", "role": "user", "content": "more"}]})
    assert second[0].number[0] > frames[-1].number[0]
    snapshot = second[1].event
    assert isinstance(snapshot, MessagesSnapshotEvent)
    assert [(message.role, message.content) for message in snapshot.messages] == [
        ("user", "hi"), ("assistant", "Hello there."), ("user", "more")]
    assert text_of(second) == "Again."


def calls_in(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((m for m in messages if m["from"] == "tool"), key=lambda call: (call["round"], call["id"]))


async def test_a_server_run_tool_shows_as_a_call_of_the_reply_with_its_result(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(**LOOP_TOOLS)
    fake_provider.script(tool_calls=[[{"text": "Checking. "},
                                      {"name": "calculator", "arguments": {"expression": "6 * 7"}}]],
                         tokens=["It is ", "42."], argument_chunk=3)
    thread = thread_id()
    async with server.client() as client:
        frames = await run(client, run_input(thread, "what is 6 * 7?"))
    messages = await stored(server, thread)
    reply = next(m for m in messages if m["from"] == "assistant")
    [call] = calls_in(messages)
    assert types(frames) == [
        "RUN_STARTED", "MESSAGES_SNAPSHOT",
        "STEP_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END",
        "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "STEP_FINISHED", "TOOL_CALL_RESULT",
        "STEP_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END", "STEP_FINISHED",
        "RUN_FINISHED"]
    start, args, result = (next(f for f in frames if f.type == kind)
                           for kind in ("TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_RESULT"))
    assert start.data == {"type": "TOOL_CALL_START", "toolCallId": call["id"], "toolCallName": "calculator",
                          "parentMessageId": reply["id"]}
    assert json.loads(args.data["delta"]) == {"expression": "6 * 7"} == json.loads(call["arguments"])
    assert result.data == {"type": "TOOL_CALL_RESULT", "messageId": f"{call['id']}.result", "toolCallId": call["id"],
                           "content": json.dumps(call["result"], separators=(",", ":"), sort_keys=True), "role": "tool"}
    assert [frame.data["stepName"] for frame in frames if frame.type.startswith("STEP_")] == [
        "round 0", "round 0", "round 1", "round 1"]
    assert text_of(frames) == reply["message"] == "Checking. It is 42."

    # A later run's snapshot holds the reply as one assistant message with its call, then the result.
    fake_provider.script(tokens=["Yes."])
    async with server.client() as client:
        later = await run(client, run_input(thread, "sure?"))
    shown = later[1].data["messages"]
    assert shown[1:3] == [
        {"id": reply["id"], "role": "assistant", "content": "Checking. It is 42.",
         "toolCalls": [{"id": call["id"], "type": "function",
                        "function": {"name": "calculator", "arguments": call["arguments"]}}]},
        {"id": f"{call['id']}.result", "role": "tool", "toolCallId": call["id"], "content": result.data["content"]}]


DELETE_ROUNDS = [[{"text": "Tidying. "}, {"name": "calculator", "arguments": {"expression": "1 + 1"}},
                  {"name": "delete_file", "arguments": {"path": "/tmp/old.txt"}}]]


async def test_an_approval_ends_the_run_with_an_interrupt_and_resume_goes_on(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(**LOOP_TOOLS)
    fake_provider.script(tool_calls=DELETE_ROUNDS, tokens=["Deleted", "."])
    thread = thread_id()
    async with server.client() as client:
        first = await run(client, run_input(thread, "tidy up"))
        calculator, delete = calls_in(await stored(server, thread))
        assert delete["status"] == "awaiting_approval"
        assert types(first)[-4:] == ["TOOL_CALL_END", "STEP_FINISHED", "TOOL_CALL_RESULT", "RUN_FINISHED"]
        finished = first[-1].event
        assert isinstance(finished, RunFinishedEvent) and finished.outcome is not None
        assert finished.outcome.type == "interrupt"
        [interrupt] = first[-1].data["outcome"]["interrupts"]
        assert interrupt["id"] == interrupt["toolCallId"] == delete["id"]
        assert interrupt["reason"] == "tool_approval"
        assert first[-2].data["toolCallId"] == calculator["id"]

        resume = [{"interruptId": delete["id"], "status": "resolved", "payload": {"approved": True}}]
        second = await run(client, run_input(thread, None, resume=resume))
    reply = await wait_for_status(server, thread, delete["parentId"])
    calculator, delete = calls_in(await stored(server, thread))
    assert delete["status"] == "completed" and delete["result"] == {"deleted": "/tmp/old.txt"}
    assert second[0].number[0] > first[-1].number[0]
    assert types(second) == ["RUN_STARTED", "MESSAGES_SNAPSHOT", "TOOL_CALL_RESULT", "TOOL_CALL_RESULT",
                             "STEP_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END",
                             "STEP_FINISHED", "RUN_FINISHED"]
    assert [frame.data["toolCallId"] for frame in second[2:4]] == [calculator["id"], delete["id"]]
    assert "outcome" not in second[-1].data
    # The resumed run's snapshot holds the reply as it stood at the interrupt, without round 0's results.
    assert second[1].data["messages"][-1] == {
        "id": reply["id"], "role": "assistant", "content": "Tidying. ",
        "toolCalls": [{"id": call["id"], "type": "function", "function": {"name": call["name"],
                                                                         "arguments": call["arguments"]}}
                      for call in (calculator, delete)]}
    assert text_of(first) + text_of(second) == reply["message"] == "Tidying. Deleted."


@pytest.mark.parametrize(("answer", "status", "error"), [
    ({"status": "cancelled"}, "denied", "denied by the user"),
    ({"status": "resolved", "payload": False}, "denied", "denied by the user"),
    ({"status": "resolved", "payload": {"approved": False, "reason": "keep it"}}, "denied",
     "denied by the user: keep it"),
    ({"status": "resolved"}, "completed", None),
])
async def test_a_resume_entry_approves_or_denies(
    in_process: InProcessStarter, fake_provider: FakeProvider, answer: dict[str, Any], status: str,
    error: str | None,
) -> None:
    server = await in_process(**LOOP_TOOLS)
    fake_provider.script(tool_calls=DELETE_ROUNDS, tokens=["Ok."])
    thread = thread_id()
    async with server.client() as client:
        await run(client, run_input(thread, "tidy up"))
        _, delete = calls_in(await stored(server, thread))
        frames = await run(client, run_input(thread, None, resume=[{"interruptId": delete["id"], **answer}]))
    _, delete = calls_in(await stored(server, thread))
    assert (delete["status"], delete.get("error")) == (status, error)
    [result] = [frame.data for frame in frames if frame.type == "TOOL_CALL_RESULT" and
                frame.data["toolCallId"] == delete["id"]]
    assert result["content"] == (error or json.dumps(delete["result"], separators=(",", ":"), sort_keys=True))


async def test_the_events_of_a_run_resume_exactly_after_any_event_id(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(**LOOP_TOOLS)
    fake_provider.script(tool_calls=DELETE_ROUNDS, tokens=["Del", "eted", "."], argument_chunk=4)
    thread = thread_id()
    async with server.client() as client:
        first = await run(client, run_input(thread, "tidy up", run="one"))
        _, delete = calls_in(await stored(server, thread))
        second = await run(client, run_input(thread, None, run="two", resume=[
            {"interruptId": delete["id"], "status": "resolved"}]))
        for name, whole in (("one", first), ("two", second)):
            again = await client.get(f"/ag-ui/{thread}/runs/{name}/events")
            assert [frame.data for frame in frames_of(again.text)] == [frame.data for frame in whole]
            for index, frame in enumerate(whole):
                by_header = await client.get(f"/ag-ui/{thread}/runs/{name}/events",
                                             headers={"Last-Event-ID": frame.id})
                rest = frames_of(by_header.text)
                assert [(f.id, f.data) for f in rest] == [(f.id, f.data) for f in whole[index + 1:]], (name, index)
            by_query = await client.get(f"/ag-ui/{thread}/runs/{name}/events", params={"lastEventId": whole[2].id})
            assert [f.id for f in frames_of(by_query.text)] == [f.id for f in whole[3:]]


async def test_cancel_stops_the_reply_and_the_run_ends_cancelled(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process()
    fake_provider.script(tokens=["one", " two", " three"], hold_after=1)
    thread = thread_id()
    async with server.client() as client:
        running = asyncio.create_task(client.post("/ag-ui", json=run_input(thread, "go", run="held")))
        await fake_provider.until_held()
        reply = next(m for m in await stored(server, thread) if m["from"] == "assistant")
        await wait_until_streaming(server, thread, reply["id"])
        cancelled = await client.post(f"/ag-ui/{thread}/runs/held/cancel")
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json() == {"threadId": thread, "runId": "held", "messageId": reply["id"], "status": "stopped"}
        frames = frames_of((await running).text)
        again = await client.post(f"/ag-ui/{thread}/runs/held/cancel")
        assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert frames[-1].data["outcome"] == {"type": "cancelled"}
    assert types(frames)[-3:] == ["TEXT_MESSAGE_END", "STEP_FINISHED", "RUN_FINISHED"]
    assert text_of(frames) == (await wait_for_status(server, thread, reply["id"]))["message"] == "one"


def image_part() -> dict[str, Any]:
    return {"type": "image", "source": {"type": "url", "value": "https://example.invalid/a.png"}}


@pytest.mark.parametrize(("change", "status", "field"), [
    ({"threadId": None}, 422, "threadId"),
    ({"threadId": "has space"}, 422, "threadId"),
    ({"runId": ""}, 422, "runId"),
    ({"messages": None}, 422, "messages"),
    ({"messages": [{"id": "x", "role": "robot", "content": "hi"}]}, 422, "messages.0"),
    ({"messages": []}, 422, "messages"),
    ({"messages": [{"id": "a", "role": "assistant", "content": "hi"}]}, 422, "messages"),
    ({"messages": [{"id": "u", "role": "user", "content": "   "}]}, 422, "messages[0].content"),
    ({"messages": [{"id": "u", "role": "user", "content": [{"type": "text", "text": "look"}, image_part()]}]}, 422,
     "messages[0].content[1]"),
    ({"resume": [{"interruptId": "nope", "status": "resolved"}]}, 422, "messages[0]"),
    ({"messages": [], "resume": [{"interruptId": "nope", "status": "resolved"}]}, 422, "resume[0].interruptId"),
    ({"messages": [], "resume": [{"interruptId": "x", "status": "maybe"}]}, 422, "resume.0.status"),
])
async def test_bad_input_is_a_422_naming_the_field(
    in_process: InProcessStarter, fake_provider: FakeProvider, change: dict[str, Any], status: int, field: str,
) -> None:
    server = await in_process()
    body = {key: value for key, value in {**run_input(thread_id()), **change}.items() if value is not None}
    async with server.client() as client:
        response = await client.post("/ag-ui", json=body)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["error"] == "validation_error"
    assert field in [problem["field"] for problem in answer["fields"]], answer
    assert fake_provider.requests() == [], "nothing was asked of the model"


async def test_bad_answers_to_interrupts_and_a_run_id_taken_twice(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(**LOOP_TOOLS)
    fake_provider.script(tool_calls=[[{"name": "delete_file", "arguments": {"path": "/a"}},
                                      {"name": "delete_file", "arguments": {"path": "/b"}}]], tokens=["Ok."])
    thread = thread_id()
    async with server.client() as client:
        await run(client, run_input(thread, "tidy", run="first"))
        first, second = calls_in(await stored(server, thread))

        async def refused(resume: list[dict[str, Any]], run_id: str | None = None) -> dict[str, Any]:
            response = await client.post("/ag-ui", json=run_input(thread, None, run=run_id, resume=resume))
            assert response.status_code in (409, 422), response.text
            return {"status": response.status_code, **response.json()}

        answer = {"interruptId": first["id"], "status": "resolved"}
        left_out = await refused([answer])
        assert left_out["status"] == 422 and second["id"] in left_out["detail"]
        twice = await refused([answer, answer])
        assert twice["fields"][0]["field"] == "resume[1].interruptId"
        bad_payload = await refused([{**answer, "payload": "yes"}, {**answer, "interruptId": second["id"]}])
        assert bad_payload["fields"][0]["field"] == "resume[0].payload"
        taken = await refused([answer, {**answer, "interruptId": second["id"]}], run_id="first")
        assert (taken["status"], taken["fields"][0]["field"]) == (409, "runId")
        assert {call["status"] for call in calls_in(await stored(server, thread))} == {"awaiting_approval"}

        await run(client, run_input(thread, None, resume=[answer, {**answer, "interruptId": second["id"]}]))
        again = await refused([answer, {**answer, "interruptId": second["id"]}])
        assert (again["status"], again["error"]) == (409, "conflict")


async def test_the_events_and_cancel_routes_refuse_what_names_no_run(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process()
    thread = thread_id()
    async with server.client() as client:
        frames = await run(client, run_input(thread, "hi", run="r1"))
        for path in (f"/ag-ui/{thread}/runs/nope/events", "/ag-ui/nope/runs/r1/events"):
            missing = await client.get(path)
            assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
        for path in (f"/ag-ui/{thread}/runs/nope/cancel", "/ag-ui/nope/runs/r1/cancel"):
            assert (await client.post(path)).status_code == 404
        ended = await client.post(f"/ag-ui/{thread}/runs/r1/cancel")
        assert (ended.status_code, ended.json()["error"]) == (409, "conflict")
        base = frames[0].number[0]
        for last in ("junk", f"{base + 1}:0", f"{base}:x", "", f"{base}:-1"):
            refused = await client.get(f"/ag-ui/{thread}/runs/r1/events", headers={"Last-Event-ID": last})
            assert refused.status_code == 422, (last, refused.text)
            assert refused.json()["fields"][0]["field"] == "Last-Event-ID"
        by_query = await client.get(f"/ag-ui/{thread}/runs/r1/events", params={"lastEventId": "junk"})
        assert by_query.json()["fields"][0]["field"] == "lastEventId"
        past_the_end = await client.get(f"/ag-ui/{thread}/runs/r1/events", headers={"Last-Event-ID": frames[-1].id})
        assert (past_the_end.status_code, past_the_end.text) == (200, "")


async def test_another_keys_thread_is_404_on_every_route(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(STREAMCHAT_API_KEYS="key-a,key-b")
    thread = thread_id()
    mine = {"Authorization": "Bearer key-a"}
    theirs = {"Authorization": "Bearer key-b"}
    async with server.client(headers=mine) as client:
        await run(client, run_input(thread, "mine", run="r1"))
    async with server.client(headers=theirs) as client:
        posted = await client.post("/ag-ui", json=run_input(thread, "let me in"))
        events = await client.get(f"/ag-ui/{thread}/runs/r1/events")
        cancel = await client.post(f"/ag-ui/{thread}/runs/r1/cancel")
        resume = await client.post("/ag-ui", json=run_input(thread, None, resume=[
            {"interruptId": "x", "status": "resolved"}]))
    assert [r.status_code for r in (posted, events, cancel, resume)] == [404] * 4
    assert [m["message"] for m in await stored_with(server, thread, mine) if m["from"] == "user"] == ["mine"]
    async with server.client() as anonymous:
        assert (await anonymous.post("/ag-ui", json=run_input(thread_id()))).status_code == 401


async def stored_with(server: InProcessServer, thread: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    async with server.client(headers=headers) as client:
        return list((await client.get(f"/api/conversations/{thread}")).json()["messages"])


WEATHER = {"name": "get_weather", "description": "The weather where the user is, from their device.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def tool_message(call_id: str, content: str, **extra: Any) -> dict[str, Any]:
    return {"id": f"client-{uuid.uuid4().hex[:6]}", "role": "tool", "toolCallId": call_id, "content": content,
            **extra}


async def test_a_front_end_tool_call_ends_the_run_and_its_result_goes_on(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(**LOOP_TOOLS)
    fake_provider.script(tool_calls=[[{"text": "Looking. "}, {"name": "get_weather", "arguments": {"city": "Oslo"}},
                                      {"name": "calculator", "arguments": {"expression": "2 + 2"}}]],
                         tokens=["Clear", " skies."])
    thread = thread_id()
    async with server.client() as client:
        first = await run(client, run_input(thread, "weather?", run="asks", tools=[WEATHER]))
        weather, calculator = calls_in(await stored(server, thread))
        assert (weather["name"], weather["status"]) == ("get_weather", "awaiting_result")
        offered = fake_provider.requests()[0]["tools"]
        assert "get_weather" in [tool["function"]["name"] for tool in offered]
        assert types(first)[-9:] == [*["TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END"] * 2, "STEP_FINISHED",
                                     "TOOL_CALL_RESULT", "RUN_FINISHED"]
        assert [f.data["toolCallId"] for f in first if f.type == "TOOL_CALL_RESULT"] == [calculator["id"]]
        assert first[-1].data["outcome"] == {"type": "success", "pendingToolCallIds": [weather["id"]]}

        history = [*first[1].data["messages"]]
        answered = tool_message(weather["id"], '{"sky": "clear", "celsius": 21}')
        second = await run(client, run_input(thread, None, run="answers", tools=[WEATHER], messages=[
            *history, {"id": weather["parentId"], "role": "assistant", "content": "Looking. "},
            {"id": f"{calculator['id']}.result", "role": "tool", "toolCallId": calculator["id"], "content": "4"},
            answered]))
        again = await client.post("/ag-ui", json=run_input(thread, None, messages=[answered]))
    reply = await wait_for_status(server, thread, weather["parentId"])
    weather, calculator = calls_in(await stored(server, thread))
    assert (weather["status"], weather["result"]) == ("completed", {"sky": "clear", "celsius": 21})
    assert types(second) == ["RUN_STARTED", "MESSAGES_SNAPSHOT", "TOOL_CALL_RESULT", "TOOL_CALL_RESULT",
                             "STEP_STARTED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END",
                             "STEP_FINISHED", "RUN_FINISHED"]
    assert [f.data["content"] for f in second if f.type == "TOOL_CALL_RESULT"] == [
        '{"celsius":21,"sky":"clear"}', json.dumps(calculator["result"], separators=(",", ":"), sort_keys=True)]
    assert "outcome" not in second[-1].data
    assert text_of(first) + text_of(second) == reply["message"] == "Looking. Clear skies."
    assert (again.status_code, again.json()["fields"][0]["field"]) == (409, "messages[0].toolCallId")
    tool_turns = [m for m in fake_provider.requests()[1]["messages"] if m["role"] == "tool"]
    assert '{"sky":"clear","celsius":21}' in [turn["content"] for turn in tool_turns], "the model read the result"


async def test_a_front_end_tool_answered_with_an_error_and_bad_results(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await in_process(**LOOP_TOOLS)
    fake_provider.script(tool_calls=[[{"name": "get_weather", "arguments": {"city": "Oslo"}}]], tokens=["Sorry."])
    thread = thread_id()
    async with server.client() as client:
        calculator_too = await client.post("/ag-ui", json=run_input(thread, "hi", tools=[
            WEATHER, {**WEATHER, "name": "calculator"}]))
        assert (calculator_too.status_code, calculator_too.json()["fields"][0]["field"]) == (422, "tools[1].name")
        bad_name = await client.post("/ag-ui", json=run_input(thread, "hi", tools=[{**WEATHER, "name": "a b"}]))
        assert bad_name.json()["fields"][0]["field"] == "tools[0].name"
        await run(client, run_input(thread, "weather?", tools=[WEATHER]))
        [weather] = calls_in(await stored(server, thread))
        unknown = await client.post("/ag-ui", json=run_input(thread, None, messages=[tool_message("nope", "1")]))
        assert (unknown.status_code, unknown.json()["fields"][0]["field"]) == (422, "messages[0].toolCallId")
        failed = await run(client, run_input(thread, None, messages=[
            tool_message(weather["id"], "", error="no location permission")]))
    [weather] = calls_in(await stored(server, thread))
    assert (weather["status"], weather["error"]) == ("error", "no location permission")
    assert [f.data["content"] for f in failed if f.type == "TOOL_CALL_RESULT"] == ["error: no location permission"]
    assert text_of(failed) == "Sorry."


async def test_a_round_with_an_approval_and_a_front_end_call_waits_for_both(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    """The interrupt comes first (a run that stops to ask is never a success); the run that answers it ends
    with the front-end call still pending; the run that gives its result goes on. Each run resumes
    exactly after any of its events."""
    server = await in_process(**LOOP_TOOLS)
    fake_provider.script(tool_calls=[[{"name": "delete_file", "arguments": {"path": "/tmp/x"}},
                                      {"name": "get_weather", "arguments": {"city": "Rome"}}]], tokens=["Done."])
    thread = thread_id()
    async with server.client() as client:
        first = await run(client, run_input(thread, "both", run="one", tools=[WEATHER]))
        delete, weather = calls_in(await stored(server, thread))
        assert first[-1].data["outcome"]["type"] == "interrupt"
        assert [i["id"] for i in first[-1].data["outcome"]["interrupts"]] == [delete["id"]]
        second = await run(client, run_input(thread, None, run="two", resume=[
            {"interruptId": delete["id"], "status": "resolved"}]))
        assert [f.data["toolCallId"] for f in second if f.type == "TOOL_CALL_RESULT"] == [delete["id"]]
        assert second[-1].data["outcome"] == {"type": "success", "pendingToolCallIds": [weather["id"]]}
        third = await run(client, run_input(thread, None, run="three", messages=[
            tool_message(weather["id"], "sunny")]))
        assert [f.data["content"] for f in third if f.type == "TOOL_CALL_RESULT"] == [
            '{"deleted":"/tmp/x"}', '"sunny"']
        assert text_of(third) == "Done." and "outcome" not in third[-1].data
        for name, whole in (("one", first), ("two", second), ("three", third)):
            for index in range(-1, len(whole)):
                headers = {} if index < 0 else {"Last-Event-ID": whole[index].id}
                again = await client.get(f"/ag-ui/{thread}/runs/{name}/events", headers=headers)
                assert [(f.id, f.data) for f in frames_of(again.text)] == [(f.id, f.data) for f in whole[index + 1:]]


async def test_a_run_whose_thread_is_deleted_ends_with_run_error(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    """The delete comes while the run streams (its first frame read, so the POST's send is done): a
    server process, as the in-process transport hands a response over only once it ended."""
    server = servers.start()
    fake_provider.script(tokens=["one", " two"], hold_after=1)
    thread = thread_id()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with client.stream("POST", "/ag-ui", json=run_input(thread, "go", run="doomed")) as response:
            chunks = response.aiter_bytes()
            body = await anext(chunks)
            await fake_provider.until_held()
            assert (await client.delete(f"/api/conversations/{thread}")).status_code == 204
            async for chunk in chunks:
                body += chunk
        frames = frames_of(body.decode())
        gone = await client.get(f"/ag-ui/{thread}/runs/doomed/events")
    assert frames[-1].data == {"type": "RUN_ERROR", "message": "the conversation was deleted",
                               "code": "thread_deleted"}
    assert gone.status_code == 404


async def test_a_refused_run_takes_no_thread(in_process: InProcessStarter, fake_provider: FakeProvider) -> None:
    server = await in_process(STREAMCHAT_API_KEYS="key-a,key-b")
    thread = thread_id()
    async with server.client(headers={"Authorization": "Bearer key-a"}) as client:
        refused = await client.post("/ag-ui", json=run_input(thread, "   "))
        assert refused.status_code == 422
    async with server.client(headers={"Authorization": "Bearer key-b"}) as client:
        frames = await run(client, run_input(thread, "mine after all"))
    assert frames[-1].type == "RUN_FINISHED"


async def test_a_run_reads_the_same_through_the_responses_api_and_the_stored_conversation(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    """A reply started through AG-UI is a reply like any other: the Responses API shows the same text
    (multi-byte characters included) and the same call, and the conversation stores both."""
    server = await in_process(**LOOP_TOOLS)
    fake_provider.script(tool_calls=[[{"text": "Grüße — "},
                                      {"name": "calculator", "arguments": {"expression": "3*3"}}]],
                         tokens=["naïve ", "café ", "👩", "\u200d", "💻 ", "日本."])
    thread = thread_id()
    async with server.client() as client:
        frames = await run(client, run_input(thread, "hi"))
        reply_id = next(f.data["messageId"] for f in frames if f.type == "TEXT_MESSAGE_START")
        response = (await client.get(f"/v1/responses/{reply_id}")).json()
    messages = await stored(server, thread)
    [call] = calls_in(messages)
    text = "".join(part["text"] for item in response["output"] if item["type"] == "message"
                   for part in item["content"])
    reply = next(m for m in messages if m["from"] == "assistant")
    assert text_of(frames).encode() == text.encode() == reply["message"].encode()
    assert [item["id"] for item in response["output"] if item["type"] == "mcp_call"] == [f"mcp_{call['id']}"]
    assert [f.data["toolCallId"] for f in frames if f.type == "TOOL_CALL_START"] == [call["id"]]


async def test_a_run_beside_a_reply_that_waits_shows_it_as_it_stood_whenever_it_is_read(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    """A message sent while the reply before it waits for an approval is answered at once; its run's
    snapshot shows the waiting reply as it stood, and still does once that reply has gone on and ended."""
    server = await in_process(**LOOP_TOOLS)
    fake_provider.script(tool_calls=DELETE_ROUNDS, tokens=["Done."])
    thread = thread_id()
    async with server.client() as client:
        await run(client, run_input(thread, "tidy up", run="one"))
        calculator, delete = calls_in(await stored(server, thread))
        fake_provider.reset()
        fake_provider.script(tokens=["Meanwhile", "."])
        second = await run(client, run_input(thread, "and meanwhile?", run="two"))
        waiting = second[1].data["messages"][1]
        assert waiting == {"id": delete["parentId"], "role": "assistant", "content": "Tidying. ", "toolCalls": [
            {"id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}
            for call in (calculator, delete)]}
        assert [m["toolCallId"] for m in second[1].data["messages"] if m["role"] == "tool"] == [calculator["id"]]
        assert text_of(second) == "Meanwhile."
        approved = await client.post(f"/api/conversations/{thread}/messages/{delete['id']}/approve")
        assert approved.status_code == 200
        await wait_for_status(server, thread, delete["parentId"])
        again = await client.get(f"/ag-ui/{thread}/runs/two/events")
    assert [(f.id, f.data) for f in frames_of(again.text)] == [(f.id, f.data) for f in second]
