"""A conversation as ChatKit's thread items, and back from their ids.

A thread is a conversation; its items are the active branch's messages and tool calls:
- a user message is a `user_message` item with the message's id;
- a reply is one `assistant_message` item per model round that wrote text: the reply's id for round 0,
  `<reply>.m<round>` for the text after round `round - 1`'s calls, so the calls show where they were
  made, between the texts;
- the calls the server runs (tool files, built-ins, MCP servers) of one round are one `workflow` item,
  `<reply>.w<round>`, with a `custom` task per call (its tool, arguments, then result), as ChatKit
  shows an agent's work; ChatKit's `client_tool_call` items are for the calls the client runs;
- a call of a tool that runs in the client is a `client_tool_call` item whose id and `call_id` are the
  call's item id.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from streamchat.conversations.messages import ConversationMessage

_REPLY_PART = re.compile(r"^(?P<reply>.+)\.[mw](?P<round>\d+)$")


def message_item_id(reply_id: str, round_number: int) -> str:
    return reply_id if round_number == 0 else f"{reply_id}.m{round_number}"


def workflow_item_id(reply_id: str, round_number: int) -> str:
    return f"{reply_id}.w{round_number}"


def part_of(item_id: str) -> str | None:
    """The reply a text or workflow item is a part of (by its id), or None for any other id."""
    found = _REPLY_PART.match(item_id)
    return None if found is None else found["reply"]


def thread_metadata(cid: str, title: str | None, created_at: str) -> dict[str, Any]:
    return {"id": cid, "title": title, "created_at": created_at, "status": {"type": "active"}, "metadata": {}}


def page(data: list[dict[str, Any]], has_more: bool = False, after: str | None = None) -> dict[str, Any]:
    return {"data": data, "has_more": has_more, "after": after}


def user_item(cid: str, item_id: str, message: ConversationMessage) -> dict[str, Any]:
    return {"type": "user_message", "id": item_id, "thread_id": cid, "created_at": message.timestamp,
            "content": [{"type": "input_text", "text": message.message}], "attachments": [],
            "inference_options": {}}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def assistant_item(cid: str, item_id: str, created_at: str, text: str | None) -> dict[str, Any]:
    """An assistant message item: no content yet (None), or its whole text so far."""
    return {"type": "assistant_message", "id": item_id, "thread_id": cid, "created_at": created_at,
            "content": [] if text is None else [text_part(text)]}


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def task(cid: str, call_id: str, call: ConversationMessage, *, asked: bool, ended: bool) -> dict[str, Any]:
    """A server-run call as a workflow's custom task: its arguments while it runs (and whether it waits
    for the user's approval, which ChatKit cannot give: the routes that can), its outcome once it ended."""
    if not ended:
        content = f"Arguments: {call.arguments or '{}'}"
        if asked:
            route = f"/api/conversations/{cid}/messages/{call_id}"
            content += f"\nWaits for approval: POST {route}/approve (or {route}/deny)."
        return {"type": "custom", "title": call.name or "tool", "content": content, "status_indicator": "loading"}
    if call.status == "completed":
        outcome = f"Result: {_json(call.result)}"
    elif call.status == "denied":
        outcome = f"Denied: {call.error or 'by the user'}"
    elif call.status == "cancelled":
        outcome = f"Cancelled: {call.error or 'the reply was stopped'}"
    else:
        outcome = f"Error: {call.error or 'the call failed'}"
    return {"type": "custom", "title": call.name or "tool", "content": outcome, "status_indicator": "complete"}


def workflow_item(cid: str, item_id: str, created_at: str, tasks: list[dict[str, Any]], *,
                  done: bool) -> dict[str, Any]:
    workflow: dict[str, Any] = {"type": "custom", "tasks": tasks, "expanded": not done}
    if done:
        names = list(dict.fromkeys(str(entry["title"]) for entry in tasks))
        workflow["summary"] = {"title": f"Used {', '.join(names)}" if names else "Used no tools"}
    return {"type": "workflow", "id": item_id, "thread_id": cid, "created_at": created_at, "workflow": workflow}


def arguments_object(call: ConversationMessage) -> dict[str, Any]:
    """A call's arguments as the object ChatKit wants (text that is not a JSON object comes as `input`)."""
    try:
        parsed = orjson.loads(call.arguments or "{}")
    except orjson.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"input": call.arguments or ""}


def client_call_item(cid: str, call_id: str, call: ConversationMessage, *, answered: bool) -> dict[str, Any]:
    """A call the client runs: pending until its result is in, then completed with it as `output`."""
    item: dict[str, Any] = {"type": "client_tool_call", "id": call_id, "thread_id": cid,
                            "created_at": call.timestamp, "status": "completed" if answered else "pending",
                            "call_id": call_id, "name": call.name or "", "arguments": arguments_object(call)}
    if answered:
        item["output"] = call.result if call.status == "completed" else {"error": call.error or call.status}
    return item
