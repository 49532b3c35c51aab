"""The Vercel AI SDK's UI message stream (protocol v1, `ai` 5 and later) of one reply.

Server-Sent Events whose data are JSON chunks: `start` (the reply's id as the message id),
`start-step`, `text-start` / `text-delta` / `text-end`, the tool calls' chunks (ui_tool_parts.py),
`finish-step`, `message-metadata` (model, usage, status), `finish`, then `[DONE]`. The reply's text
and calls come in the order the reader sees them: a text part is closed before a call and a new one
opened after it, and each model round after the first is a step of its own (`finish-step` then
`start-step`), as the SDK's own server writes a multi-step reply. A reply that failed sends `error`,
a stopped one `abort`, before `finish`; a server that stops meanwhile just ends the response (the
client resumes elsewhere).

The stream ends early where the reply waits for its client: at a call of a tool that runs in the
client (a tool without `execute`: its `tool-input-available` is the client's cue to run it), and,
for a client that speaks `ai` 6 or later, at a `tool-approval-request` — once the reply can go no
further without it (every call of the round ended or waiting for its answer). The client's answer,
the chat's messages sent again with the outputs or approvals on the tool parts, gets the rest of the
same message: the stream then goes on from what that client already shows (`ClientCopy`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any, cast

from streamchat.conversations.messages import ConversationMessage
from streamchat.framework import Context, ItemState, Quiet
from streamchat.protocols.following import PING, ReplyEnd
from streamchat.protocols.turn import CallArguments, FollowedTurn, TurnEvent
from streamchat.protocols.ui_tool_parts import CallParts, ClientCopy, UiDialect, chunk

HEADERS = {"x-vercel-ai-ui-message-stream": "v1", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"
#: How long a stream whose reply has ended waits for the calls still running to end (a stop ends them
#: just after the reply, a running handler within waiting.CALL_STOP_WAIT_SECONDS).
CALLS_END_SECONDS = 5.0


class UiTurnWriter:
    """Turns a followed reply's text pieces and calls into chunks, keeping its text parts and steps."""

    def __init__(self, reply_id: str, dialect: UiDialect, client: ClientCopy | None) -> None:
        self.reply_id = reply_id
        self.dialect = dialect
        self.continuing = client is not None
        #: How much of the reply's text the client has, and how much the turn has given so far.
        self.text_known = 0 if client is None else client.text_length
        self.text_read = 0
        self.text_id: str | None = None
        #: The model round whose calls the open step shows (None: no call in it yet).
        self.step_round: int | None = None
        self.calls: dict[str, CallParts] = {} if client is None else {call.call_id: call for call in client.calls()}

    def opening(self) -> bytes:
        start = chunk({"type": "start", "messageId": self.reply_id})
        return start if self.continuing else start + chunk({"type": "start-step"})

    def text(self, piece: str) -> bytes:
        start = self.text_read
        self.text_read += len(piece)
        known = min(len(piece), max(0, self.text_known - start))
        if known:
            self.step_round = None  # text the client has: the step of the calls before it is behind it
        new = piece[known:]
        if not new:
            return b""
        frames = b""
        if self.step_round is not None:
            frames += chunk({"type": "finish-step"}) + chunk({"type": "start-step"})
            self.step_round = None
        if self.text_id is None:
            self.text_id = f"text-{self.reply_id}-{start + known}"
            frames += chunk({"type": "text-start", "id": self.text_id})
        return frames + chunk({"type": "text-delta", "id": self.text_id, "delta": new})

    def call(self, call_id: str, call: ConversationMessage) -> bytes:
        parts = self.calls.get(call_id)
        if parts is None:
            parts = self.calls[call_id] = CallParts(call_id, call.round or 0)
        round_number = call.round or 0
        frames = b""
        if parts.is_new:
            frames += self._close_text()
            if self.step_round is not None and self.step_round != round_number:
                frames += chunk({"type": "finish-step"}) + chunk({"type": "start-step"})
        self.step_round = round_number
        return frames + parts.update(call, self.dialect)

    def arguments(self, call_id: str, piece: str) -> bytes:
        parts = self.calls.get(call_id)
        return b"" if parts is None else parts.arguments(piece)

    def might_wait_for_client(self) -> bool:
        """Whether, as far as this stream has shown, the reply waits for this client: a call's result
        (a tool without `execute`, which every version runs) or, from `ai` 6 on, an approval."""
        calls = self.calls.values()
        return (any(parts.waits_for_result or (self.dialect.approvals and parts.waits_for_approval)
                    for parts in calls)
                and all(parts.settled for parts in calls))

    def unsettled(self) -> bool:
        return any(not parts.outcome_sent for parts in self.calls.values())

    def paused(self) -> bytes:
        """The end of a stream that stops at approval requests or calls the client runs: the client
        answers them (its next request) to go on."""
        return (self._close_text() + chunk({"type": "finish-step"}) + chunk(self.dialect.finish("tool-calls"))
                + DONE)

    def closing(self, conversation_id: str, end: ReplyEnd) -> bytes:
        frames = [self._close_text(), chunk({"type": "finish-step"})]
        message = end.message
        if self.step_round is not None and message is not None and message.status == "completed":
            # The model's last round wrote no text after the calls: it is still a step of its own, as
            # the SDK's own server writes it, so the message's last step is not the calls' (a chat
            # sending automatically once its last step's calls have outputs would send again).
            frames += [chunk({"type": "start-step"}), chunk({"type": "finish-step"})]
        if message is None:
            frames.append(chunk({"type": "error", "errorText": end.reason}))
        else:
            if message.status == "error":
                frames.append(chunk({"type": "error", "errorText": message.error or "the reply failed"}))
            elif message.status == "stopped":
                frames.append(chunk({"type": "abort"}))
            metadata: dict[str, Any] = {"conversationId": conversation_id, "status": message.status}
            if message.usage is not None:
                metadata |= {"model": message.usage.model, "usage": message.usage.model_dump()}
            if message.finishReason is not None:
                metadata["finishReason"] = message.finishReason
            frames.append(chunk({"type": "message-metadata", "messageMetadata": metadata}))
        frames += [chunk({"type": "finish"}), DONE]
        return b"".join(frames)

    def _close_text(self) -> bytes:
        if self.text_id is None:
            return b""
        frame = chunk({"type": "text-end", "id": self.text_id})
        self.text_id = None
        return frame


