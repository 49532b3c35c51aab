"""The OpenAI Chat Completions view of one reply: a `chat.completion`, or its chunks as SSE.

A completion shows a stretch of a reply (`CompletionStretch`): from its beginning, or, for a request
that gave the outputs of round r's function calls, from where round r stopped to call them. It ends
at the reply's end, or at the next round in which the model called functions the client runs: those
calls are the completion's `tool_calls` (`id` the call's item id), `finish_reason` "tool_calls", and
the client's next request, with their outputs as `tool` messages, gets the stretch after them. The
tools the server runs itself (and approvals, answered elsewhere) stay inside the stretch: the client
sees the text around them, as it always has.

Chunks: the first carries the role, then one per piece, then the calls (each: its id, type and name,
then its whole arguments), then one with `finish_reason`; with `stream_options.include_usage` a last
chunk with empty `choices` and the usage (the reply's, at its end; null after calls); then `[DONE]`.
A reply that fails mid-way sends an `{"error": ...}` event (the SDKs raise it) before `[DONE]`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, cast

import orjson
from pydantic import BaseModel, ConfigDict

from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.replies.waiting import waited_for_result
from streamchat.conversations.tool_calls import call_index, calls_of, in_round, round_start
from streamchat.framework import Context, Quiet
from streamchat.protocols.following import PING, ReplyEnd
from streamchat.protocols.turn import CallArguments, FollowedTurn, TurnEvent

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"


class ChatCompletion(BaseModel):
    """A `chat.completion` (documents the answer)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: str
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class CompletionStretch:
    """Which part of a reply a completion shows: from its beginning (`after_round` None), or after the
    function calls of round `after_round`."""

    conversation_id: str
    reply_id: str
    after_round: int | None = None

    @property
    def completion_id(self) -> str:
        suffix = "" if self.after_round is None else f".a{self.after_round}"
        return f"chatcmpl-{self.reply_id}{suffix}"


@dataclass(frozen=True, slots=True)
class ClientCall:
    """A call the completion hands to the client."""

    call_id: str
    name: str
    arguments: str

    def tool_call(self) -> dict[str, Any]:
        return {"id": self.call_id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True, slots=True)
class CallsForTheClient:
    calls: tuple[ClientCall, ...]


def finish_reason(message: ConversationMessage) -> str:
    """"length" for a reply a token limit cut, "stop" for any other end."""
    return "length" if message.finishReason == "length" else "stop"


def usage_object(message: ConversationMessage) -> dict[str, Any] | None:
    if message.usage is None:
        return None
    prompt, completion = message.usage.promptTokens or 0, message.usage.completionTokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _is_clients(ctx: Context, cid: str, call_id: str, call: ConversationMessage) -> bool:
    """A call the client runs: one of its tools, waiting for its result or ended by it (a call of one
    whose arguments failed the check was answered here, and a stop ends the reply instead)."""
    if call.status in ("pending", "cancelled"):
        return False
    return await waited_for_result(ctx, cid, call_id, call)


async def stretch_events(ctx: Context, stretch: CompletionStretch,
                         keepalive: float | None) -> AsyncIterator[str | CallsForTheClient | Quiet | ReplyEnd | None]:
    """The stretch's text pieces, `Quiet` when nothing happens for `keepalive` seconds, and last either
    the calls it hands to the client or how the reply ended (None: it can no longer be followed here,
    the server is stopping)."""
    cid, reply_id = stretch.conversation_id, stretch.reply_id
    skip = 0
    if stretch.after_round is not None:
        skip = round_start(calls_of(await ctx.streams.conversation.get_group(cid), reply_id), stretch.after_round + 1)
    position = 0
    calls: dict[str, ConversationMessage] = {}
    decided: set[int] = set()
    turn = FollowedTurn(ctx, cid, reply_id, keepalive=keepalive)
    # Closed as soon as calls are handed over, so the watch of the conversation ends with it.
    async with aclosing(cast(AsyncGenerator[TurnEvent, None], turn.events())) as events:
        async for event in events:
            if isinstance(event, Quiet):
                yield event
            elif isinstance(event, str):
                new = event[max(0, skip - position):]
                position += len(event)
                if new:
                    yield new
            elif not isinstance(event, CallArguments):
                calls[event.call_id] = event.call
                number = event.call.round or 0
                if number in decided or (stretch.after_round is not None and number <= stretch.after_round):
                    continue
                if any(call.status == "pending" for call in calls.values() if (call.round or 0) == number):
                    continue
                # Every call of a round is stored before the first is checked: the stored round is whole
                # (the calls seen so far may not be, for a stretch laid out from a snapshot).
                made = in_round(calls_of(await ctx.streams.conversation.get_group(cid), reply_id), number)
                if any(call.data.status == "pending" for call in made):
                    continue
                handed = [ClientCall(call.id, call.data.name or "", call.data.arguments or "")
                          for call in sorted(made, key=lambda call: call_index(call.id))
                          if await _is_clients(ctx, cid, call.id, call.data)]
                if handed:
                    yield CallsForTheClient(tuple(handed))
                    return
                decided.add(number)  # the server's calls alone: the stretch goes on past them
    yield turn.end


