"""ChatKit's thread requests, answered from the conversations they are: the thread and its items, the
list of threads, a rename, a delete, feedback; and what a streaming request acts on (the reply to
retry, the client tool call waiting for its output).

A thread's items are the active branch's messages and tool calls (chatkit_items.py), each reply laid
out by the same layout its stream uses, so a listing and a stream never disagree.
"""

from __future__ import annotations

from typing import Any

from streamchat.catalog import BadCursor, Catalog, Conversation
from streamchat.conversations.feedback import rate
from streamchat.conversations.service import Conversations, ConversationView
from streamchat.conversations.tool_calls import call_index, calls_by_reply
from streamchat.framework import Context, HttpError, ItemState, Principal
from streamchat.protocols.chatkit_items import page, part_of, thread_metadata, user_item
from streamchat.protocols.chatkit_layout import AWAITING_RESULT, ChatKitLayout
from streamchat.protocols.chatkit_requests import (
    DEFAULT_LIMIT,
    FeedbackParams,
    ListItemsParams,
    ListThreadsParams,
    invalid,
)


async def thread_items(ctx: Context, cid: str, view: ConversationView) -> list[dict[str, Any]]:
    """The active branch as ChatKit thread items, root first."""
    calls = calls_by_reply(view.items)
    by_id = {item.id: item for item in view.items}
    laid: list[dict[str, Any]] = []
    for message_id in [] if view.active is None else view.tree.path_to(view.active):
        item = by_id[message_id]
        if item.data.sender == "user":
            laid.append(user_item(cid, item.id, item.data))
            continue
        layout = ChatKitLayout(ctx, cid, item.id, as_written=False)
        for shown in (item, *calls.get(item.id, ())):
            await layout.absorb(ItemState(shown.seq, shown.data, shown.id))
        await layout.advance()
        laid += layout.laid_items()
    return laid


def _metadata(cid: str, view: ConversationView) -> dict[str, Any]:
    record = view.record
    if record is not None:
        return thread_metadata(cid, record.title, record.created_at)
    first = view.items[0].data.timestamp if view.items else "1970-01-01T00:00:00.000Z"
    return thread_metadata(cid, None, first)


def _public(record: Conversation) -> dict[str, Any]:
    return {**thread_metadata(record.conversation_id, record.title, record.created_at), "items": page([])}


def paged(items: list[dict[str, Any]], limit: int, order: str, after: str | None) -> dict[str, Any]:
    """One page of items in `order`, after the item `after` (the last of the page before)."""
    ordered = items if order == "asc" else items[::-1]
    start = 0
    if after is not None:
        ids = [str(item["id"]) for item in ordered]
        if after not in ids:
            raise invalid("params.after", f"{after!r} is no item of this thread")
        start = ids.index(after) + 1
    chunk = ordered[start:start + limit]
    more = start + limit < len(ordered)
    return page(chunk, more, str(chunk[-1]["id"]) if more and chunk else None)


async def get_thread(ctx: Context, principal: Principal | None, cid: str) -> dict[str, Any]:
    """The thread and the first page of its items, oldest first (as ChatKit's own server answers)."""
    view = await Conversations(ctx).view(principal, cid)
    items = await thread_items(ctx, cid, view)
    return {**_metadata(cid, view), "items": paged(items, DEFAULT_LIMIT, "asc", None)}


async def list_items(ctx: Context, principal: Principal | None, params: ListItemsParams) -> dict[str, Any]:
    view = await Conversations(ctx).view(principal, params.thread_id)
    items = await thread_items(ctx, params.thread_id, view)
    return paged(items, params.limit or DEFAULT_LIMIT, params.order, params.after)


async def list_threads(ctx: Context, principal: Principal | None, params: ListThreadsParams) -> dict[str, Any]:
    """The caller's threads, most recently active first; `after` is the cursor the page before gave."""
    if params.order != "desc":
        raise invalid("params.order", "only 'desc' (most recently active first) is served")
    owner = None if principal is None else principal.key_id
    try:
        recent = await ctx.service(Catalog).recent(owner, params.limit or DEFAULT_LIMIT, params.after)
    except BadCursor:
        raise invalid("params.after", "not a cursor this server handed out") from None
    return page([_public(record) for record in recent.entries], recent.next_cursor is not None, recent.next_cursor)


async def rename(ctx: Context, principal: Principal | None, cid: str, title: str) -> dict[str, Any]:
    if not title.strip():
        raise invalid("params.title", "title is blank")
    record, _ = await Conversations(ctx).configure(principal, cid, title, None)
    return _public(record)


def _message_of(view: ConversationView, item_id: str) -> str | None:
    """The message a thread item shows: a message itself, a reply's text or workflow part, a call's reply."""
    if item_id in view.tree:
        return item_id
    by_id = {item.id: item for item in view.items}
    if item_id in by_id and by_id[item_id].data.is_tool_call:
        return by_id[item_id].data.parentId
    reply = part_of(item_id)
    return reply if reply is not None and reply in view.tree else None


async def give_feedback(ctx: Context, principal: Principal | None, params: FeedbackParams) -> None:
    """The rating of each item's message (feedback.py); 404 naming an item the thread does not have."""
    view = await Conversations(ctx).view(principal, params.thread_id)
    messages: list[str] = []
    for index, item_id in enumerate(params.item_ids):
        message_id = _message_of(view, item_id)
        if message_id is None:
            raise HttpError(404, "not_found", f"params.item_ids[{index}]: {item_id!r} is no item of thread "
                            f"{params.thread_id!r}")
        messages.append(message_id)
    await rate(ctx.state, params.thread_id, messages, params.kind)


def reply_to_retry(view: ConversationView, item_id: str) -> str:
    """`retry_after_item` names a user message (ChatKit's own server asks for one): its reply on the
    active branch (else its latest) is answered again; an item of a reply names that reply."""
    message_id = _message_of(view, item_id)
    if message_id is None:
        raise HttpError(404, "not_found", f"params.item_id: {item_id!r} is no item of this thread")
    by_id = {item.id: item for item in view.items}
    if by_id[message_id].data.sender != "user":
        return message_id
    branch = [] if view.active is None else view.tree.path_to(view.active)
    if message_id in branch and branch.index(message_id) + 1 < len(branch):
        return branch[branch.index(message_id) + 1]
    replies = [child for child in view.tree.children(message_id) if by_id[child].data.sender == "assistant"]
    if not replies:
        raise HttpError(409, "conflict", f"params.item_id: {item_id!r} has no reply to retry")
    return replies[-1]


def waiting_client_call(view: ConversationView) -> tuple[str, str]:
    """The reply and the client tool call of the active branch that waits for the client's output (the
    first, in the order the thread shows them); 409 naming the thread when none does."""
    calls = calls_by_reply(view.items)
    branch = [] if view.active is None else view.tree.path_to(view.active)
    for reply_id in reversed(branch):
        waiting = [call for call in calls.get(reply_id, ()) if call.data.status == AWAITING_RESULT]
        if waiting:
            first = min(waiting, key=lambda call: (call.data.round or 0, call_index(call.id)))
            return reply_id, first.id
    raise HttpError(409, "conflict", "params.thread_id: no client tool call of this thread waits for its output")
