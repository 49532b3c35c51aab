"""Deleting a conversation, and what keeps a message sent at that very instant from outliving it.

A delete writes a mark before it reads anything ("running") and a new one when it is done, each
with a fresh token. A send (or a regenerate) into the conversation reads the mark before it stores
anything and again after its last write. Running before: 404, nothing stored. Running after, or
another token: a delete overlapped the send, which may have written after the delete read the
conversation, so the send deletes the conversation itself, the whole of it as a delete does (the
two overlap harmlessly; its own mark makes any other send caught in between do the same), and
answers 404. The same finished token before and after: the send's writes all came before any
delete read the conversation, or after one ended, so they go with the rest or start it afresh.

A running mark that a server dying mid-delete left behind lapses after MARK_SECONDS. A deleted
conversation keeps its finished mark (its id and a token, nothing of its text), so a send that
was slow to write still sees that a delete came in between.
"""

from __future__ import annotations

import time
import uuid

from streamchat.catalog import current_catalog
from streamchat.chat import answering, reply_index, reply_journal
from streamchat.chat.messages import FINISHED
from streamchat.chat.ownership import OWNERS
from streamchat.chat.stopping import stop_reply
from streamchat.framework import Context, HttpError

DELETIONS = "conversation_deletions"
MARK_SECONDS = 60.0


async def _mark(ctx: Context, conversation_id: str) -> tuple[str | None, bool]:
    """The token of the conversation's last delete mark (None: never deleted), and whether it runs now."""
    mark = await ctx.state.get(DELETIONS, conversation_id)
    if mark is None:
        return None, False
    return str(mark["token"]), bool(mark["running"]) and time.time() - float(mark["since"]) < MARK_SECONDS


async def _write_mark(ctx: Context, conversation_id: str, running: bool) -> None:
    await ctx.state.set(DELETIONS, conversation_id, {"token": uuid.uuid4().hex, "running": running,
                                                     "since": time.time()})


def gone(conversation_id: str) -> HttpError:
    return HttpError(404, "not_found", f"conversationId {conversation_id!r}: deleted as the message arrived")


async def before_writing(ctx: Context, conversation_id: str) -> str | None:
    """Before a send stores anything: 404 while a delete runs; else the mark to compare afterwards."""
    token, running = await _mark(ctx, conversation_id)
    if running:
        raise gone(conversation_id)
    return token


async def after_writing(ctx: Context, conversation_id: str, seen: str | None) -> None:
    """After a send's last write: a delete that overlapped it is finished here too, and the send is a 404."""
    token, running = await _mark(ctx, conversation_id)
    if running or token != seen:
        await delete_conversation(ctx, conversation_id)
        raise gone(conversation_id)


async def delete_conversation(ctx: Context, conversation_id: str) -> int:
    """Stop its running or queued replies, delete every item (watchers get a delete each), then its
    record and search text, what is kept beside its replies, and who owned it; how many items went.

    The finished mark is written even when a step fails (the delete answers its error and can be
    sent again): a new token still makes any send that overlapped it finish the delete, and the
    conversation is not closed to messages until the running mark lapses.
    """
    await _write_mark(ctx, conversation_id, running=True)
    try:
        stream = ctx.streams.conversation
        items = await stream.get_group(conversation_id)
        running = [item for item in items if item.data.sender == "assistant" and item.data.status not in FINISHED]
        for reply in running:
            await stop_reply(ctx, conversation_id, reply)
        deleted = await stream.delete_group(conversation_id)
        await current_catalog().remove(conversation_id)
        for reply in running:
            await answering.free(ctx, conversation_id, reply.id)
        replies = [item.id for item in deleted if item.data.sender == "assistant"]
        await reply_index.forget(ctx.state, replies)
        await reply_journal.forget(ctx.state, replies)
        await ctx.state.delete(OWNERS, conversation_id)
    finally:
        await _write_mark(ctx, conversation_id, running=False)
    return len(deleted)
