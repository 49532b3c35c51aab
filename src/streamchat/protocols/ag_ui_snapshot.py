"""The MESSAGES_SNAPSHOT a run begins with: the thread's active branch up to where the run takes over,
as AG-UI messages, so the client holds the history as the server keeps it (its ids included).

A run that answers a new user message shows the branch up to that message; the reply is the run's
to stream. A run that resumes a reply after round R shows the reply as it stood there: its text up
to R's calls, its calls of every round up to R and the results of the rounds before R (the results
of round R are the run's first events). Each reply is one assistant message with its text and its
calls (`toolCalls`, ids the call items'), followed by one `tool` message per ended call (`<call>.result`).

An earlier reply of the branch may not have ended when the run is first read (it waits for an
approval, or a stopped run's queue moved on): it is shown as it stood then, its text cut where it was
and its calls and results as they were. Those cuts (`Cuts`) are the one thing the stored conversation
cannot tell later, so the run keeps them (the first reader's, ag_ui_layout.py) and every later reading
lays out the same snapshot from the stored facts, which no longer change, and them.
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
#: Per earlier reply that had not ended: {"length": its text's length then, "calls": the ids of its calls
#: the model had written out then, "results": those that had ended}.
Cuts = dict[str, Any]


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


def cuts_of(items: Items, reply_id: str) -> Cuts:
    """How the earlier replies of the run's branch that have not ended stand now."""
    by_id = {item.id: item for item in items}
    tree = tree_of(items)
    if reply_id not in tree:
        return {}
    calls = calls_by_reply(items)
    cuts: Cuts = {}
    for message_id in tree.path_to(reply_id)[:-1]:
        data = by_id[message_id].data
        if data.sender == "assistant" and data.status not in FINISHED:
            made = [call for call in calls.get(message_id, []) if call.data.status != "pending"]
            cuts[message_id] = {"length": len(data.message), "calls": [call.id for call in made],
                                "results": [call.id for call in made if call.data.status in FINISHED]}
    return cuts


def snapshot_messages(items: Items, reply_id: str, after_round: int | None, cuts: Cuts) -> list[dict[str, Any]]:
    """The run's snapshot: the branch before the run's reply (earlier replies that had not ended as
    `cuts` has them), then, for a run that goes on, the reply as it stood after round `after_round`."""
    tree = tree_of(items)
    by_id = {item.id: item for item in items}
    reply = by_id[reply_id]
    calls = calls_by_reply(items)
    messages: list[dict[str, Any]] = []
    for message_id in tree.path_to(reply_id)[:-1]:
        data = by_id[message_id].data
        made = calls.get(message_id, [])
        if data.sender == "user":
            messages.append({"id": message_id, "role": "user", "content": data.message})
        elif (cut := cuts.get(message_id)) is None:
            messages += assistant(message_id, data.message, made)
        else:
            then = [call for call in made if call.id in cut["calls"]]
            messages += [assistant(message_id, data.message[:cut["length"]], then)[0],
                         *(result_message(call.id, call.data) for call in then if call.id in cut["results"])]
    if after_round is not None:
        own = [call for call in calls.get(reply_id, []) if (call.data.round or 0) <= after_round]
        shown = assistant(reply_id, reply.data.message[:round_start(own, after_round + 1)], own)
        messages += [shown[0], *(result_message(call.id, call.data) for call in own
                                 if (call.data.round or 0) < after_round)]
    return messages
