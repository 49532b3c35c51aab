"""The OpenAI Chat Completions view of one reply: a `chat.completion`, or its chunks as SSE.

Chunks: the first carries the role, then one per piece, then one with `finish_reason`; with
`stream_options.include_usage` a last chunk with empty `choices` and the usage; then `[DONE]`. A
reply that fails mid-way sends an `{"error": ...}` event (the SDKs raise it) before `[DONE]`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from streamchat.conversations.messages import ConversationMessage
from streamchat.framework import Context
from streamchat.protocols.following import FollowedReply

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


def completion_id(reply_id: str) -> str:
    return f"chatcmpl-{reply_id}"


def finish_reason(message: ConversationMessage) -> str:
    """"length" for a reply a token limit cut, "stop" for any other end."""
    return "length" if message.finishReason == "length" else "stop"


def usage_object(message: ConversationMessage) -> dict[str, Any] | None:
    if message.usage is None:
        return None
    prompt, completion = message.usage.promptTokens or 0, message.usage.completionTokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_object(reply_id: str, created: int, model: str, message: ConversationMessage) -> dict[str, Any]:
    return {
        "id": completion_id(reply_id), "object": "chat.completion", "created": created,
        "model": message.usage.model if message.usage is not None else model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": message.message, "refusal": None},
                     "logprobs": None, "finish_reason": finish_reason(message)}],
        "usage": usage_object(message),
    }


async def completion_chunks(ctx: Context, conversation_id: str, reply_id: str, created: int, model: str,
                            include_usage: bool, ping_seconds: float) -> AsyncIterator[bytes]:
    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        data = {"id": completion_id(reply_id), "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": choices, **extra}
        return b"data: " + orjson.dumps(data) + b"\n\n"

    def choice(delta: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]

    yield chunk(choice({"role": "assistant", "content": ""}))
    reply = FollowedReply(ctx, conversation_id, reply_id, keepalive=ping_seconds)
    async for frame in reply.frames(lambda piece: chunk(choice({"content": piece}))):
        yield frame
    end = reply.end
    if end is None:
        return  # the server is stopping
    message = end.message
    if message is None or message.status == "error":
        reason = end.reason if message is None else message.error or "the reply failed"
        yield b"data: " + orjson.dumps({"error": {"message": reason, "type": "server_error", "param": None,
                                                   "code": "reply_failed"}}) + b"\n\n"
        yield DONE
        return
    yield chunk(choice({}, finish_reason(message)))
    if include_usage:
        yield chunk([], usage=usage_object(message))
    yield DONE
