"""The MESSAGES_SNAPSHOT a run begins with: the thread's active branch up to where the run takes over,
as AG-UI messages, so the client holds the history as the server keeps it (its ids included).

A run that answers a new user message shows the branch up to that message; the reply is the run's
to stream. A run that resumes a reply after round R shows the reply as it stood there: its text up
to R's calls, its calls of every round up to R and the results of the rounds before R (the results
of round R are the run's first events). Each reply is one assistant message with its text and its
calls (`toolCalls`, ids the call items'), followed by one `tool` message per ended call (`<call>.result`).

Laid out once every earlier message of the branch has ended (None until then: a run waits for the
reply before it, which it follows anyway), from stored facts that no longer change, so the snapshot is
the same event whenever the run is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from streamchat.conversations.branches import tree_of
from streamchat.conversations.messages import FINISHED, ConversationMessage
from streamchat.conversations.tool_calls import calls_by_reply, round_start, what_the_model_reads
from streamchat.framework import Item

Items = Sequence[Item[ConversationMessage]]


def result_id(call_id: str) -> str:
    """The id of the `tool` message holding a call's result."""
    return f"{call_id}.result"


def result_text(call: ConversationMessage) -> str:
    """A call's outcome as its `tool` message holds it: the result as JSON text with its keys sorted (a
    store may keep an object's keys in another order, and every read must give the same text), else
    what the model was told."""
    if call.status == "completed":
        return orjson.dumps(call.result, option=orjson.OPT_SORT_KEYS).decode()
    return what_the_model_reads(call)


def tool_call(call_id: str, call: ConversationMessage) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": call.name or "", "arguments": call.arguments or ""}}


def result_message(call_id: str, call: ConversationMessage) -> dict[str, Any]:
    message = {"id": result_id(call_id), "role": "tool", "toolCallId": call_id, "content": result_text(call)}
    if call.status != "completed":
        message["error"] = result_text(call)
    return message


def assistant(message_id: str, text: str, calls: Sequence[Item[ConversationMessage]]) -> list[dict[str, Any]]:
    """A reply (or the part of it given) and the results of its ended calls."""
    shown: dict[str, Any] = {"id": message_id, "role": "assistant"}
    if text:
        shown["content"] = text
    if calls:
        shown["toolCalls"] = [tool_call(call.id, call.data) for call in calls]
    return [shown, *(result_message(call.id, call.data) for call in calls if call.data.status in FINISHED)]


def snapshot_messages(items: Items, reply_id: str, after_round: int | None) -> list[dict[str, Any]] | None:
    """The run's snapshot, or None while a message before the run's reply has not ended."""
    tree = tree_of(items)
    by_id = {item.id: item for item in items}
    reply = by_id.get(reply_id)
    if reply is None or reply_id not in tree:
        return None
    calls = calls_by_reply(items)
    path = tree.path_to(reply_id)[:-1]
    messages: list[dict[str, Any]] = []
    for message_id in path:
        data = by_id[message_id].data
        if data.sender == "user":
            messages.append({"id": message_id, "role": "user", "content": data.message})
        elif data.status not in FINISHED:
            return None
        else:
            messages += assistant(message_id, data.message, calls.get(message_id, []))
    if after_round is not None:
        own = [call for call in calls.get(reply_id, []) if (call.data.round or 0) <= after_round]
        shown = assistant(reply_id, reply.data.message[:round_start(own, after_round + 1)], own)
        messages += [shown[0], *(result_message(call.id, call.data) for call in own
                                 if (call.data.round or 0) < after_round)]
    return messages
