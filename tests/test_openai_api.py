"""The official `openai` Python SDK pointed at streamchat: Responses, Chat Completions and models.

Every reply the SDK reads is compared with the reply the server stored; resumed event streams are
checked to continue exactly after the event asked for, with no event twice.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from conftest import Cluster, FakeProvider, Server, ServerFactory
from helpers import wait_for_status, wait_until_streaming

TOKENS = [f"part{i} " for i in range(16)]
OPENING = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
CLOSING = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]


def sdk(url: str, key: str = "unused") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


async def stored_reply(url: str, conversation_id: str, reply_id: str, key: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        messages = (await client.get(f"/api/conversations/{conversation_id}")).json()["messages"]
    return next(message for message in messages if message["id"] == reply_id)


def deltas(events: list[Any]) -> str:
    return "".join(event.delta for event in events if event.type == "response.output_text.delta")


def numbered(events: list[Any]) -> list[tuple[int, str, str]]:
    """What makes an event the same event: its number, its type and its text piece."""
    return [(event.sequence_number, event.type, getattr(event, "delta", "")) for event in events]


async def test_a_streamed_response_is_numbered_and_equals_the_stored_reply(
    server: Server, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tokens=TOKENS, delay=0.005)
    async with sdk(server.url) as client:
        events = [event async for event in await client.responses.create(
            model="fake-model", input="stream me", stream=True, metadata={"topic": "rivers"})]
    types = [event.type for event in events]
    assert types == [*OPENING, *["response.output_text.delta"] * len(TOKENS), *CLOSING, "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    final = events[-1].response
    assert final.conversation is not None
    reply = await stored_reply(server.url, final.conversation.id, final.id)
    assert deltas(events) == final.output_text == reply["message"] == "".join(TOKENS)
    assert final.status == "completed" and final.metadata == {"topic": "rivers"}
    assert final.usage is not None and final.usage.output_tokens == reply["usage"]["completionTokens"]
    assert events[0].response.status in ("queued", "in_progress")


@pytest.mark.parametrize("when", ["while streaming", "after the end"])
async def test_a_background_response_resumes_exactly_after_event_n(
    server: Server, fake_provider: FakeProvider, when: str,
) -> None:
    fake_provider.script(tokens=TOKENS, hold_after=4)  # held after four pieces until the test says so
    async with sdk(server.url) as client:
        stream = await client.responses.create(model="fake-model", input="long one", stream=True, background=True)
        first: list[Any] = []
        async for event in stream:
            first.append(event)
            if len(first) == 8:  # the opening four and four deltas
                break
        await stream.close()
        response_id = first[0].response.id
        cid = first[0].response.conversation.id
        if when == "after the end":
            fake_provider.release()
            await wait_for_status(server.url, cid, response_id)
        else:
            assert (await stored_reply(server.url, cid, response_id))["status"] == "streaming"
        last_seen = first[-1].sequence_number
        resumed = await client.responses.retrieve(response_id, stream=True, starting_after=last_seen)
        fake_provider.release()  # (while streaming) the rest is written once the resumed stream is open
        rest = [event async for event in resumed]
        retrieved = await client.responses.retrieve(response_id)
        whole = [event async for event in await client.responses.retrieve(response_id, stream=True)]
    assert rest[0].sequence_number == last_seen + 1
    numbers = [event.sequence_number for event in first + rest]
    assert numbers == list(range(len(numbers))), "every event once, in order"
    assert numbered(first + rest) == numbered(whole), "the very events a stream from the start has"
    assert len(whole) == len(OPENING) + len(TOKENS) + len(CLOSING) + 1
    reply = await stored_reply(server.url, cid, response_id)
    assert deltas(first) + deltas(rest) == reply["message"] == "".join(TOKENS)
    assert rest[-1].type == "response.completed" and retrieved.status == "completed"
    assert retrieved.background is True and retrieved.output_text == reply["message"]


async def test_a_response_resumes_exactly_on_another_instance_while_streaming(
    cluster: Cluster, fake_provider: FakeProvider,
) -> None:
    """The instance writing the reply keeps the piece lengths; another reads them from state."""
    a, b = cluster.start_many(2)
    fake_provider.script(tokens=TOKENS, hold_after=5)  # held after five pieces until both resumed streams are open
    async with sdk(a.url) as on_a, sdk(b.url) as on_b:
        stream = await on_a.responses.create(model="fake-model", input="across", stream=True, background=True)
        first: list[Any] = []
        async for event in stream:
            first.append(event)
            if len(first) == 9:  # the opening four and five deltas
                break
        await stream.close()
        response_id, cid = first[0].response.id, first[0].response.conversation.id
        assert (await stored_reply(b.url, cid, response_id))["status"] == "streaming"
        # Resumed on both: whichever instance runs the reply, the other one reads the lengths from state.
        resumed = await asyncio.gather(*(client.responses.retrieve(
            response_id, stream=True, starting_after=first[-1].sequence_number) for client in (on_a, on_b)))
        fake_provider.release()

        async def rest_of(stream: Any) -> list[Any]:
            return [event async for event in stream]

        rest_a, rest_b = await asyncio.gather(*(rest_of(stream) for stream in resumed))
    reply = await stored_reply(b.url, cid, response_id)
    for rest in (rest_a, rest_b):
        numbers = [event.sequence_number for event in first + rest]
        assert numbers == list(range(len(numbers)))
        assert len(numbers) == len(OPENING) + len(TOKENS) + len(CLOSING) + 1, "one delta per piece written"
        assert deltas(first) + deltas(rest) == reply["message"] == "".join(TOKENS)


async def test_previous_response_id_carries_the_history(server: Server, fake_provider: FakeProvider) -> None:
    async with sdk(server.url) as client:
        first = await client.responses.create(model="fake-model", input="my name is Ada")
        fake_provider.script(tokens=["You ", "are ", "Ada."])
        second = await client.responses.create(input="what is my name?", previous_response_id=first.id,
                                               instructions="answer briefly")
    assert first.conversation is not None and second.conversation is not None
    assert second.conversation.id == first.conversation.id
    assert second.output_text == "You are Ada." and second.previous_response_id == first.id
    sent = fake_provider.requests()[-1]["messages"]
    assert sent == [{"role": "system", "content": "answer briefly"},
                    {"role": "user", "content": "my name is Ada"},
                    {"role": "assistant", "content": first.output_text},
                    {"role": "user", "content": "what is my name?"}]


async def test_cancel_stops_a_background_response(server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(tokens=TOKENS, hold_after=3)  # never released: only the cancel ends it
    async with sdk(server.url) as client:
        created = await client.responses.create(model="fake-model", input="go on", background=True)
        assert created.status in ("queued", "in_progress")
        assert created.conversation is not None
        await fake_provider.until_held()
        await wait_until_streaming(server.url, created.conversation.id, created.id)
        cancelled = await client.responses.cancel(created.id)
        again = await client.responses.cancel(created.id)  # cancelling a cancelled one answers it again
        retrieved = await client.responses.retrieve(created.id)
    reply = await stored_reply(server.url, created.conversation.id, created.id)
    assert cancelled.status == again.status == retrieved.status == "cancelled"
    assert reply["status"] == "stopped" and retrieved.output_text == reply["message"]
    assert len(reply["message"]) < len("".join(TOKENS))


async def test_chat_completions_stream_and_not(server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(tokens=TOKENS)
    history = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"},
               {"role": "assistant", "content": "hello"}, {"role": "user", "content": "tell me more"}]
    async with sdk(server.url) as client:
        raw = await client.chat.completions.with_raw_response.create(model="fake-model", messages=history)
        completion = raw.parse()
        cid = raw.headers["x-streamchat-conversation-id"]
        chunks = [chunk async for chunk in await client.chat.completions.create(
            model="fake-model", messages=history, stream=True, stream_options={"include_usage": True},
            temperature=0.2)]
    assert fake_provider.requests()[0]["messages"] == [{"role": "system", "content": "be kind"}, *history[1:]]
    text = completion.choices[0].message.content
    assert text == "".join(TOKENS) and completion.choices[0].finish_reason == "stop"
    reply = await stored_reply(server.url, cid, completion.id.removeprefix("chatcmpl-"))
    assert reply["message"] == text and completion.usage is not None
    assert completion.usage.completion_tokens == reply["usage"]["completionTokens"]
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed == text
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    async with httpx.AsyncClient(base_url=server.url) as http:
        listed = (await http.get("/api/conversations")).json()["conversations"]
        messages = (await http.get(f"/api/conversations/{cid}")).json()["messages"]
    assert cid in [conversation["conversationId"] for conversation in listed]
    assert [m["message"] for m in messages] == ["hi", "hello", "tell me more", text]


async def test_models_lists_the_serving_model(server: Server) -> None:
    async with sdk(server.url) as client:
        models = [model.id async for model in client.models.list()]
    assert models == ["fake-model"]


# -- bad input, in OpenAI's error shape ---------------------------------------------------

async def test_bad_input_is_a_400_naming_the_parameter(server: Server) -> None:
    async with sdk(server.url) as client:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"input": "x", "temperature": 2.5}, "temperature"),
            ({"input": [{"role": "assistant", "content": "only me"}]}, "input"),
            ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}]},
             "input[0].content[0]"),
            ({"input": "x", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
            ({"input": "   "}, "input"),
            ({"input": "x", "store": False}, "store"),
        ]
        for extra, param in cases:
            with pytest.raises(openai.BadRequestError) as refused:
                await client.responses.create(model="fake-model", **extra)
            body: Any = refused.value.body
            assert body["param"] == param, (extra, body)
            assert body["type"] == "invalid_request_error" and param.split("[")[0] in body["message"]
        with pytest.raises(openai.NotFoundError) as missing:
            await client.responses.create(model="gpt-nope", input="x")
        assert missing.value.code == "model_not_found"
        with pytest.raises(openai.NotFoundError):
            await client.responses.create(model="fake-model", input="x", previous_response_id="resp_unknown")
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve("unknown")
        with pytest.raises(openai.BadRequestError) as negative:
            await client.responses.retrieve("unknown", stream=True, starting_after=-5)
        assert getattr(negative.value.body, "get", dict().get)("param") == "starting_after"
        done = await client.responses.create(model="fake-model", input="finish first")
        with pytest.raises(openai.BadRequestError):
            await client.responses.cancel(done.id)
        for extra in ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, {"functions": [{"name": "f"}]},
                      {"n": 2}, {"response_format": {"type": "json_object"}}):
            with pytest.raises(openai.BadRequestError):
                await client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}],
                                                     **extra)
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model="fake-model", messages=[])
    async with httpx.AsyncClient(base_url=server.url) as http:
        not_json = await http.post("/v1/responses", content=b"{", headers={"content-type": "application/json"})
        unknown_route = await http.get("/v1/nothing-here")
    assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "invalid_request_error"
    assert unknown_route.status_code == 404 and "message" in unknown_route.json()["error"]


async def test_keys_are_the_sdks_api_key_and_another_keys_response_is_not_found(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    keyed = servers.start(STREAMCHAT_API_KEYS="key-one,key-two")
    async with sdk(keyed.url, "key-one") as mine, sdk(keyed.url, "key-two") as theirs, \
            sdk(keyed.url, "wrong") as nobody:
        created = await mine.responses.create(model="fake-model", input="private")
        with pytest.raises(openai.NotFoundError):
            await theirs.responses.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            await theirs.responses.cancel(created.id)
        with pytest.raises(openai.NotFoundError):
            await theirs.responses.create(model="fake-model", input="x", previous_response_id=created.id)
        with pytest.raises(openai.AuthenticationError) as refused:
            await nobody.models.list()
        assert refused.value.code == "invalid_api_key"
        assert (await mine.responses.retrieve(created.id)).output_text == created.output_text


def test_the_sync_sdk_reads_a_stream(server: Server) -> None:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        events = list(client.responses.create(model="fake-model", input=f"sync {uuid.uuid4()}", stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.output_text == deltas(events)


async def test_a_stopped_response_ends_incomplete_and_a_failed_one_failed(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    server = servers.start(STREAMCHAT_PROVIDER_RETRIES="0")
    fake_provider.script(tokens=TOKENS, hold_after=2)  # never released: only the cancel ends it
    async with sdk(server.url) as client:
        events: list[Any] = []
        async for event in await client.responses.create(model="fake-model", input="stop me", stream=True):
            events.append(event)
            if len(events) == 6:
                await client.responses.cancel(event.item_id.removeprefix("msg_"))
        assert [event.sequence_number for event in events] == list(range(len(events)))
        assert [event.type for event in events[-4:]] == [*CLOSING, "response.incomplete"]
        stopped = events[-1].response
        assert stopped.status == "cancelled" and stopped.output_text == deltas(events)
        assert stopped.conversation is not None
        assert (await stored_reply(server.url, stopped.conversation.id, stopped.id))["message"] == deltas(events)
        assert deltas(events) == "".join(TOKENS[:2])

        fake_provider.script(fail=[500], hold_after=None)
        failed = [event async for event in await client.responses.create(input="fail me", stream=True)]
    assert failed[-1].type == "response.failed"
    assert failed[-1].response.status == "failed" and failed[-1].response.error is not None
    assert "500" in failed[-1].response.error.message