async def ui_message_stream(ctx: Context, conversation_id: str, reply_id: str, ping_seconds: float,
                            dialect: UiDialect | None = None, client: ClientCopy | None = None) -> AsyncIterator[bytes]:
    """The reply from its beginning, or from what `client` already shows of it."""
    writer = UiTurnWriter(reply_id, dialect or UiDialect(), client)
    yield writer.opening()
    turn = FollowedTurn(ctx, conversation_id, reply_id, keepalive=ping_seconds)
    # Closed at once when the stream stops at approvals, so the watch of the conversation ends with it.
    async with aclosing(cast(AsyncGenerator[TurnEvent, None], turn.events())) as events:
        async for event in events:
            if isinstance(event, Quiet):
                frame = PING
            elif isinstance(event, str):
                frame = writer.text(event)
            elif isinstance(event, CallArguments):
                frame = writer.arguments(event.call_id, event.piece)
            else:
                frame = writer.call(event.call_id, event.call)
            if frame:
                yield frame
            if writer.might_wait_for_client() and await _waits_for_client(ctx, conversation_id, reply_id, writer):
                yield writer.paused()
                return
    end = turn.end
    if end is None:
        return  # the server is stopping: the stream just ends, and the client reconnects to another instance
    if end.message is not None and writer.unsettled():
        async for frame in _calls_ending(ctx, conversation_id, writer):
            yield frame
    yield writer.closing(conversation_id, end)


async def _calls_ending(ctx: Context, conversation_id: str, writer: UiTurnWriter) -> AsyncIterator[bytes]:
    """A stopped reply's calls end just after it (a running one once its handler has wound up): each
    call's last state, waited for a while, so the client is not left with a call that never ends."""
    deadline = asyncio.get_running_loop().time() + CALLS_END_SECONDS
    async with ctx.streams.conversation.watch_group(conversation_id) as watch:
        for state in watch.snapshot():
            if state.item_id in writer.calls:
                yield writer.call(state.item_id, state.data)
        while writer.unsettled() and (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                event = await asyncio.wait_for(anext(watch), left)
            except (TimeoutError, StopAsyncIteration):
                return
            if isinstance(event, ItemState) and event.item_id in writer.calls:
                yield writer.call(event.item_id, event.data)


async def _waits_for_client(ctx: Context, conversation_id: str, reply_id: str, writer: UiTurnWriter) -> bool:
    """Whether the reply, as stored, waits for approvals and this stream has shown every call as it is
    (a stream laying out a reply joined mid-way has not shown them all yet)."""
    items = await ctx.streams.conversation.get_group(conversation_id)
    calls = [item for item in items if item.data.is_tool_call and item.data.parentId == reply_id]
    return all(item.id in writer.calls and writer.calls[item.id].status == item.data.status for item in calls)
