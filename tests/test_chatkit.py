"""OpenAI ChatKit's server protocol at POST /chatkit, judged by the `openai-chatkit` package's own models:
every frame of every stream parses as its `ThreadStreamEvent`, every JSON answer as its response type
(`Thread`, `Page[ThreadItem]`, `Page[ThreadMetadata]`). In-process (real HTTP to the app, the fake
provider for the model), but for the stream cut while the reply runs, which needs a real server
process (the in-process transport hands over a response only once it has ended)."""

from __future__ import annotations

import asyncio
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import TypeAdapter

from conftest import FakeProvider, InProcessStarter, Server
from helpers import InProcessServer, wait_for_status

with warnings.catch_warnings():  # its widgets module warns about itself on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from chatkit.types import Page, Thread, ThreadItem, ThreadMetadata, ThreadStreamEvent

EVENTS: TypeAdapter[Any] = TypeAdapter(ThreadStreamEvent)
ITEMS = TypeAdapter(Page[ThreadItem])
THREADS = TypeAdapter(Page[ThreadMetadata])
TOKENS = ["The", " river", " runs", "."]


@dataclass
class Frame:
    id: str
    data: dict[str, Any]


def frames_of(text: str) -> list[Frame]:
    """The SSE frames of a ChatKit stream, each checked: an `id:`, and data that is a ThreadStreamEvent."""
    frames: list[Frame] = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        assert set(fields) == {"id", "data"}, block
        data = orjson.loads(fields["data"])
        EVENTS.validate_python(data)
        frames.append(Frame(fields["id"], data))
    return frames


def order(event_id: str) -> tuple[int, int]:
    anchor, number = event_id.split(".")
    return int(anchor), int(number)


def text_of(frames: list[Frame]) -> str:
    return "".join(frame.data["update"]["delta"] for frame in frames if frame.data["type"] == "thread.item.updated"
                   and frame.data["update"]["type"] == "assistant_message.content_part.text_delta")


def kinds(frames: list[Frame]) -> list[str]:
    return [frame.data["type"] if frame.data["type"] != "thread.item.updated" else frame.data["update"]["type"]
            for frame in frames]


def shape(frames: list[Frame]) -> list[str]:
    """The kinds of the frames, each run of text deltas as one `text_delta...` (the fake streams words)."""
    shaped: list[str] = []
    for kind in kinds(frames):
        kind = "text_delta..." if kind.endswith(".text_delta") else kind
        if not (kind == "text_delta..." and shaped[-1:] == [kind]):
            shaped.append(kind)
    return shaped


def user_input(text: str, **options: Any) -> dict[str, Any]:
    return {"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": options}


async def post(app: InProcessServer, kind: str, params: dict[str, Any], **headers: str) -> httpx.Response:
    async with app.client() as client:
        return await client.post("/chatkit", json={"type": kind, "params": params}, headers=headers)


