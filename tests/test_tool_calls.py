"""A reply's tool calls as the model reads them back: pure functions, no server."""

from __future__ import annotations

from typing import Any

from streamchat.conversations.branches import tree_of
from streamchat.conversations.history import history
from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.tool_calls import (
    call_item_id,
    calls_by_reply,
    reply_turns,
    round_finished,
    round_start,
    what_the_model_reads,
)
from streamchat.framework import Item
from streamchat.llm import ChatTurn, ToolCall

NOW = "2026-12-07T10:00:00.000Z"


def item(item_id: str, seq: int, **data: Any) -> Item[ConversationMessage]:
    return Item(item_id, seq, ConversationMessage.model_validate({"message": "", "timestamp": NOW, **data}))


def call(reply_id: str, round_number: int, index: int, offset: int, status: str = "completed",
         **data: Any) -> Item[ConversationMessage]:
    return item(call_item_id(reply_id, round_number, index), 100 + round_number * 10 + index, **{
        "from": "tool", "status": status, "parentId": reply_id, "toolCallId": f"c{round_number}{index}",
        "name": "calculator", "arguments": '{"expression": "1"}', "round": round_number, "offset": offset,
        "result": {"result": round_number}, **data})


REPLY_TEXT = "First, Then, Done."
ITEMS = [
    item("u1", 1, **{"from": "user", "status": "completed", "message": "q", "parentId": None}),
    item("a1", 2, **{"from": "assistant", "status": "completed", "message": REPLY_TEXT, "parentId": "u1"}),
    call("a1", 1, 0, 13),
    call("a1", 0, 0, 7),
    call("a1", 0, 1, 7, status="error", error="bad"),
    item("u2", 3, **{"from": "user", "status": "completed", "message": "next", "parentId": "a1"}),
]


def test_calls_are_grouped_by_reply_in_round_order_and_stay_out_of_the_tree() -> None:
    grouped = calls_by_reply(ITEMS)
    assert [one.id for one in grouped["a1"]] == ["a1.t0.0", "a1.t0.1", "a1.t1.0"]
    assert list(tree_of(ITEMS)) == ["u1", "a1", "u2"]


def test_a_reply_reads_back_as_text_calls_and_results_in_order() -> None:
    reply = ITEMS[1].data
    calls = calls_by_reply(ITEMS)["a1"]
    assert reply_turns(reply, calls) == [
        ChatTurn("assistant", "First, ", tool_calls=(ToolCall("c00", "calculator", '{"expression": "1"}'),
                                                     ToolCall("c01", "calculator", '{"expression": "1"}'))),
        ChatTurn("tool", '{"result":0}', tool_call_id="c00"),
        ChatTurn("tool", "error: bad", tool_call_id="c01"),
        ChatTurn("assistant", "Then, ", tool_calls=(ToolCall("c10", "calculator", '{"expression": "1"}'),)),
        ChatTurn("tool", '{"result":1}', tool_call_id="c10"),
        ChatTurn("assistant", "Done."),
    ]
    # About to write round 1: only round 0, and no text after it.
    assert [turn.role for turn in reply_turns(reply, calls, before_round=1)] == ["assistant", "tool", "tool"]
    assert (round_start(calls, 0), round_start(calls, 1), round_start(calls, 2)) == (0, 7, 13)


def test_a_round_is_finished_when_every_call_of_it_has_ended() -> None:
    calls = [call("r", 0, 0, 0), call("r", 0, 1, 0, status="awaiting_approval")]
    assert not round_finished(calls, 0)
    assert round_finished([*calls[:1], call("r", 0, 1, 0, status="denied")], 0)
    assert round_finished(calls, 1), "a round without calls has nothing to wait for"


def test_what_the_model_reads_of_each_ending() -> None:
    base = call("r", 0, 0, 0).data
    assert what_the_model_reads(base) == '{"result":0}'
    assert what_the_model_reads(base.model_copy(update={"status": "denied", "error": "denied by the user: no"})) == (
        "denied by the user: no")
    assert what_the_model_reads(base.model_copy(update={"status": "cancelled"})) == "the call was cancelled"
    assert what_the_model_reads(base.model_copy(update={"status": "error", "error": "boom"})) == "error: boom"


def test_the_history_keeps_a_reply_with_its_calls_whole_or_not_at_all() -> None:
    tree = tree_of(ITEMS)
    whole = history(ITEMS, tree, "u2", budget=10_000)
    assert [turn.role for turn in whole] == ["user", "assistant", "tool", "tool", "assistant", "tool", "assistant",
                                             "user"]
    assert [turn.role for turn in history(ITEMS, tree, "u2", budget=30)] == ["user"], (
        "the reply and its calls do not fit, so none of them is sent")
