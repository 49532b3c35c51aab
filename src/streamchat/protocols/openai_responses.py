"""The OpenAI Responses API's view of one reply: the response object and its numbered event stream.

A response is a reply: its id is the assistant message's id, its conversation the reply's. Its
events are numbered from 0 and rise by one: `response.created`, `response.in_progress`,
`response.output_item.added`, `response.content_part.added`, one `response.output_text.delta` per
piece the model wrote, then `response.output_text.done`, `response.content_part.done`,
`response.output_item.done` and one of `response.completed` / `response.failed` /
`response.incomplete` (stopped, or cut by a token limit). The pieces come from the reply journal, so event N is the same
event on every instance and every reconnect: a stream resumed `starting_after` N continues exactly
after it, for as long as the conversation exists.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.ownership import owns
from streamchat.conversations.replies.index import ReplyRecord, locate
from streamchat.framework import Context, Item, Principal
from streamchat.protocols.following import FollowedReply
from streamchat.protocols.openai_errors import not_found

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STATUS = {"created": "queued", "streaming": "in_progress", "completed": "completed", "error": "failed",
          "stopped": "cancelled"}
ITEM_STATUS = {"completed": "completed", "error": "incomplete", "stopped": "incomplete"}
TERMINAL = {"completed": "response.completed", "error": "response.failed", "stopped": "response.incomplete"}


class ResponseObject(BaseModel):
    """A response object (documents the answer; the fields streamchat writes are listed in the README)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: str
    created_at: int
    status: str
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None
    error: dict[str, Any] | None


def item_id(reply_id: str) -> str:
    return f"msg_{reply_id}"


def unix_seconds(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())


def usage_object(message: ConversationMessage) -> dict[str, Any] | None:
    if message.usage is None:
        return None
    prompt, completion = message.usage.promptTokens or 0, message.usage.completionTokens or 0
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": prompt + completion}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def output_item(reply_id: str, message: ConversationMessage, text: str | None = None) -> dict[str, Any]:
    status = "incomplete" if message.finishReason == "length" else ITEM_STATUS.get(message.status, "in_progress")
    return {"id": item_id(reply_id), "type": "message", "role": "assistant", "status": status,
            "content": [text_part(message.message if text is None else text)]}


def response_object(reply_id: str, conversation_id: str, details: Mapping[str, Any], message: ConversationMessage,
                    *, status: str | None = None, output: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The response object as it stands: `message` is the reply's current state."""
    cut = message.finishReason == "length"
    status = status or ("incomplete" if cut else STATUS[message.status])
    error = (message.error or "the reply failed") if message.status == "error" else None
    if output is None:
        output = [] if message.status == "created" else [output_item(reply_id, message)]
    return {
        "id": reply_id,
        "object": "response",
        "created_at": details.get("createdAt") or unix_seconds(message.timestamp),
        "status": status,
        "background": bool(details.get("background", False)),
        "conversation": {"id": conversation_id},
        "error": None if error is None else {"code": "server_error", "message": error},
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": details.get("instructions"),
        "metadata": details.get("metadata") or {},
        "model": message.usage.model if message.usage is not None else details.get("model") or message.model or "",
        "output": output,
        "parallel_tool_calls": False,
        "previous_response_id": details.get("previousResponseId"),
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "none",
        "tools": [],
        "top_p": None,
        "truncation": "disabled",
        "usage": usage_object(message),
    }


async def response_events(ctx: Context, conversation_id: str, reply_id: str, details: Mapping[str, Any],
                          current: ConversationMessage, after: int, ping_seconds: float) -> AsyncIterator[bytes]:
    """The reply's events after event `after` (-1: all of them) as Server-Sent Events."""
    number = -1

    def event(kind: str, **fields: Any) -> bytes | None:
        nonlocal number
        number += 1
        if number <= after:
            return None
        data = orjson.dumps({"type": kind, "sequence_number": number, **fields})
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    started = response_object(reply_id, conversation_id, details, current, output=[],
                              status="queued" if current.status == "created" else "in_progress")
    place = {"item_id": item_id(reply_id), "output_index": 0, "content_index": 0}
    opening = [
        event("response.created", response=started),
        event("response.in_progress", response={**started, "status": "in_progress"}),
        event("response.output_item.added", output_index=0, item={
            "id": item_id(reply_id), "type": "message", "role": "assistant", "status": "in_progress", "content": []}),
        event("response.content_part.added", **place, part=text_part("")),
    ]
    for frame in opening:
        if frame is not None:
            yield frame
    pieces: list[str] = []

    def delta(piece: str) -> bytes | None:
        pieces.append(piece)
        return event("response.output_text.delta", **place, delta=piece, logprobs=[])

    reply = FollowedReply(ctx, conversation_id, reply_id, as_written=True, keepalive=ping_seconds)
    async for frame in reply.frames(delta):
        yield frame
    end = reply.end
    if end is None:
        return  # the server is stopping: the client resumes after the last event it got
    text = "".join(pieces)
    last = end.message or current.model_copy(update={"message": text, "status": "error", "error": end.reason})
    item = output_item(reply_id, last, text)
    terminal = "response.incomplete" if last.finishReason == "length" else TERMINAL[last.status]
    closing = [
        event("response.output_text.done", **place, text=text, logprobs=[]),
        event("response.content_part.done", **place, part=text_part(text)),
        event("response.output_item.done", output_index=0, item=item),
        event(terminal, response=response_object(reply_id, conversation_id, details, last, output=[item])),
    ]
    for frame in closing:
        if frame is not None:
            yield frame


async def find_response(ctx: Context, response_id: str,
                        principal: Principal | None) -> tuple[ReplyRecord, Item[ConversationMessage]]:
    """The reply a response id names, if the caller may see it; else 404 in OpenAI's shape."""
    record = await locate(ctx.state, response_id)
    if record is not None and await owns(ctx.state, record.conversation_id, principal):
        reply = await ctx.streams.conversation.get(record.conversation_id, response_id)
        if reply is not None:
            return record, reply
    raise not_found("id", response_id, "response")
