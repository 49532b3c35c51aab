"""Tool calls at the model layer: the OpenAI-compatible provider against the fake provider scripted to
stream them as OpenAI does (arguments in pieces, calls interleaved, rounds), and the embedded provider
that cannot call tools."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import FakeProvider
from streamchat.llm import ChatTurn, ProviderError, TokenCount, ToolCall, ToolCallDelta, ToolCallParts
from streamchat.llm.local_models import resolve
from streamchat.llm.local_provider import LocalProvider, text_turns
from streamchat.llm.openai_provider import OpenAIProvider

CALCULATOR = {"type": "function", "function": {
    "name": "calculator", "description": "Evaluate an arithmetic expression.",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}
SEARCH = {"type": "function", "function": {
    "name": "search_conversations", "description": "Search the caller's conversations.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}
TOOLS = [CALCULATOR, SEARCH]
QUESTION = ChatTurn("user", "What is 2+3?")


async def reply(fake: FakeProvider, turns: Sequence[ChatTurn], tools: Sequence[dict[str, Any]] | None = TOOLS,
                ) -> tuple[list[str | ToolCallDelta], TokenCount]:
    """Everything the provider yielded, in order, and how the reply ended."""
    provider = OpenAIProvider(api_key="sk-test", base_url=f"{fake.url}/v1", model="fake-model", max_retries=0)
    count = TokenCount()
    try:
        pieces = [piece async for piece in provider.stream(turns, count, None, tools)]
    finally:
        await provider.close()
    return pieces, count


def calls_of(pieces: Sequence[str | ToolCallDelta]) -> list[ToolCall]:
    parts = ToolCallParts()
    for piece in pieces:
        if isinstance(piece, ToolCallDelta):
            parts.add(piece)
    return parts.calls()


def deltas(pieces: Sequence[str | ToolCallDelta]) -> list[ToolCallDelta]:
    return [piece for piece in pieces if isinstance(piece, ToolCallDelta)]


async def test_arguments_split_across_pieces_reassemble_exactly(fake_provider: FakeProvider) -> None:
    arguments = '{"expression": "(2 + 3) * 4.5 ** 2"}'
    fake_provider.script(tool_calls=[[{"name": "calculator", "arguments": arguments}]], argument_chunk=3)
    pieces, count = await reply(fake_provider, [QUESTION])
    received = deltas(pieces)
    assert len(received) > 3 and all(piece.index == 0 for piece in received), received
    first, *rest = received
    assert (first.id, first.name) == ("call_0_0", "calculator")
    assert all(piece.id is None and piece.name is None for piece in rest), "id and name come with the first piece"
    assert calls_of(pieces) == [ToolCall("call_0_0", "calculator", arguments)]
    assert not [piece for piece in pieces if isinstance(piece, str)]
    assert count.finish_reason == "tool_calls"
    assert count.completion == len(received)


async def test_two_calls_at_once_keep_their_indexes_and_ids(fake_provider: FakeProvider) -> None:
    fake_provider.script(tool_calls=[[
        {"name": "calculator", "arguments": {"expression": "12*12"}, "id": "call_first"},
        {"name": "search_conversations", "arguments": {"query": "dragons and their hoards"}}]], argument_chunk=4)
    pieces, count = await reply(fake_provider, [QUESTION])
    order = [piece.index for piece in deltas(pieces)]
    assert order[:2] == [0, 1] and order.index(1) < len(order) - 1 - order[::-1].index(0), \
        f"the two calls interleave: {order}"
    assert calls_of(pieces) == [
        ToolCall("call_first", "calculator", '{"expression":"12*12"}'),
        ToolCall("call_0_1", "search_conversations", '{"query":"dragons and their hoards"}')]
    assert count.finish_reason == "tool_calls"
    sent = fake_provider.streams()[-1]
    assert (sent["round"], [call["id"] for call in sent["tool_calls"]]) == (0, ["call_first", "call_0_1"])


async def test_text_before_a_call_comes_first_and_whole(fake_provider: FakeProvider) -> None:
    fake_provider.script(tool_calls=[[{"text": "Let me work that out. "},
                                      {"name": "calculator", "arguments": '{"expression": "2+3"}'}]])
    pieces, _ = await reply(fake_provider, [QUESTION])
    first_call = next(at for at, piece in enumerate(pieces) if isinstance(piece, ToolCallDelta))
    text = pieces[:first_call]
    assert all(isinstance(piece, str) for piece in text) and len(text) > 1, pieces
    assert "".join(str(piece) for piece in text) == "Let me work that out. "
    assert all(isinstance(piece, ToolCallDelta) for piece in pieces[first_call:])
    assert calls_of(pieces) == [ToolCall("call_0_0", "calculator", '{"expression": "2+3"}')]


async def test_the_tools_reach_the_provider_and_none_are_sent_without_them(fake_provider: FakeProvider) -> None:
    fake_provider.script(tool_calls=[[{"name": "calculator", "arguments": "{}"}]])
    _, with_tools = await reply(fake_provider, [QUESTION])
    text, without = await reply(fake_provider, [QUESTION], tools=None)
    _, empty = await reply(fake_provider, [QUESTION], tools=[])
    first, second, third = fake_provider.requests()
    assert first["tools"] == TOOLS and "tool_choice" not in first
    assert "tools" not in second and "tools" not in third
    assert with_tools.finish_reason == "tool_calls"
    assert (without.finish_reason, empty.finish_reason) == ("stop", "stop"), "a model offered no tools calls none"
    assert text == ["Hello", "!", " I", " am", " the", " fake", " provider", "."]


async def test_the_results_go_back_and_the_next_round_follows(fake_provider: FakeProvider) -> None:
    fake_provider.script(tool_calls=[
        [{"name": "calculator", "arguments": '{"expression": "2+3"}'}],
        [{"name": "calculator", "arguments": '{"expression": "5*10"}'}]])
    first, first_count = await reply(fake_provider, [QUESTION])
    [call] = calls_of(first)
    history = [QUESTION, ChatTurn("assistant", "", tool_calls=(call,)), ChatTurn("tool", "5", tool_call_id=call.id)]
    second, second_count = await reply(fake_provider, history)
    [next_call] = calls_of(second)
    history += [ChatTurn("assistant", "Halfway.", tool_calls=(next_call,)),
                ChatTurn("tool", "50", tool_call_id=next_call.id)]
    last, last_count = await reply(fake_provider, history)
    assert (first_count.finish_reason, second_count.finish_reason, last_count.finish_reason) == (
        "tool_calls", "tool_calls", "stop")
    assert next_call == ToolCall("call_1_0", "calculator", '{"expression": "5*10"}')
    assert "".join(str(piece) for piece in last) == "Hello! I am the fake provider."
    def sent_call(call_id: str, expression: str) -> dict[str, Any]:
        arguments = json.dumps({"expression": expression})
        return {"id": call_id, "type": "function", "function": {"name": "calculator", "arguments": arguments}}

    messages = fake_provider.requests()[-1]["messages"]
    assert messages[1:] == [
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": None, "tool_calls": [sent_call("call_0_0", "2+3")]},
        {"role": "tool", "tool_call_id": "call_0_0", "content": "5"},
        {"role": "assistant", "content": "Halfway.", "tool_calls": [sent_call("call_1_0", "5*10")]},
        {"role": "tool", "tool_call_id": "call_1_0", "content": "50"}]
    assert messages[0]["role"] == "system"
    assert [stream.get("round") for stream in fake_provider.streams()] == [0, 1, None]


async def test_malformed_arguments_and_unknown_tools_arrive_as_the_model_wrote_them(
    fake_provider: FakeProvider,
) -> None:
    """Judging a call is the loop's work: the provider hands over what the model said."""
    fake_provider.script(tool_calls=[[{"name": "calculator", "arguments": '{"expression": "2+'},
                                      {"name": "no_such_tool", "arguments": '{"x": 1}'}]])
    pieces, count = await reply(fake_provider, [QUESTION])
    assert [(call.name, call.arguments) for call in calls_of(pieces)] == [
        ("calculator", '{"expression": "2+'), ("no_such_tool", '{"x": 1}')]
    with pytest.raises(json.JSONDecodeError):
        json.loads(calls_of(pieces)[0].arguments)
    assert count.finish_reason == "tool_calls"


