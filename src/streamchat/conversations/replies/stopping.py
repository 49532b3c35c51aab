"""Stopping a reply wherever it is: what the stop step, the busy mode, a delete and a cancel share."""

from __future__ import annotations

from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.replies.waiting import end_calls
from streamchat.framework import Context, Item

#: How long a stop waits for the run it stopped to write the reply's last state.
STOP_WAIT_SECONDS = 2.0


async def stop_reply(ctx: Context, cid: str, reply: Item[ConversationMessage]) -> None:
    """Stop a reply wherever it is: running here or on another instance (its provider stream closes),
    still queued, or waiting for its tool calls; and every call it made that has not ended."""
    if not await ctx.request_stop(reply.id, wait=STOP_WAIT_SECONDS):
        await ctx.streams.conversation.set(cid, reply.id, reply.data.model_copy(update={"status": "stopped"}))
        # It may have started between the check and the write: stop that run too.
        await ctx.request_stop(reply.id, wait=STOP_WAIT_SECONDS)
    await end_calls(ctx, cid, reply.id)