async def streamed(app: InProcessServer, kind: str, params: dict[str, Any]) -> list[Frame]:
    answer = await post(app, kind, params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/event-stream")
    frames = frames_of(answer.text)
    ids = [order(frame.id) for frame in frames]
    assert ids == sorted(set(ids)), f"ids unique and rising: {ids}"
    return frames


async def conversation(app: InProcessServer, cid: str) -> dict[str, Any]:
    async with app.client() as client:
        answer = await client.get(f"/api/conversations/{cid}", params={"all": "true"})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def until_call(app: InProcessServer, status: str, timeout: float = 20) -> dict[str, Any]:
    """The first tool call of any of the app's conversations that has `status` (polled), with its conversation."""
    async def found() -> dict[str, Any] | None:
        async with app.client() as client:
            listed = (await client.get("/api/conversations")).json()["conversations"]
            for entry in listed:
                messages = (await client.get(f"/api/conversations/{entry['conversationId']}")).json()["messages"]
                for message in messages:
                    if message["from"] == "tool" and message["status"] == status:
                        return {**message, "conversationId": entry["conversationId"]}
        return None

    deadline = asyncio.get_running_loop().time() + timeout
    while (call := await found()) is None:
        assert asyncio.get_running_loop().time() < deadline, f"no call {status} within {timeout:g}s"
        await asyncio.sleep(0.02)
    return call


async def test_a_conversation_driven_request_by_request(in_process: InProcessStarter,
                                                        fake_provider: FakeProvider) -> None:
    app = await in_process()
    fake_provider.script(tokens=TOKENS)
    created = await streamed(app, "threads.create", {"input": user_input("Tell me of rivers")})
    thread_id = created[0].data["thread"]["id"]
    assert kinds(created) == [
        "thread.created", "thread.item.done", "stream_options", "thread.item.added",
        "assistant_message.content_part.added", *["assistant_message.content_part.text_delta"] * len(TOKENS),
        "assistant_message.content_part.done", "thread.item.done"]
    user, reply = created[1].data["item"], created[-1].data["item"]
    assert user["content"] == [{"type": "input_text", "text": "Tell me of rivers"}]
    stored = await wait_for_status(app, thread_id, reply["id"])
    assert text_of(created) == reply["content"][0]["text"] == stored["message"] == "".join(TOKENS)

    fake_provider.script(tokens=["And", " seas", "."])
    second = await streamed(app, "threads.add_user_message", {"thread_id": thread_id,
                                                              "input": user_input("And seas?")})
    assert kinds(second)[:3] == ["thread.item.done", "stream_options", "thread.item.added"]
    assert order(second[0].id) > order(created[-1].id), "ids rise across the thread's streams"
    assert text_of(second) == "And seas."
    await wait_for_status(app, thread_id, second[-1].data["item"]["id"])

    got = await post(app, "threads.get_by_id", {"thread_id": thread_id})
    thread = Thread.model_validate(got.json())
    assert thread.id == thread_id and thread.title == "Tell me of rivers"
    assert [item.type for item in thread.items.data] == ["user_message", "assistant_message"] * 2
    assert [item.id for item in thread.items.data] == [user["id"], reply["id"], second[0].data["item"]["id"],
                                                       second[-1].data["item"]["id"]]
    first_page = ITEMS.validate_python((await post(app, "items.list", {"thread_id": thread_id, "limit": 3})).json())
    assert [item.id for item in first_page.data] == [item.id for item in reversed(thread.items.data)][:3]
    assert first_page.has_more and first_page.after == first_page.data[-1].id
    rest = ITEMS.validate_python((await post(app, "items.list", {"thread_id": thread_id, "limit": 3,
                                                                 "after": first_page.after})).json())
    assert [item.id for item in rest.data] == [user["id"]] and not rest.has_more

    listed = THREADS.validate_python((await post(app, "threads.list", {"limit": 10})).json())
    assert thread_id in [entry.id for entry in listed.data]
    renamed = Thread.model_validate((await post(app, "threads.update", {"thread_id": thread_id,
                                                                        "title": "Waters"})).json())
    assert renamed.title == "Waters"
    assert (await conversation(app, thread_id))["title"] == "Waters"

    rated = await post(app, "items.feedback", {"thread_id": thread_id, "item_ids": [reply["id"]], "kind": "positive"})
    assert rated.status_code == 200 and rated.json() == {}
    feedback = await app.runtime.state.get_group(f"feedback:{thread_id}")
    assert {key: value["kind"] for key, value in feedback.items()} == {reply["id"]: "positive"}

    deleted = await post(app, "threads.delete", {"thread_id": thread_id})
    assert deleted.status_code == 200 and deleted.json() == {}
    gone = await post(app, "threads.get_by_id", {"thread_id": thread_id})
    assert gone.status_code == 404
    assert gone.json()["type"] == "error" and thread_id in gone.json()["message"]
    assert await app.runtime.state.get_group(f"feedback:{thread_id}") == {}



async def resumed(app: InProcessServer, thread_id: str, last_event_id: str | None) -> list[Frame]:
    async with app.client() as client:
        answer = await client.get(f"/chatkit/threads/{thread_id}/events",
                                  headers={} if last_event_id is None else {"Last-Event-ID": last_event_id})
    assert answer.status_code == 200, answer.text
    return frames_of(answer.text)


async def test_server_run_tool_calls_are_a_workflow_between_the_texts_and_resume_exactly(
        in_process: InProcessStarter, fake_provider: FakeProvider) -> None:
    app = await in_process()
    fake_provider.script(tool_calls=[[{"text": "Let me see. "},
                                      {"name": "calculator", "arguments": {"expression": "6 * 7"}},
                                      {"name": "calculator", "arguments": {"expression": "1 +"}}]],
                         tokens=["It is", " 42."], argument_chunk=3)
    frames = await streamed(app, "threads.create", {"input": user_input("What is 6 * 7?")})
    thread_id = frames[0].data["thread"]["id"]
    text = ["assistant_message.content_part.added", "text_delta...", "assistant_message.content_part.done"]
    added, updated = "workflow.task.added", "workflow.task.updated"
    assert shape(frames) == [
        "thread.created", "thread.item.done", "stream_options",
        "thread.item.added", *text, "thread.item.done",
        "thread.item.added", added, added, updated, updated, "thread.item.done",
        "thread.item.added", *text, "thread.item.done"]
    reply_id = frames[3].data["item"]["id"]
    [workflow] = [frame.data["item"] for frame in frames if frame.data["type"] == "thread.item.done"
                  and frame.data["item"]["type"] == "workflow"]
    assert workflow["id"] == f"{reply_id}.w0" and frames[-1].data["item"]["id"] == f"{reply_id}.m1"
    tasks = workflow["workflow"]["tasks"]
    assert [(task["title"], task["status_indicator"]) for task in tasks] == [("calculator", "complete")] * 2
    assert tasks[0]["content"] == 'Result: {"expression":"6 * 7","result":42}'
    assert tasks[1]["content"].startswith("Error: ")
    stored = await wait_for_status(app, thread_id, reply_id)
    assert text_of(frames) == stored["message"] == "Let me see. It is 42."

    items = ITEMS.validate_python((await post(app, "items.list", {"thread_id": thread_id, "order": "asc"})).json())
    shown = [item.model_dump(mode="json", exclude_none=True) for item in items.data]
    streamed_items = [frame.data["item"] for frame in frames if frame.data["type"] == "thread.item.done"]
    assert shown == [ITEMS.validate_python({"data": [item]}).data[0].model_dump(mode="json", exclude_none=True)
                     for item in streamed_items], "the listing is the stream's items"

    again = await resumed(app, thread_id, None)
    assert [(frame.id, frame.data) for frame in again] == [(frame.id, frame.data) for frame in frames]
    for index, frame in enumerate(frames):
        tail = await resumed(app, thread_id, frame.id)
        assert [(each.id, each.data) for each in tail] == [(each.id, each.data) for each in frames[index + 1:]]


async def test_retry_after_item_keeps_the_old_reply_as_a_sibling(in_process: InProcessStarter,
                                                                 fake_provider: FakeProvider) -> None:
    app = await in_process()
    fake_provider.script(tokens=["First", " answer."])
    created = await streamed(app, "threads.create", {"input": user_input("Answer me")})
    thread_id, user_id = created[0].data["thread"]["id"], created[1].data["item"]["id"]
    first = created[-1].data["item"]["id"]
    await wait_for_status(app, thread_id, first)

    fake_provider.script(tokens=["Second", " answer."])
    retried = await streamed(app, "threads.retry_after_item", {"thread_id": thread_id, "item_id": user_id})
    assert shape(retried)[:2] == ["stream_options", "thread.item.added"], "a retry shows no user message again"
    assert order(retried[0].id) > order(created[-1].id)
    second = retried[-1].data["item"]["id"]
    assert second != first and text_of(retried) == "Second answer."
    await wait_for_status(app, thread_id, second)

    fake_provider.script(tokens=["Third", " answer."])
    again = await streamed(app, "threads.retry_after_item", {"thread_id": thread_id, "item_id": second})
    third = again[-1].data["item"]["id"]
    await wait_for_status(app, thread_id, third)

    stored = await conversation(app, thread_id)
    replies = [message for message in stored["messages"] if message["from"] == "assistant"]
    assert [(reply["id"], reply["message"], reply["parentId"]) for reply in replies] == [
        (first, "First answer.", user_id), (second, "Second answer.", user_id), (third, "Third answer.", user_id)]
    assert replies[0]["siblings"] == [first, second, third] and stored["activeMessageId"] == third
    items = ITEMS.validate_python((await post(app, "items.list", {"thread_id": thread_id, "order": "asc"})).json())
    assert [item.id for item in items.data] == [user_id, third], "the thread is the active branch"


async def test_a_failed_reply_ends_its_stream_with_an_error_event(in_process: InProcessStarter,
                                                                  fake_provider: FakeProvider) -> None:
    app = await in_process(STREAMCHAT_PROVIDER_RETRIES="0")
    fake_provider.script(fail=[500])
    frames = await streamed(app, "threads.create", {"input": user_input("fail, please")})
    assert frames[-1].data["type"] == "error"
    assert frames[-1].data["code"] == "custom" and frames[-1].data["allow_retry"] is True
    assert frames[-1].data["message"]


async def test_a_call_awaiting_approval_waits_in_its_task_and_the_stream_goes_on_once_approved(
        in_process: InProcessStarter, fake_provider: FakeProvider) -> None:
    app = await in_process(STREAMCHAT_TOOLS="loop_tools")
    fake_provider.script(tool_calls=[[{"name": "delete_file", "arguments": {"path": "/tmp/old.txt"}}]],
                         tokens=["Deleted", "."])
    opened = asyncio.create_task(streamed(app, "threads.create", {"input": user_input("tidy up")}))
    call = await until_call(app, "awaiting_approval")
    async with app.client() as client:
        approved = await client.post(f"/api/conversations/{call['conversationId']}/messages/{call['id']}/approve")
    assert approved.status_code == 200, approved.text
    frames = await asyncio.wait_for(opened, 30)
    [added] = [frame.data["update"]["task"] for frame in frames if frame.data["type"] == "thread.item.updated"
               and frame.data["update"]["type"] == "workflow.task.added"]
    assert added["status_indicator"] == "loading"
    assert f"POST /api/conversations/{call['conversationId']}/messages/{call['id']}/approve" in added["content"]
    [done] = [frame.data["item"] for frame in frames if frame.data["type"] == "thread.item.done"
              and frame.data["item"]["type"] == "workflow"]
    assert done["workflow"]["tasks"][0]["content"] == 'Result: {"deleted":"/tmp/old.txt"}'
    assert text_of(frames) == "Deleted."


async def frames_until(response: httpx.Response, stop: Any) -> list[Frame]:
    """The frames of a live stream until (and with) the first for which `stop(frame)`, or its end."""
    frames: list[Frame] = []
    block: list[str] = []
    async for line in response.aiter_lines():
        if line:
            block.append(line)
            continue
        if block:
            frames += frames_of("\n".join(block))
            block = []
            if frames and stop(frames[-1]):
                break
    return frames


async def test_a_stream_cut_mid_reply_resumes_exactly_from_its_last_event_id(
        server: Server, fake_provider: FakeProvider) -> None:
    """The client goes away after two pieces; the reply runs on; a resume from the last id it saw gets
    every later event once, live (the model held meanwhile), and the whole equals the stored reply."""
    fake_provider.script(tokens=["One", " two", " three", " four", "."], hold_after=2)
    body = {"type": "threads.create", "params": {"input": user_input("count")}}
    async with server.client() as client:
        async with client.stream("POST", "/chatkit", json=body) as response:
            assert response.status_code == 200
            head = await frames_until(response, lambda frame: text_of([frame]) == " two")
        thread_id = head[0].data["thread"]["id"]
        await fake_provider.until_held()
        async with client.stream("GET", f"/chatkit/threads/{thread_id}/events",
                                 headers={"Last-Event-ID": head[-1].id}) as response:
            assert response.status_code == 200
            fake_provider.release()
            tail = await frames_until(response, lambda frame: False)
        whole = head + tail
        assert [order(frame.id) for frame in whole] == sorted({order(frame.id) for frame in whole}), "none twice"
        reply_id = whole[-1].data["item"]["id"]
        stored = await wait_for_status(server.url, thread_id, reply_id)
        assert stored["status"] == "completed"
        assert text_of(whole) == stored["message"] == "One two three four."
        answer = await client.get(f"/chatkit/threads/{thread_id}/events")
        assert [(frame.id, frame.data) for frame in frames_of(answer.text)] == [
            (frame.id, frame.data) for frame in whole], "the stream read again from its start is the same"


def refusal(answer: httpx.Response, status: int, field: str) -> dict[str, Any]:
    """A refusal in ChatKit's shape (its `error` event, which the package parses) naming `field`."""
    assert answer.status_code == status, (answer.status_code, answer.text)
    body: dict[str, Any] = answer.json()
    EVENTS.validate_python(body)
    assert body["type"] == "error" and body["allow_retry"] is False
    assert field in body["message"] and body["message"] == body["detail"], body
    return body


BAD_BODIES = [
    ({"type": "nope", "params": {}}, 422, "type"),
    ({"params": {}}, 422, "type"),
    ({"type": "attachments.create", "params": {"name": "a", "size": 1, "mime_type": "text/plain"}}, 400, "type"),
    ({"type": "threads.custom_action", "params": {}}, 400, "type"),
    ({"type": "threads.get_by_id", "params": {}}, 422, "params.thread_id"),
    ({"type": "threads.create", "params": {"input": user_input("   ")}}, 422, "params.input.content"),
    ({"type": "threads.create", "params": {"input": {**user_input("hi"), "attachments": ["file_1"]}}}, 422,
     "params.input.attachments"),
    ({"type": "threads.create", "params": {"input": {**user_input("hi"), "content": []}}}, 422,
     "params.input.content"),
    ({"type": "threads.create", "params": {"input": user_input("hi", model="no-such-model")}}, 422,
     "params.input.inference_options.model"),
    ({"type": "threads.create", "params": {"input": user_input("hi")}, "metadata": {"settings": {"temperature": 9}}},
     422, "metadata.settings.temperature"),
    ({"type": "threads.list", "params": {"limit": 0}}, 422, "params.limit"),
    ({"type": "threads.list", "params": {"order": "asc"}}, 422, "params.order"),
    ({"type": "threads.list", "params": {"after": "not-a-cursor"}}, 422, "params.after"),
    ({"type": "items.feedback", "params": {"thread_id": "t", "item_ids": ["a"], "kind": "meh"}}, 422, "params.kind"),
    ({"type": "threads.update", "params": {"thread_id": "t", "title": ""}}, 422, "params.title"),
    ({"type": "threads.add_user_message", "params": {"thread_id": "no such thread", "input": user_input("hi")}}, 422,
     "params.thread_id"),
    ({"type": "threads.add_user_message", "params": {"thread_id": "unknown-thread", "input": user_input("hi")}}, 404,
     "unknown-thread"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_BODIES)
async def test_bad_requests_are_refused_in_chatkits_shape_naming_the_field(
        in_process: InProcessStarter, body: dict[str, Any], status: int, field: str) -> None:
    app = await in_process()
    async with app.client() as client:
        refusal(await client.post("/chatkit", json=body), status, field)


async def test_bad_requests_about_a_thread_name_what_is_wrong(in_process: InProcessStarter,
                                                              fake_provider: FakeProvider) -> None:
    app = await in_process()
    created = await streamed(app, "threads.create", {"input": user_input("hello")})
    thread_id = created[0].data["thread"]["id"]
    await wait_for_status(app, thread_id, created[-1].data["item"]["id"])
    async with app.client() as client:
        body = await client.post("/chatkit", content=b"{not json")
        assert refusal(body, 400, "JSON")["error"] == "invalid_json"
        events = f"/chatkit/threads/{thread_id}/events"
        refusal(await client.get(events, headers={"Last-Event-ID": "yesterday"}), 422, "Last-Event-ID")
        refusal(await client.get(events, headers={"Last-Event-ID": "123456.0"}), 404, "Last-Event-ID")
        refusal(await client.get("/chatkit/threads/unknown/events"), 404, "unknown")
    refusal(await post(app, "items.list", {"thread_id": thread_id, "after": "not-an-item"}), 422, "params.after")
    refusal(await post(app, "threads.retry_after_item", {"thread_id": thread_id, "item_id": "nope"}), 404,
            "params.item_id")
    refusal(await post(app, "items.feedback", {"thread_id": thread_id, "item_ids": ["nope"], "kind": "negative"}),
            404, "params.item_ids[0]")
    refusal(await post(app, "threads.add_client_tool_output", {"thread_id": thread_id, "result": {"ok": True}}),
            409, "params.thread_id")


async def test_another_keys_thread_is_not_found(in_process: InProcessStarter, fake_provider: FakeProvider) -> None:
    app = await in_process(STREAMCHAT_API_KEYS="key-a,key-b")
    owner, other = {"Authorization": "Bearer key-a"}, {"Authorization": "Bearer key-b"}
    async with app.client(headers=owner) as client:
        answer = await client.post("/chatkit", json={"type": "threads.create", "params": {"input": user_input("mine")}})
        created = frames_of(answer.text)
    thread_id, user_id = created[0].data["thread"]["id"], created[1].data["item"]["id"]
    await wait_for_status(app, thread_id, created[-1].data["item"]["id"], headers=owner)
    requests = [
        ("threads.get_by_id", {"thread_id": thread_id}),
        ("items.list", {"thread_id": thread_id}),
        ("threads.add_user_message", {"thread_id": thread_id, "input": user_input("theirs")}),
        ("threads.retry_after_item", {"thread_id": thread_id, "item_id": user_id}),
        ("threads.add_client_tool_output", {"thread_id": thread_id, "result": 1}),
        ("threads.update", {"thread_id": thread_id, "title": "theirs"}),
        ("items.feedback", {"thread_id": thread_id, "item_ids": [user_id], "kind": "negative"}),
        ("threads.delete", {"thread_id": thread_id}),
    ]
    async with app.client(headers=other) as client:
        for kind, params in requests:
            refusal(await client.post("/chatkit", json={"type": kind, "params": params}), 404, thread_id)
        refusal(await client.get(f"/chatkit/threads/{thread_id}/events"), 404, thread_id)
        listed = THREADS.validate_python((await client.post("/chatkit", json={"type": "threads.list",
                                                                              "params": {}})).json())
        assert listed.data == []
        assert (await client.post("/chatkit", json={})).status_code == 422
        assert (await client.post("/chatkit", headers={"Authorization": "Bearer wrong"}, json={})).status_code == 401
    async with app.client() as client:
        by_query = await client.get(f"/chatkit/threads/{thread_id}/events", params={"authToken": "key-a"})
        assert by_query.status_code == 200 and frames_of(by_query.text)[-1].data["type"] == "thread.item.done"
    async with app.client(headers=owner) as client:
        mine = Thread.model_validate((await client.post("/chatkit", json={"type": "threads.get_by_id", "params": {
            "thread_id": thread_id}})).json())
    assert mine.title == "mine" and len(mine.items.data) == 2


def client_tools_file(tmp_path: Path, fake: FakeProvider) -> Path:
    """A models file: one model on the fake provider, and `get_location`, a tool the client runs."""
    path = tmp_path / "models.toml"
    path.write_text(f"""
[[models]]
name = "fake"
provider = "openai"
base_url = "{fake.url}/v1"
model = "fake-model"

[[client_tools]]
name = "get_location"
description = "Where the user is, as the browser knows it."
parameters = {{ type = "object", properties = {{ precision = {{ type = "string" }} }} }}
""")
    return path


async def test_a_client_tool_round_ends_the_stream_and_its_output_streams_the_rest(
        in_process: InProcessStarter, fake_provider: FakeProvider, tmp_path: Path) -> None:
    """A ChatKit thread gets the models file's client tool by its settings (`metadata.settings.tools`);
    the round's server call shows as a workflow, the client's call as a pending `client_tool_call` item
    that ends the stream; `threads.add_client_tool_output` gives the result and streams the rest of the
    same reply, its ids going on from the first stream's."""
    app = await in_process(STREAMCHAT_MODELS_FILE=str(client_tools_file(tmp_path, fake_provider)))
    fake_provider.script(tool_calls=[[{"text": "Let me look. "},
                                      {"name": "calculator", "arguments": {"expression": "2 + 2"}},
                                      {"name": "get_location", "arguments": {"precision": "city"}}]],
                         tokens=["You", " are", " in", " Oslo."])
    settings = {"settings": {"tools": ["calculator", "get_location"]}}
    async with app.client() as client:
        answer = await client.post("/chatkit", json={"type": "threads.create", "metadata": settings,
                                                     "params": {"input": user_input("Where am I?")}})
    first = frames_of(answer.text)
    thread_id = first[0].data["thread"]["id"]
    text = ["thread.item.added", "assistant_message.content_part.added", "text_delta...",
            "assistant_message.content_part.done", "thread.item.done"]
    workflow = ["thread.item.added", "workflow.task.added", "workflow.task.updated", "thread.item.done"]
    assert shape(first) == ["thread.created", "thread.item.done", "stream_options", *text, *workflow,
                            "thread.item.done"]
    pending = first[-1].data["item"]
    reply_id = first[3].data["item"]["id"]
    assert (pending["type"], pending["status"], pending["name"], pending["arguments"]) == (
        "client_tool_call", "pending", "get_location", {"precision": "city"})
    assert pending["id"] == pending["call_id"] == f"{reply_id}.t0.1"
    assert len(fake_provider.streams()) == 1, "the reply waits for the client"

    rest = await streamed(app, "threads.add_client_tool_output", {"thread_id": thread_id,
                                                                  "result": {"city": "Oslo"}})
    assert shape(rest) == ["stream_options", "thread.item.replaced", *text]
    answered = rest[1].data["item"]
    assert (answered["id"], answered["status"], answered["output"]) == (pending["id"], "completed", {"city": "Oslo"})
    assert order(rest[0].id) == (order(first[-1].id)[0], order(first[-1].id)[1] + 1), "one run, numbered on"
    assert rest[-1].data["item"]["id"] == f"{reply_id}.m1"
    stored = await wait_for_status(app, thread_id, reply_id)
    assert text_of(first + rest) == stored["message"] == "Let me look. You are in Oslo."
    said = [message for message in fake_provider.requests()[-1]["messages"] if message["role"] == "tool"]
    assert [orjson.loads(message["content"]) for message in said] == [
        {"expression": "2 + 2", "result": 4}, {"city": "Oslo"}]

    again = await post(app, "threads.add_client_tool_output", {"thread_id": thread_id, "result": 1})
    refusal(again, 409, "params.thread_id")
    whole = first + rest
    assert [(frame.id, frame.data) for frame in await resumed(app, thread_id, None)] == [
        (frame.id, frame.data) for frame in whole]
    for index, frame in enumerate(whole):
        tail = await resumed(app, thread_id, frame.id)
        assert [(each.id, each.data) for each in tail] == [(each.id, each.data) for each in whole[index + 1:]]
    items = ITEMS.validate_python((await post(app, "items.list", {"thread_id": thread_id, "order": "asc"})).json())
    assert [(item.type, item.id) for item in items.data] == [
        ("user_message", first[1].data["item"]["id"]), ("assistant_message", reply_id),
        ("workflow", f"{reply_id}.w0"), ("client_tool_call", pending["id"]), ("assistant_message", f"{reply_id}.m1")]
    assert items.data[3].model_dump(mode="json") == ITEMS.validate_python({"data": [answered]}).data[0].model_dump(
        mode="json")
