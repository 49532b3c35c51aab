"""A reply's tool calls as the conversation keeps them: pure functions over its items, no I/O.

Each call is an item of its own (`from` "tool") whose parent is the reply that made it, numbered by
the model round that made it. The reply's text is one string across rounds; a call's `offset` says
how much of it the model had written when the round ended, which is all that is needed to give the
model back its own turns in order (text, calls, results, more text) and to show them so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import orjson

from streamchat.conversations.messages import FINISHED, ConversationMessage
from streamchat.framework import Item
from streamchat.llm import ChatTurn, ToolCall

#: What the model reads for a call the user turned down (the user's reason follows, if any).
DENIED = "denied by the user"


def call_item_id(reply_id: str, round_number: int, index: int) -> str:
    """The item id of a call: fixed by its place, so a round run again writes the same items."""
    return f"{reply_id}.t{round_number}.{index}"


_CALL_ITEM_ID = re.compile(r"^(?P<reply>.+)\.t(?P<round>\d+)\.(?P<index>\d+)$")


def call_index(call_id: str) -> int:
    """A call's place in its round (its item id ends `.t<round>.<index>`), so calls sort in the order the
    model made them; 0 for an id of another shape."""
    tail = call_id.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def reply_of_call(call_id: str) -> str | None:
    """The reply a call item id names (`<reply>.t<round>.<n>`), or None for an id of another shape."""
    found = _CALL_ITEM_ID.match(call_id)
    return None if found is None else found["reply"]


def calls_by_reply(items: Iterable[Item[ConversationMessage]]) -> dict[str, list[Item[ConversationMessage]]]:
    """Every reply's calls, in the order they were made (round, then creation order)."""
    found: dict[str, list[Item[ConversationMessage]]] = {}
    for item in items:
        if item.data.is_tool_call and item.data.parentId is not None:
            found.setdefault(item.data.parentId, []).append(item)
    for calls in found.values():
        calls.sort(key=lambda call: call.data.round or 0)
    return found


def calls_of(items: Iterable[Item[ConversationMessage]], reply_id: str) -> list[Item[ConversationMessage]]:
    return calls_by_reply(items).get(reply_id, [])


def in_round(calls: Sequence[Item[ConversationMessage]], round_number: int) -> list[Item[ConversationMessage]]:
    return [call for call in calls if call.data.round == round_number]


def round_start(calls: Sequence[Item[ConversationMessage]], round_number: int) -> int:
    """Where round `round_number`'s text begins in the reply: where the round before it stopped to call."""
    before = [call.data.offset or 0 for call in calls if (call.data.round or 0) < round_number]
    return max(before, default=0)


def round_finished(calls: Sequence[Item[ConversationMessage]], round_number: int) -> bool:
    """Whether every call of the round has ended (so the model can be called again)."""
    return all(call.data.status in FINISHED for call in in_round(calls, round_number))


def what_the_model_reads(call: ConversationMessage) -> str:
    """A call's outcome as the `tool` turn the model is given."""
    if call.status == "completed":
        return orjson.dumps(call.result).decode()
    if call.status == "denied":
        return call.error or DENIED
    if call.status == "cancelled":
        return "the call was cancelled"
    return f"error: {call.error or 'the call failed'}"


def reply_turns(reply: ConversationMessage, calls: Sequence[Item[ConversationMessage]],
                before_round: int | None = None) -> list[ChatTurn]:
    """The reply as the model's own turns: per round, its text and the calls it made, then each call's
    outcome; then the text after the last round. With `before_round`, only the rounds before it (the
    model is about to write that round) and no text after them."""
    turns: list[ChatTurn] = []
    written = 0
    rounds = sorted({call.data.round or 0 for call in calls})
    for number in rounds:
        if before_round is not None and number >= before_round:
            break
        made = in_round(calls, number)
        offset = max(call.data.offset or 0 for call in made)
        asked = tuple(ToolCall(call.data.toolCallId or call.id, call.data.name or "", call.data.arguments or "")
                      for call in made)
        turns.append(ChatTurn("assistant", reply.message[written:offset], tool_calls=asked))
        turns += [ChatTurn("tool", what_the_model_reads(call.data), tool_call_id=call.data.toolCallId or call.id)
                  for call in made]
        written = offset
    if before_round is None and reply.message[written:]:
        turns.append(ChatTurn("assistant", reply.message[written:]))
    return turns


def turns_size(turns: Iterable[ChatTurn]) -> int:
    """The characters turns take of the history's budget: text, call arguments and results."""
    return sum(len(turn.content) + sum(len(call.arguments) for call in turn.tool_calls) for turn in turns)
