"""OpenAI ChatKit's server protocol at POST /chatkit, judged by the `openai-chatkit` package's own models:
every frame of every stream parses as its `ThreadStreamEvent`, every JSON answer as its response type
(`Thread`, `Page[ThreadItem]`, `Page[ThreadMetadata]`). In-process (real HTTP to the app, the fake
provider for the model), but for the stream cut while the reply runs, which needs a real server
process (the in-process transport hands over a response only once it has ended)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from pydantic import TypeAdapter

from conftest import FakeProvider, InProcessStarter
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