async def test_a_server_that_says_stop_after_calls_ends_as_tool_calls(fake_provider: FakeProvider) -> None:
    fake_provider.script(tool_calls=[[{"name": "calculator", "arguments": "{}"}]], tool_finish_reason="stop")
    pieces, count = await reply(fake_provider, [QUESTION])
    assert fake_provider.streams()[-1]["finish_reason"] == "stop"
    assert count.finish_reason == "tool_calls" and calls_of(pieces)


def test_the_fake_refuses_a_bad_script_naming_it(fake_provider: FakeProvider) -> None:
    answer = httpx.post(f"{fake_provider.url}/control", json={"tool_calls": [[{"arguments": "{}"}]]})
    assert answer.status_code == 400 and "tool_calls" in answer.json()["error"] and "name" in answer.json()["error"]


def test_repeated_ids_and_names_are_not_doubled_and_a_nameless_call_is_refused() -> None:
    parts = ToolCallParts()
    for piece in (ToolCallDelta(0, "call_a", "calculator", '{"expression"'),
                  ToolCallDelta(0, "call_a", "calculator", ': "1"}'), ToolCallDelta(1, "call_b", None, "{}")):
        parts.add(piece)
    with pytest.raises(ProviderError, match="tool call 1 without its name"):
        parts.calls()
    parts.add(ToolCallDelta(1, None, "search_conversations", ""))
    assert parts.calls() == [ToolCall("call_a", "calculator", '{"expression": "1"}'),
                             ToolCall("call_b", "search_conversations", "{}")]


async def test_the_embedded_model_refuses_tools(tmp_path: Path) -> None:
    """Refused at once, before any model is loaded (there is none in `tmp_path`)."""
    provider = LocalProvider(resolve(None), models_dir=tmp_path)
    try:
        with pytest.raises(ProviderError, match="cannot call tools"):
            async for _ in provider.stream([QUESTION], None, None, TOOLS):
                pass
    finally:
        await provider.close()
    assert provider.readiness() != "ok", "nothing was loaded"


def test_the_embedded_model_reads_a_history_with_tools_as_its_text() -> None:
    call = ToolCall("call_a", "calculator", '{"expression": "2+3"}')
    history = [QUESTION, ChatTurn("assistant", "", tool_calls=(call,)), ChatTurn("tool", "5", tool_call_id="call_a"),
               ChatTurn("assistant", "Let me check.", tool_calls=(call,)), ChatTurn("assistant", "It is 5.")]
    assert text_turns(history) == [QUESTION, ChatTurn("assistant", "Let me check."), ChatTurn("assistant", "It is 5.")]
