"""The Vercel AI SDK's UI message stream (protocol v1, `ai` 5 and later) of one reply.

Server-Sent Events whose data are JSON chunks: `start` (the reply's id as the message id),
`start-step`, `text-start` / `text-delta` / `text-end`, `finish-step`, `message-metadata` (model,
usage, status), `finish`, then `[DONE]`. A reply that failed sends `error`, a stopped one `abort`,
before `finish`; a server that stops meanwhile just ends the response (the client resumes
elsewhere). Chunks carry only the fields `ai` 5.0.0 defines: its parser rejects any other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from streamchat.framework import Context
from streamchat.protocols.following import FollowedReply

HEADERS = {"x-vercel-ai-ui-message-stream": "v1", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"


def chunk(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def ui_message_stream(ctx: Context, conversation_id: str, reply_id: str,
                            ping_seconds: float) -> AsyncIterator[bytes]:
    yield chunk({"type": "start", "messageId": reply_id})
    yield chunk({"type": "start-step"})
    text_id = f"text-{reply_id}"
    writing = False

    def delta(piece: str) -> bytes:
        nonlocal writing
        frame = chunk({"type": "text-delta", "id": text_id, "delta": piece})
        if writing:
            return frame
        writing = True
        return chunk({"type": "text-start", "id": text_id}) + frame

    reply = FollowedReply(ctx, conversation_id, reply_id, keepalive=ping_seconds)
    async for frame in reply.frames(delta):
        yield frame
    end = reply.end
    if end is None:
        return  # the server is stopping: the stream just ends, and the client reconnects to another instance
    if writing:
        yield chunk({"type": "text-end", "id": text_id})
    yield chunk({"type": "finish-step"})
    message = end.message
    if message is None:
        yield chunk({"type": "error", "errorText": end.reason})
    else:
        if message.status == "error":
            yield chunk({"type": "error", "errorText": message.error or "the reply failed"})
        elif message.status == "stopped":
            yield chunk({"type": "abort"})
        metadata: dict[str, Any] = {"conversationId": conversation_id, "status": message.status}
        if message.usage is not None:
            metadata |= {"model": message.usage.model, "usage": message.usage.model_dump()}
        if message.finishReason is not None:
            metadata["finishReason"] = message.finishReason
        yield chunk({"type": "message-metadata", "messageMetadata": metadata})
    yield chunk({"type": "finish"})
    yield DONE