async def completion_chunks(ctx: Context, stretch: CompletionStretch, created: int, model: str,
                            include_usage: bool, ping_seconds: float) -> AsyncIterator[bytes]:
    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        data = {"id": stretch.completion_id, "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": choices, **extra}
        return b"data: " + orjson.dumps(data) + b"\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    yield chunk(choice({"role": "assistant", "content": ""}))
    async for event in stretch_events(ctx, stretch, ping_seconds):
        if isinstance(event, Quiet):
            yield PING
        elif isinstance(event, str):
            yield chunk(choice({"content": event}))
        elif isinstance(event, CallsForTheClient):
            for index, call in enumerate(event.calls):
                yield chunk(choice({"tool_calls": [{"index": index, "id": call.call_id, "type": "function",
                                                    "function": {"name": call.name, "arguments": ""}}]}))
                if call.arguments:
                    yield chunk(choice({"tool_calls": [{"index": index, "function": {"arguments": call.arguments}}]}))
            yield chunk(choice({}, "tool_calls"))
            if include_usage:
                yield chunk([], usage=None)
            yield DONE
        elif event is None:
            return  # the server is stopping
        else:
            message = event.message
            if message is None or message.status == "error":
                reason = event.reason if message is None else message.error or "the reply failed"
                yield b"data: " + orjson.dumps({"error": {"message": reason, "type": "server_error", "param": None,
                                                           "code": "reply_failed"}}) + b"\n\n"
                yield DONE
                return
            yield chunk(choice({}, finish_reason(message)))
            if include_usage:
                yield chunk([], usage=usage_object(message))
            yield DONE


@dataclass(frozen=True, slots=True)
class Settled:
    """A whole stretch: its text, and the calls it hands to the client or how the reply ended."""

    text: str
    calls: Sequence[ClientCall]
    end: ReplyEnd | None


async def settled_stretch(ctx: Context, stretch: CompletionStretch) -> Settled:
    pieces: list[str] = []
    async for event in stretch_events(ctx, stretch, None):
        if isinstance(event, str):
            pieces.append(event)
        elif isinstance(event, CallsForTheClient):
            return Settled("".join(pieces), event.calls, None)
        elif not isinstance(event, Quiet):
            return Settled("".join(pieces), (), event)
    return Settled("".join(pieces), (), None)


def completion_object(stretch: CompletionStretch, created: int, model: str, settled: Settled) -> dict[str, Any]:
    """The `chat.completion` of a settled stretch that handed calls to the client or ended well."""
    message: dict[str, Any] = {"role": "assistant", "content": settled.text, "refusal": None}
    ended = settled.end.message if settled.end is not None else None
    if settled.calls:
        message["tool_calls"] = [call.tool_call() for call in settled.calls]
        message["content"] = settled.text or None
    return {
        "id": stretch.completion_id, "object": "chat.completion", "created": created,
        "model": ended.usage.model if ended is not None and ended.usage is not None else model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": "tool_calls" if settled.calls or ended is None else finish_reason(ended)}],
        "usage": None if ended is None else usage_object(ended),
    }

