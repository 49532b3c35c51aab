"""Deleting a conversation, and what keeps a write made at that very instant from outliving it.

Each conversation has a scope of deletion marks: one `running:<token>` entry per delete under
way (several deletes may run at once, and one ending must not hide another), and a `generation`
token that every delete renews as it starts and as it ends. A send (or a regenerate, or a
reply's last write) into the conversation reads the marks before it writes anything and again
after its last write. A delete running before: 404, nothing stored. Running after, or another
generation: a delete overlapped the write, which may have landed after the delete read the
conversation, so the writer deletes the conversation itself, the whole of it as a delete does
(the two overlap harmlessly; its own marks make any other writer caught in between do the
same), and a send answers 404. The same generation and nothing running, before and after: the
writes all came before any delete read the conversation, or after one ended, so they go with
the rest or start it afresh.

A running mark that a server dying mid-delete left behind lapses after MARK_SECONDS. A deleted
conversation keeps its generation (a token, nothing of its text), so a writer that was slow to
write still sees that a delete came in between.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from streamchat.catalog import Catalog
from streamchat.conversations.messages import FINISHED
from streamchat.conversations.records import CONVERSATION, own_records, purge, scope_of
from streamchat.conversations.replies.stopping import stop_reply
from streamchat.framework import Context, HttpError
from streamchat.framework.store import JSON

GENERATION = "generation"
RUNNING = "running:"
MARK_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Marks:
    """A conversation's deletion marks as read at one instant."""

    generation: str | None
    running: bool


def _scope(conversation_id: str) -> str:
    return scope_of(CONVERSATION, conversation_id)


async def read_marks(ctx: Context, conversation_id: str) -> Marks:
    """The conversation's marks, in one read."""
    return marks_in(await own_records(ctx.state, conversation_id))


def marks_in(marks: dict[str, JSON]) -> Marks:
    """The marks among a conversation's own records (records.own_records)."""
    now = time.time()
    running = any(now - float(mark["since"]) < MARK_SECONDS for key, mark in marks.items() if key.startswith(RUNNING))
    generation = marks.get(GENERATION)
    return Marks(None if generation is None else str(generation["token"]), running)


async def _new_generation(ctx: Context, conversation_id: str) -> None:
    await ctx.state.set(_scope(conversation_id), GENERATION, {"token": uuid.uuid4().hex})


def gone(conversation_id: str) -> HttpError:
    return HttpError(404, "not_found", f"conversationId {conversation_id!r}: deleted as the message arrived")


async def before_writing(ctx: Context, conversation_id: str, marks: Marks | None = None) -> Marks:
    """Before a send stores anything: 404 while a delete runs; else the marks to compare afterwards
    (`marks`: as the caller read them just now)."""
    marks = marks or await read_marks(ctx, conversation_id)
    if marks.running:
        raise gone(conversation_id)
    return marks


async def overlapped(ctx: Context, conversation_id: str, seen: Marks) -> bool:
    """After a write made with no delete running before it (`seen`): did one run meanwhile? If so
    the conversation is deleted here too (that delete may have read it before the write landed)."""
    now = await read_marks(ctx, conversation_id)
    if not now.running and now.generation == seen.generation:
        return False
    await delete_conversation(ctx, conversation_id)
    return True


async def after_writing(ctx: Context, conversation_id: str, seen: Marks) -> None:
    """After a send's last write: a delete that overlapped it is finished here too, and the send is a 404."""
    if await overlapped(ctx, conversation_id, seen):
        raise gone(conversation_id)


async def delete_conversation(ctx: Context, conversation_id: str) -> int:
    """Stop its running or queued replies, delete every item (watchers get a delete each), then
    every record kept beside them (records.purge); how many items went.

    Its marks are renewed and let go of even when a step fails (the delete answers its error and can
    be sent again): a new generation still makes any writer that overlapped it finish the delete,
    and the conversation stays open to messages.
    """
    running_mark = f"{RUNNING}{uuid.uuid4().hex}"
    await ctx.state.set(_scope(conversation_id), running_mark, {"since": time.time()})
    await _new_generation(ctx, conversation_id)
    try:
        stream = ctx.streams.conversation
        items = await stream.get_group(conversation_id)
        running = [item for item in items if item.data.sender == "assistant" and item.data.status not in FINISHED]
        for reply in running:
            await stop_reply(ctx, conversation_id, reply)
        deleted = await stream.delete_group(conversation_id)
        replies = [item.id for item in deleted if item.data.sender == "assistant"]
        await purge(ctx.state, ctx.service(Catalog), conversation_id, replies)
    finally:
        await _new_generation(ctx, conversation_id)
        await ctx.state.delete(_scope(conversation_id), running_mark)
    return len(deleted)
