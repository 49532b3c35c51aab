"""Tools that run in the client, through the official `openai` SDK: a request's function `tools` are
offered for that reply, and the model's calls of them come back as OpenAI's function calls.

Responses: a call is a `function_call` item (`call_id` the call's item id), the response ends
`completed`, and `function_call_output` input items continue the reply, with `previous_response_id`
or (the SDK docs' pattern) the whole history sent again; every event parses as the SDK's own class and
resumes exactly (`starting_after`) across the wait. Chat Completions: the calls stream back as
`delta.tool_calls` with `finish_reason: "tool_calls"` (or `message.tool_calls`), and the next
request's `tool` messages continue the same reply, found by their `tool_call_id`.

In process: real HTTP through the SDK's own client, the fake provider streaming the calls, the loop
tools (tests/loop_tools) where server-run calls and approvals are mixed in."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai import AsyncOpenAI

from conftest import Cluster, FakeProvider, InProcessStarter
from helpers import InProcessServer, wait_for_status
from test_client_tools import client_tools_file
from test_openai_tools import OPEN_MESSAGE, collect, dumped, same_event, types, validated
from test_openai_tools import sdk as remote_sdk
from test_openai_tools_resume import read_until
from test_tool_loop import messages, tool_messages, until_call

WEATHER = {"type": "function", "name": "get_weather", "description": "Today's weather where the user is.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
           "strict": True}
ASK = [[{"text": "Let me check. "}, {"name": "get_weather", "arguments": {"city": "Paris"}}]]
SUNNY = {"sky": "sunny", "celsius": 21}
CLOSE_MESSAGE = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
FUNCTION_CALL = ["response.output_item.added", "response.function_call_arguments.delta",
                 "response.function_call_arguments.done", "response.output_item.done"]


def squeezed(events: list[Any]) -> list[str]:
    """Event types with each run of text deltas as one (how the model split its text is not the point)."""
    kinds = types(events)
    return [kind for index, kind in enumerate(kinds)
            if not (kind == "response.output_text.delta" and index and kinds[index - 1] == kind)]


def sdk(server: InProcessServer, key: str = "unused") -> AsyncOpenAI:
    """The SDK talking to the app in this process (each response is handed over once it has ended)."""
    http = httpx.AsyncClient(transport=server.transport, base_url=f"{server.url}/v1", timeout=30)
    return AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, http_client=http)


async def start(in_process: InProcessStarter, **env: str) -> InProcessServer:
    return await in_process(STREAMCHAT_TOOLS="loop_tools", **env)


async def reply_of(server: InProcessServer, cid: str, reply_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The reply once it has ended, and its calls."""
    reply = await wait_for_status(server, cid, reply_id)
    return reply, [item for item in await messages(server, cid) if item["from"] == "tool"]


# -- Responses ---------------------------------------------------------------------------------

