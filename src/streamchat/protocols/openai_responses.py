"""The OpenAI Responses API's view of a reply: the response object and its numbered event stream.

A response is a stretch of a reply (responses_segments.py): the reply's id names it from its
beginning; a round whose tool calls wait for the client (the user's approval, or the client's run of
a function call) ends it, and `<reply>.a<round>` goes on from there. Its events are numbered from 0
and rise by one: `response.created`, `response.in_progress`, then its items' events
(responses_layout.py: the text as `message` items, one `response.output_text.delta` per piece the
model wrote; the calls as `mcp_call` items; approval requests; the client's function calls as
`function_call` items), then one of `response.completed` /
`response.failed` / `response.incomplete` (stopped, or cut by a token limit). The pieces come from
the reply journal and the calls' events from their items alone, in an order fixed by what is stored,
so event N is the same event on every instance and every reconnect: a stream resumed
`starting_after` N continues exactly after it, for as long as the conversation exists.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from streamchat.conversations.messages import ConversationMessage
from streamchat.framework import Context, ItemState, Quiet
from streamchat.protocols.following import PING
from streamchat.protocols.responses_layout import Event, ResponseLayout
from streamchat.protocols.responses_segments import ResponseTarget, find_response
from streamchat.protocols.seen_reply import CALL_END_WAIT_SECONDS, follow

__all__ = ["HEADERS", "ResponseObject", "current_response", "find_response", "followed", "response_events",
           "settled_response"]

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: How long a response waits for the calls of a reply that has ended before it shows them cancelled
#: (a stop ends them within seconds; only a call whose run was lost never ends).


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


def unix_seconds(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())


def usage_object(message: ConversationMessage) -> dict[str, Any] | None:
    if message.usage is None:
        return None
    prompt, completion = message.usage.promptTokens or 0, message.usage.completionTokens or 0
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion}


def response_object(target: ResponseTarget, reply: ConversationMessage, *, status: str,
                    output: list[dict[str, Any]], final: bool) -> dict[str, Any]:
    """The response object. `final`: it ends with the reply, so the reply's usage, error and cut are its
    own (a response that ends at an approval request, or has not ended, has none of them)."""
    details: Mapping[str, Any] = target.details
    cut = final and reply.finishReason == "length"
    error = (reply.error or "the reply failed") if final and reply.status == "error" else None
    return {
        "id": target.response_id,
        "object": "response",
        "created_at": details.get("createdAt") or unix_seconds(reply.timestamp),
        "status": status,
        "background": bool(details.get("background", False)),
        "conversation": {"id": target.conversation_id},
        "error": None if error is None else {"code": "server_error", "message": error},
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": details.get("instructions"),
        "metadata": details.get("metadata") or {},
        "model": reply.usage.model if reply.usage is not None else details.get("model") or reply.model or "",
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": details.get("previousResponseId"),
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": list(details.get("tools") or []),
        "top_p": None,
        "truncation": "disabled",
        "usage": usage_object(reply) if final else None,
    }


def _layout(ctx: Context, target: ResponseTarget, *, as_written: bool) -> ResponseLayout:
    def respond(status: str, output: list[dict[str, Any]], final: bool) -> dict[str, Any]:
        return response_object(target, layout.reply or target.reply.data, status=status, output=output, final=final)

    layout = ResponseLayout(ctx, target.conversation_id, target.segment, respond, as_written=as_written)
    return layout


def _opening_status(target: ResponseTarget, reply: ConversationMessage) -> str:
    return "queued" if reply.status == "created" and target.segment.after_round is None else "in_progress"


async def followed(ctx: Context, target: ResponseTarget, layout: ResponseLayout,
                   keepalive: float | None) -> AsyncIterator[Event | Quiet]:
    """The response's item events as the reply goes (and `Quiet` when nothing happens for `keepalive`
    seconds), until it ends; `layout.status` is None afterwards when it could not end (the reply was
    deleted, or the server is stopping: a client resumes after the last event it got)."""
    async with ctx.streams.conversation.watch_group(target.conversation_id, keepalive) as watch:
        async for event in follow(layout, watch.snapshot(), watch):
            yield event


async def response_events(ctx: Context, target: ResponseTarget, after: int,
                          ping_seconds: float) -> AsyncIterator[bytes]:
    """The response's events after event `after` (-1: all of them) as Server-Sent Events."""
    number = -1

    def frame(kind: str, fields: Mapping[str, Any]) -> bytes | None:
        nonlocal number
        number += 1
        if number <= after:
            return None
        data = orjson.dumps({"type": kind, "sequence_number": number, **fields})
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    reply = target.reply.data
    started = response_object(target, reply, status=_opening_status(target, reply), output=[], final=False)
    for kind, fields in (("response.created", {"response": started}),
                         ("response.in_progress", {"response": {**started, "status": "in_progress"}})):
        if (sent := frame(kind, fields)) is not None:
            yield sent
    layout = _layout(ctx, target, as_written=True)
    async for event in followed(ctx, target, layout, ping_seconds):
        if isinstance(event, Quiet):
            yield PING
        elif (sent := frame(*event)) is not None:
            yield sent


async def current_response(ctx: Context, target: ResponseTarget) -> dict[str, Any]:
    """The response as it stands now, laid out from the stored conversation."""
    layout = _layout(ctx, target, as_written=False)
    for item in await ctx.streams.conversation.get_group(target.conversation_id):
        await layout.absorb(ItemState(item.seq, item.data, item.id))
    await layout.advance()
    if layout.response is not None:
        return layout.response
    reply = layout.reply or target.reply.data
    return response_object(target, reply, status=_opening_status(target, reply), output=layout.items(),
                           final=False)


async def settled_response(ctx: Context, target: ResponseTarget) -> dict[str, Any]:
    """The response once it has ended (or can no longer end: then as it stands)."""
    layout = _layout(ctx, target, as_written=False)
    async for _ in followed(ctx, target, layout, CALL_END_WAIT_SECONDS / 2):
        pass
    if layout.response is not None:
        return layout.response
    return await current_response(ctx, target)