async def test_a_function_call_ends_the_response_and_its_output_continues_the_reply(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await start(in_process)
    fake_provider.script(tool_calls=ASK, tokens=["It is ", "sunny."], argument_chunk=4)
    async with sdk(server) as client:
        events = await collect(await client.responses.create(model="fake-model", input="Weather in Paris?",
                                                             tools=[WEATHER], stream=True))  # type: ignore[list-item]
        first = events[-1].response
        assert first.conversation is not None
        cid, reply_id = first.conversation.id, first.id
        [waiting] = await until_call(server, cid, "awaiting_result")
        strict = await validated(client, reply_id)
        retrieved = await client.responses.retrieve(reply_id)

        output = [{"type": "function_call_output", "call_id": waiting["id"], "output": orjson.dumps(SUNNY).decode()}]
        going_on = await collect(await client.responses.create(
            model="fake-model", previous_response_id=reply_id, input=output, stream=True))  # type: ignore[arg-type]
        second = going_on[-1].response
        with pytest.raises(openai.ConflictError):  # given already
            await client.responses.create(previous_response_id=reply_id, input=output)  # type: ignore[arg-type]
        reply, [call] = await reply_of(server, cid, reply_id)
        again = [await validated(client, response_id) for response_id in (reply_id, second.id)]
        resumed = [[await collect(await client.responses.retrieve(response_id, stream=True, starting_after=after))
                    for after in range(-1, len(whole))] for response_id, whole in ((reply_id, events),
                                                                                   (second.id, going_on))]

    assert squeezed(events) == ["response.created", "response.in_progress", *OPEN_MESSAGE, "response.output_text.delta",
                                *CLOSE_MESSAGE, *FUNCTION_CALL, "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    message, function_call = first.output
    assert message.type == "message" and first.status == "completed" and first.usage is None
    assert function_call.type == "function_call"
    assert (function_call.id, function_call.call_id, function_call.name, function_call.status) == (
        f"fc_{call['id']}", call["id"], "get_weather", "completed")
    assert orjson.loads(function_call.arguments) == {"city": "Paris"} and function_call.arguments == call["arguments"]
    added = next(event for event in events if event.type == "response.output_item.added"
                 and event.item.type == "function_call")
    assert (added.item.status, added.item.arguments) == ("in_progress", "")
    done = next(event for event in events if event.type == "response.function_call_arguments.done")
    assert (done.item_id, done.output_index, done.arguments) == (function_call.id, 1, call["arguments"])
    assert [tool.model_dump(exclude_none=True) for tool in first.tools] == [WEATHER]
    assert types(strict) == types(events) and strict[-1].response.output == first.output
    assert dumped(retrieved.output) == dumped(first.output) and retrieved.status == "completed"

    assert squeezed(going_on) == ["response.created", "response.in_progress", *OPEN_MESSAGE,
                                  "response.output_text.delta", *CLOSE_MESSAGE, "response.completed"]
    assert second.id == f"{reply_id}.a0" and second.previous_response_id == reply_id
    assert second.status == "completed" and second.usage is not None
    assert [item.type for item in second.output] == ["message"], "the output is this response's input, not output"
    assert [tool.name for tool in second.tools] == ["get_weather"]  # type: ignore[union-attr]
    assert first.output_text + second.output_text == reply["message"] == "Let me check. It is sunny."
    assert (call["status"], call["result"]) == ("completed", SUNNY)
    assert orjson.loads(tool_messages(fake_provider.requests()[-1])[-1]["content"]) == SUNNY
    assert [types(replayed) for replayed in again] == [types(events), types(going_on)]
    for whole, tails in zip((events, going_on), resumed, strict=True):
        expected = [same_event(event) for event in whole]
        for after, tail in enumerate(tails, start=-1):
            assert [same_event(event) for event in tail] == expected[after + 1:], after


async def test_the_whole_history_sent_again_without_previous_response_id_continues_the_reply(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    # The SDK docs' pattern: input = the conversation so far + the function call + its output.
    server = await start(in_process)
    fake_provider.script(tool_calls=ASK, tokens=["Sunny", " it is."], argument_chunk=4)
    history: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    async with sdk(server) as client:
        first = await client.responses.create(model="fake-model", input=history, tools=[WEATHER])  # type: ignore[arg-type,list-item]
        [function_call] = [item for item in first.output if item.type == "function_call"]
        history += [function_call,
                    {"type": "function_call_output", "call_id": function_call.call_id, "output": "sunny"}]
        second = await client.responses.create(model="fake-model", input=history, tools=[WEATHER],  # type: ignore[arg-type,list-item]
                                               instructions="Be brief.", temperature=0.2)
    assert first.conversation is not None
    reply, [call] = await reply_of(server, first.conversation.id, first.id)
    assert (second.id, second.status, second.previous_response_id) == (f"{first.id}.a0", "completed", None)
    assert first.output_text + second.output_text == reply["message"] == "Let me check. Sunny it is."
    assert call["result"] == "sunny", "text that is not JSON is the result as it is"
    assert tool_messages(fake_provider.requests()[-1])[-1]["content"] == '"sunny"'
    assert [item["from"] for item in await messages(server, first.conversation.id)] == [
        "user", "assistant", "tool"], "the history sent again is not stored again"


async def test_a_round_of_a_function_call_an_approval_and_a_server_call_is_answered_in_one_request(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await start(in_process)
    fake_provider.script(tool_calls=[[{"name": "get_weather", "arguments": {"city": "Oslo"}},
                                      {"name": "calculator", "arguments": {"expression": "6 * 7"}},
                                      {"name": "delete_file", "arguments": {"path": "/tmp/old.txt"}}]],
                         tokens=["All", " done."])
    async with sdk(server) as client:
        first = await client.responses.create(model="fake-model", input="three things", tools=[WEATHER])  # type: ignore[list-item]
        function_call, calculated, request = first.output
        assert [function_call.type, calculated.type, request.type] == [
            "function_call", "mcp_call", "mcp_approval_request"]
        output = {"type": "function_call_output", "call_id": function_call.call_id,  # type: ignore[union-attr]
                  "output": [{"type": "input_text", "text": '{"sky": '}, {"type": "input_text", "text": '"grey"}'}]}
        approval = {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}
        with pytest.raises(openai.BadRequestError) as half:
            await client.responses.create(previous_response_id=first.id, input=[output])  # type: ignore[list-item]
        second = await client.responses.create(previous_response_id=first.id,
                                               input=[approval, output])  # type: ignore[list-item]
    assert first.status == "completed" and calculated.status == "completed"  # type: ignore[union-attr]
    assert half.value.body["param"] == "input" and request.id in half.value.message  # type: ignore[index]
    assert [item.type for item in second.output] == ["mcp_call", "message"]
    assert second.output[0].approval_request_id == request.id  # type: ignore[union-attr]
    assert second.output_text == "All done."
    assert first.conversation is not None
    _, calls = await reply_of(server, first.conversation.id, first.id)
    assert [(call["name"], call["status"]) for call in calls] == [
        ("get_weather", "completed"), ("calculator", "completed"), ("delete_file", "completed")]
    assert calls[0]["result"] == {"sky": "grey"}


async def test_function_tools_and_outputs_that_cannot_be_taken_are_refused_naming_the_parameter(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await start(in_process, STREAMCHAT_API_KEYS="owner-key,other-key")
    fake_provider.script(tool_calls=ASK, tokens=["ok"])
    async with sdk(server, "owner-key") as client, sdk(server, "other-key") as other:
        first = await client.responses.create(model="fake-model", input="weather?", tools=[WEATHER])  # type: ignore[list-item]
        [function_call] = [item for item in first.output if item.type == "function_call"]
        call_id = function_call.call_id

        def given(call: str = call_id, output: Any = "1") -> dict[str, Any]:
            return {"type": "function_call_output", "call_id": call, "output": output}

        refused: list[tuple[dict[str, Any], str]] = [
            ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
            ({"input": "x", "tools": [{"type": "function", "name": "calculator"}]}, "tools[0].name"),
            ({"input": "x", "tools": [WEATHER, WEATHER]}, "tools[1].name"),
            ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
            ({"input": "x", "tools": [{"type": "function", "name": "two words"}]}, "tools[0].name"),
            ({"input": "x", "tools": [{**WEATHER, "defer_loading": True}]}, "tools[0].defer_loading"),
            ({"input": "x", "tools": [{**WEATHER, "parameters": "an object"}]}, "tools[0].parameters"),
            ({"input": "x", "tools": "get_weather"}, "tools"),
            ({"input": "x", "tool_choice": "required"}, "tool_choice"),
            ({"input": [given("nope.t0.0")], "previous_response_id": first.id}, "input[0].call_id"),
            ({"input": [given(), given()], "previous_response_id": first.id}, "input[1].call_id"),
            ({"input": [{"role": "user", "content": "hi"}, given()], "previous_response_id": first.id}, "input"),
            ({"input": [given(), {"role": "user", "content": "hi"}]}, "input"),
            ({"input": [given(output=[{"type": "input_image", "image_url": "http://x"}])],
              "previous_response_id": first.id}, "input[0].output[0].type"),
            ({"input": [given()], "previous_response_id": first.id, "temperature": 0.5}, "temperature"),
            ({"input": [{"type": "function_call_output", "call_id": call_id}],
              "previous_response_id": first.id}, "input"),
        ]
        for body, param in refused:
            with pytest.raises(openai.BadRequestError) as error:
                await client.responses.create(model="fake-model", **body)
            assert error.value.body["param"] == param, (body, error.value.body)  # type: ignore[index]
        not_found = [(client, {"input": [given("nope.t0.0")]}, "input[0].call_id"),
                     (other, {"input": [given()]}, "input[0].call_id"),
                     (other, {"input": [given()], "previous_response_id": first.id}, "previous_response_id")]
        for caller, body, param in not_found:
            with pytest.raises(openai.NotFoundError) as missing:
                await caller.responses.create(model="fake-model", **body)
            assert missing.value.body["param"] == param, (body, missing.value.body)  # type: ignore[index]
        assert first.conversation is not None
        async with server.client(headers={"Authorization": "Bearer owner-key"}) as http:
            kept = (await http.get(f"/api/conversations/{first.conversation.id}")).json()["messages"]
        assert [(item["id"], item["status"]) for item in kept if item["from"] == "tool"] == [
            (call_id, "awaiting_result")], "nothing refused was given"
        second = await client.responses.create(previous_response_id=first.id, input=[given()])  # type: ignore[list-item]
    assert second.status == "completed" and second.output_text == "ok"


async def test_a_function_calls_responses_resume_exactly_live_on_another_instance(
    cluster: Cluster, fake_provider: FakeProvider,
) -> None:
    """Each model round is held after its first piece: the response that ends at the function call and
    the one its output starts are both resumed `starting_after` their last event read, on the instance
    that streams them and on the other (Redis + PostgreSQL); both resumptions read the same events."""
    a, b = cluster.start_many(2)
    fake_provider.script(tool_calls=ASK, tokens=["It ", "is ", "sunny."], argument_chunk=3, hold_after=1)
    async with remote_sdk(a.url) as on_a, remote_sdk(b.url) as on_b:
        opened = await on_a.responses.create(model="fake-model", input="Weather?", tools=[WEATHER],  # type: ignore[list-item]
                                             stream=True)
        head = await read_until(opened, lambda event: event.type == "response.output_text.delta")
        reply_id = head[0].response.id
        resumed = await asyncio.gather(*(client.responses.retrieve(
            reply_id, stream=True, starting_after=head[-1].sequence_number) for client in (on_a, on_b)))
        fake_provider.release_stream(0)
        tails = await asyncio.gather(*(collect(stream) for stream in resumed))
        assert [same_event(event) for event in tails[0]] == [same_event(event) for event in tails[1]]
        first = [*head, *tails[0]]
        assert [event.sequence_number for event in first] == list(range(len(first)))
        assert squeezed(first)[-5:] == [*FUNCTION_CALL, "response.completed"]
        call = first[-1].response.output[-1]

        output = [{"type": "function_call_output", "call_id": call.call_id, "output": '"sunny"'}]
        going_on = await on_b.responses.create(previous_response_id=reply_id, input=output,  # type: ignore[arg-type]
                                               stream=True)
        head2 = await read_until(going_on, lambda event: event.type == "response.output_text.delta")
        continuation = head2[0].response.id
        resumed = await asyncio.gather(*(client.responses.retrieve(
            continuation, stream=True, starting_after=head2[-1].sequence_number) for client in (on_a, on_b)))
        fake_provider.release()
        tails = await asyncio.gather(*(collect(stream) for stream in resumed))
        assert [same_event(event) for event in tails[0]] == [same_event(event) for event in tails[1]]
        second = [*head2, *tails[0]]
        assert second[-1].type == "response.completed" and continuation == f"{reply_id}.a0"
        cid = first[-1].response.conversation.id
        reply = await wait_for_status(a.url, cid, reply_id)
        assert first[-1].response.output_text + second[-1].response.output_text == reply["message"]
        for whole, response_id in ((first, reply_id), (second, continuation)):
            for after in (-1, len(whole) // 2, len(whole) - 2):
                again = await collect(await on_a.responses.retrieve(response_id, stream=True, starting_after=after))
                assert [same_event(event) for event in again] == [same_event(event) for event in whole[after + 1:]]


async def test_cancelling_a_response_that_waits_for_a_function_output_ends_the_call(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await start(in_process)
    fake_provider.script(tool_calls=ASK, tokens=["never"])
    async with sdk(server) as client:
        first = await client.responses.create(model="fake-model", input="weather?", tools=[WEATHER])  # type: ignore[list-item]
        cancelled = await client.responses.cancel(f"{first.id}.a0")
        [function_call] = [item for item in first.output if item.type == "function_call"]
        with pytest.raises(openai.ConflictError):
            await client.responses.create(previous_response_id=first.id, input=[  # type: ignore[list-item]
                {"type": "function_call_output", "call_id": function_call.call_id, "output": "late"}])
        again = await client.responses.retrieve(first.id)
    assert first.conversation is not None
    reply, [call] = await reply_of(server, first.conversation.id, first.id)
    assert (reply["status"], call["status"]) == ("stopped", "cancelled")
    assert (cancelled.status, cancelled.output) == ("cancelled", [])
    assert again.status == "completed" and dumped(again.output) == dumped(first.output)


async def test_a_models_file_client_call_made_through_chat_is_a_function_call_in_its_response(
    in_process: InProcessStarter, fake_provider: FakeProvider, tmp_path: Path,
) -> None:
    # Every protocol is a view of the one conversation: the call's result given over plain HTTP ends
    # the first response at the function call and starts the next.
    server = await in_process(STREAMCHAT_MODELS_FILE=str(client_tools_file(tmp_path, fake_provider)))
    fake_provider.script(tool_calls=[[{"text": "Pick. "}, {"name": "pick_color", "arguments": {"prompt": "?"}}]],
                         tokens=["Teal", "."])
    async with server.client() as http:
        sent = (await http.post("/chat", json={"message": "colour?", "tools": ["pick_color"]})).json()
        cid, reply_id = sent["conversationId"], sent["assistantMessageId"]
        [waiting] = await until_call(server, cid, "awaiting_result")
        async with sdk(server) as client:
            first = await client.responses.retrieve(reply_id)
            given = await http.post(f"/api/conversations/{cid}/messages/{waiting['id']}/result",
                                    json={"output": "teal"})
            assert given.status_code == 200
            await wait_for_status(server, cid, reply_id)
            second = await client.responses.retrieve(f"{reply_id}.a0")
    assert [(item.type, item.status) for item in first.output] == [("message", "completed"),
                                                                   ("function_call", "completed")]
    assert first.output[1].call_id == waiting["id"] and first.status == "completed"  # type: ignore[union-attr]
    assert (second.status, second.output_text) == ("completed", "Teal.")


# -- Chat Completions --------------------------------------------------------------------------

CC_WEATHER = {"type": "function", "function": {key: WEATHER[key] for key in ("name", "description", "parameters")}}
CONVERSATION = "x-streamchat-conversation-id"


async def test_chat_completions_stream_the_calls_of_function_tools_and_tool_messages_continue_the_reply(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await start(in_process)
    fake_provider.script(tool_calls=ASK, tokens=["It is ", "sunny."], argument_chunk=4)
    history: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    async with sdk(server) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="fake-model", messages=history, tools=[CC_WEATHER], stream=True,  # type: ignore[list-item]
            stream_options={"include_usage": True})
        cid = raw.headers[CONVERSATION]
        chunks = [chunk async for chunk in raw.parse()]
        async with client.chat.completions.stream(model="fake-model", messages=history,  # type: ignore[arg-type]
                                                  tools=[CC_WEATHER]) as helper:  # type: ignore[list-item]
            assembled = await helper.get_final_completion()
        fake_provider.script(tool_calls=ASK, tokens=["It is ", "sunny."], argument_chunk=4)
        first_call = next(delta.tool_calls[0] for chunk in chunks if chunk.choices
                          for delta in [chunk.choices[0].delta] if delta.tool_calls)
        assert first_call.id is not None and first_call.function is not None
        history += [{"role": "assistant", "content": "Let me check. ", "tool_calls": [
                        {"id": first_call.id, "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
                    {"role": "tool", "tool_call_id": first_call.id, "content": orjson.dumps(SUNNY).decode()}]
        raw_after = await client.chat.completions.with_raw_response.create(
            model="fake-model", messages=history, tools=[CC_WEATHER], stream=True,  # type: ignore[list-item]
            stream_options={"include_usage": True})
        after = [chunk async for chunk in raw_after.parse()]
        with pytest.raises(openai.ConflictError):  # given already
            await client.chat.completions.create(model="fake-model", messages=history)  # type: ignore[arg-type]

    reply_id = chunks[0].id.removeprefix("chatcmpl-")
    reply, [call] = await reply_of(server, cid, reply_id)
    assert raw_after.headers[CONVERSATION] == cid and after[0].id == f"chatcmpl-{reply_id}.a0"
    assert (first_call.index, first_call.id, first_call.type, first_call.function.name) == (
        0, call["id"], "function", "get_weather")
    arguments = "".join(delta.tool_calls[0].function.arguments or "" for chunk in chunks if chunk.choices
                        for delta in [chunk.choices[0].delta] if delta.tool_calls and delta.tool_calls[0].function)
    assert arguments == call["arguments"]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    text_after = "".join(chunk.choices[0].delta.content or "" for chunk in after if chunk.choices)
    assert text + text_after == reply["message"] == "Let me check. It is sunny."
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] == "tool_calls"
    assert (chunks[-1].choices, chunks[-1].usage) == ([], None), "usage comes with the reply's end"
    assert [chunk.choices[0].finish_reason for chunk in after if chunk.choices][-1] == "stop"
    assert after[-1].usage is not None and after[-1].usage.completion_tokens == reply["usage"]["completionTokens"]
    assert (call["status"], call["result"]) == ("completed", SUNNY)
    choice = assembled.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me check. "
    assert choice.message.tool_calls is not None and len(choice.message.tool_calls) == 1
    helped = choice.message.tool_calls[0]
    assert helped.type == "function" and (helped.function.name, orjson.loads(helped.function.arguments)) == (
        "get_weather", {"city": "Paris"})


async def test_a_completion_that_waits_hands_over_only_the_clients_calls_and_needs_every_output(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    # One round: two client calls and the calculator (run here, never shown); non-streaming both ways.
    server = await start(in_process)
    fake_provider.script(tool_calls=[[{"text": "Checking both. "},
                                      {"name": "get_weather", "arguments": {"city": "Oslo"}},
                                      {"name": "calculator", "arguments": {"expression": "6 * 7"}},
                                      {"name": "get_weather", "arguments": {"city": "Rome"}}]],
                         tokens=["Oslo grey, ", "Rome sunny."])
    history: list[Any] = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Oslo and Rome?"}]
    async with sdk(server) as client:
        first = await client.chat.completions.create(model="fake-model", messages=history,  # type: ignore[arg-type]
                                                     tools=[CC_WEATHER])  # type: ignore[list-item]
        message = first.choices[0].message
        assert message.tool_calls is not None
        history.append(message.model_dump(exclude_none=True))
        outputs = [{"role": "tool", "tool_call_id": call.id, "content": sky}
                   for call, sky in zip(message.tool_calls, ('{"sky": "grey"}', '{"sky": "sunny"}'), strict=True)]
        with pytest.raises(openai.BadRequestError) as half:
            await client.chat.completions.create(model="fake-model", messages=[*history, outputs[0]])  # type: ignore[list-item]
        second = await client.chat.completions.create(model="fake-model", messages=[*history, *outputs],  # type: ignore[list-item]
                                                      tools=[CC_WEATHER], temperature=0.1)  # type: ignore[list-item]
    reply_id = first.id.removeprefix("chatcmpl-")
    assert first.choices[0].finish_reason == "tool_calls" and first.usage is None
    assert message.content == "Checking both. "
    assert [(call.function.name, orjson.loads(call.function.arguments)) for call in message.tool_calls] == [  # type: ignore[union-attr]
        ("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome"})]
    assert [call.id for call in message.tool_calls] == [f"{reply_id}.t0.0", f"{reply_id}.t0.2"]
    assert half.value.body["param"] == "messages" and message.tool_calls[1].id in half.value.message  # type: ignore[index]
    assert second.id == f"chatcmpl-{reply_id}.a0" and second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "Oslo grey, Rome sunny." and second.usage is not None
    said = [turn for turn in fake_provider.requests()[-1]["messages"] if turn["role"] == "tool"]
    assert [orjson.loads(turn["content"]) for turn in said] == [
        {"sky": "grey"}, {"expression": "6 * 7", "result": 42}, {"sky": "sunny"}]


async def test_a_completion_laid_out_after_its_round_was_stored_hands_over_every_client_call_of_it(
    in_process: InProcessStarter, fake_provider: FakeProvider, tmp_path: Path,
) -> None:
    # Joined late (a slow request, a continuation), the stretch is laid out from what is stored: its
    # round's calls come one by one, and the completion must wait for the whole round, not hand over
    # the first call alone.
    from streamchat.protocols.openai_chat_completions import CompletionStretch, completion_chunks, settled_stretch

    server = await in_process(STREAMCHAT_MODELS_FILE=str(client_tools_file(tmp_path, fake_provider)))
    fake_provider.script(tool_calls=[[{"text": "Both. "}, {"name": "pick_color", "arguments": {"prompt": "1?"}},
                                      {"name": "calculator", "arguments": {"expression": "1 + 1"}},
                                      {"name": "pick_color", "arguments": {"prompt": "2?"}}]], tokens=["x"])
    async with server.client() as http:
        sent = (await http.post("/chat", json={"message": "two colours", "tools": ["pick_color", "calculator"]})).json()
    cid, reply_id = sent["conversationId"], sent["assistantMessageId"]
    await until_call(server, cid, "completed")  # the calculator's, run here: the round is checked and stored
    runtime_ctx = server.runtime.context("test", (), "follow")
    settled = await settled_stretch(runtime_ctx, CompletionStretch(cid, reply_id))
    chunks = [orjson.loads(frame.removeprefix(b"data: ")) async for frame in completion_chunks(
        runtime_ctx, CompletionStretch(cid, reply_id), 0, "fake-model", False, 15) if frame.startswith(b"data: {")]
    ids = [f"{reply_id}.t0.0", f"{reply_id}.t0.2"]
    assert [call.call_id for call in settled.calls] == ids and settled.text == "Both. "
    assert [delta["tool_calls"][0]["id"] for chunk in chunks for delta in [chunk["choices"][0]["delta"]]
            if "id" in delta.get("tool_calls", [{}])[0]] == ids
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_chat_completions_tools_and_tool_messages_that_cannot_be_taken_are_refused(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await start(in_process, STREAMCHAT_API_KEYS="owner-key,other-key")
    fake_provider.script(tool_calls=ASK, tokens=["ok"])
    user = {"role": "user", "content": "weather?"}
    async with sdk(server, "owner-key") as client, sdk(server, "other-key") as other:
        first = await client.chat.completions.create(model="fake-model", messages=[user],  # type: ignore[list-item]
                                                     tools=[CC_WEATHER])  # type: ignore[list-item]
        [call] = first.choices[0].message.tool_calls or []
        asked = {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]}

        def answered(call_id: str | None = call.id, content: Any = "1") -> list[dict[str, Any]]:
            tool: dict[str, Any] = {"role": "tool", "content": content}
            if call_id is not None:
                tool["tool_call_id"] = call_id
            return [user, asked, tool]

        refused: list[tuple[dict[str, Any], str]] = [
            ({"messages": [user], "tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools[0].type"),
            ({"messages": [user], "tools": [{"type": "function", "function": {"name": "calculator"}}]},
             "tools[0].function.name"),
            ({"messages": [user], "tools": [CC_WEATHER, CC_WEATHER]}, "tools[1].function.name"),
            ({"messages": [user], "tools": [{"type": "function", "name": "get_weather"}]}, "tools[0].function"),
            ({"messages": [user], "tool_choice": "none"}, "tool_choice"),
            ({"messages": answered(None)}, "messages[2].tool_call_id"),
            ({"messages": [*answered(), {"role": "tool", "tool_call_id": call.id, "content": "2"}]},
             "messages[3].tool_call_id"),
            ({"messages": answered(content=[{"type": "image_url", "image_url": {"url": "http://x"}}])},
             "messages[2].content[0].type"),
        ]
        for body, param in refused:
            with pytest.raises(openai.BadRequestError) as error:
                await client.chat.completions.create(model="fake-model", **body)
            assert error.value.body["param"] == param, (body, error.value.body)  # type: ignore[index]
        for caller, messages_sent in ((client, answered("nope.t0.0")), (other, answered())):
            with pytest.raises(openai.NotFoundError) as missing:
                await caller.chat.completions.create(model="fake-model", messages=messages_sent)  # type: ignore[arg-type]
            assert missing.value.body["param"] == "messages[2].tool_call_id"  # type: ignore[index]
        going_on = await client.chat.completions.create(model="fake-model", messages=answered())  # type: ignore[arg-type]
        with pytest.raises(openai.ConflictError) as twice:
            await client.chat.completions.create(model="fake-model", messages=answered())  # type: ignore[arg-type]
    assert going_on.choices[0].message.content == "ok"
    assert twice.value.body["param"] == "messages[2].tool_call_id"  # type: ignore[index]


async def test_a_reply_stopped_while_its_completion_waits_for_tool_outputs_takes_none_and_a_new_completion_ends(
    in_process: InProcessStarter, fake_provider: FakeProvider,
) -> None:
    server = await start(in_process)
    fake_provider.script(tool_calls=ASK, tokens=["never"])
    user = {"role": "user", "content": "weather?"}
    async with sdk(server) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="fake-model", messages=[user], tools=[CC_WEATHER])  # type: ignore[list-item]
        first = raw.parse()
        cid, reply_id = raw.headers[CONVERSATION], first.id.removeprefix("chatcmpl-")
        async with server.client() as http:
            stopped = await http.post(f"/api/conversations/{cid}/messages/{reply_id}/stop")
        [call] = first.choices[0].message.tool_calls or []
        with pytest.raises(openai.ConflictError):
            await client.chat.completions.create(model="fake-model", messages=[  # type: ignore[list-item]
                user, first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "late"}])
    assert stopped.status_code == 202
    reply, [ended] = await reply_of(server, cid, reply_id)
    assert (reply["status"], ended["status"]) == ("stopped", "cancelled")
