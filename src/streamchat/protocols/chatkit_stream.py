"""A ChatKit stream: the events of one reply (a run) as Server-Sent Events, each with an id that
resumes it exactly.

A run's events are numbered from 0 in an order fixed by what is stored (chatkit_layout.py): first
what the request that asked for the reply shows before it (`thread.created` for a thread's first
message, the user message's item when the reply is the first to it, then `stream_options`), then the
reply's own. Each frame is `id: <anchor>.<n>` and `data: <event JSON>`: `n` is the event's number in
the run, and `anchor` is a seq of the conversation's stream, the reply's own when ChatKit first showed
it (for a reply asked for through ChatKit, as it was created), kept in state with the conversation, so
ids are unique and rising within a thread and tell apart every event that one change gave.

A stream ends with its run, or where the run waits for a client tool's result (the client sends
it with `threads.add_client_tool_output`, whose stream goes on from there). A client that goes away
stops nothing; it resumes with GET /chatkit/threads/{thread}/events and `Last-Event-ID`, on any
instance, while the run goes on or after it ended.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence

import orjson

from streamchat.conversations.branches import tree_of
from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.records import CHATKIT, scope_of
from streamchat.framework import Context, HttpError, Item, Quiet
from streamchat.protocols.chatkit_errors import error_event
from streamchat.protocols.chatkit_items import page, thread_metadata, user_item
from streamchat.protocols.chatkit_layout import STREAM_OPTIONS, ChatKitLayout, Event
from streamchat.protocols.following import PING
from streamchat.protocols.seen_reply import follow

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: How long a stream waits for the calls of a reply that has ended before it shows them cancelled
#: (a stop ends them within seconds; only a call whose run was lost never ends).
_EVENT_ID = re.compile(r"^(?P<anchor>\d{1,18})\.(?P<number>\d{1,9})$")


async def anchor_of(ctx: Context, cid: str, reply_id: str) -> int:
    """The reply's anchor: the seq its item had when ChatKit first showed it, kept from then on."""
    scope = scope_of(CHATKIT, cid)
    kept = await ctx.state.get(scope, f"run:{reply_id}")
    if kept is None:
        reply = await ctx.streams.conversation.get(cid, reply_id)
        kept = await ctx.state.claim(scope, f"run:{reply_id}", {"anchor": 0 if reply is None else reply.seq})
        await ctx.state.set(scope, f"anchor:{kept['anchor']}", {"reply": reply_id})
    return int(kept["anchor"])


def parse_event_id(raw: str, field: str = "Last-Event-ID") -> tuple[int, int]:
    found = _EVENT_ID.match(raw.strip())
    if found is None:
        raise HttpError(422, "validation_error", f"{field}: {raw[:60]!r} is not an event id of a ChatKit stream "
                        "(<anchor>.<number>)", fields=[{"field": field, "message": "not an event id",
                                                        "type": "value_error"}])
    return int(found["anchor"]), int(found["number"])


async def reply_of_event(ctx: Context, cid: str, event_id: str) -> tuple[str, int]:
    """The reply whose stream an event id is of, and the event's number; 404 naming the id if none."""
    anchor, number = parse_event_id(event_id)
    kept = await ctx.state.get(scope_of(CHATKIT, cid), f"anchor:{anchor}")
    if kept is None or await ctx.streams.conversation.get(cid, str(kept["reply"])) is None:
        raise HttpError(404, "not_found", f"Last-Event-ID: {event_id.strip()!r} is no event of a stream of thread "
                        f"{cid!r}")
    return str(kept["reply"]), number


def opening(cid: str, items: Sequence[Item[ConversationMessage]], reply_id: str) -> list[Event]:
    """What a stream shows before the reply: the thread's creation with its first message, the user
    message the reply is the first answer to, then the stream's options."""
    events: list[Event] = []
    tree = tree_of(items)
    by_id = {item.id: item for item in items}
    asked = tree.parent(reply_id) if reply_id in tree else None
    user = by_id.get(asked) if asked is not None else None
    if user is not None and user.data.sender == "user" and tree.children(user.id)[:1] == (reply_id,):
        if tree.roots()[:1] == (user.id,):
            thread = {**thread_metadata(cid, None, user.data.timestamp), "items": page([])}
            events.append({"type": "thread.created", "thread": thread})
        events.append({"type": "thread.item.done", "item": user_item(cid, user.id, user.data)})
    return [*events, STREAM_OPTIONS]


async def run_events(ctx: Context, cid: str, reply_id: str, ping_seconds: float, *, after: int = -1,
                     after_call: str | None = None) -> AsyncIterator[bytes]:
    """The run's events after event `after` (-1: all), or after the item of client call `after_call`,
    until the run ends or waits for a client tool's result."""
    anchor = await anchor_of(ctx, cid, reply_id)
    number = -1
    start = after if after_call is None else None

    def frame(event: Event) -> bytes | None:
        nonlocal number, start
        number += 1
        if start is None:
            item = event.get("item") or {}
            if event["type"] == "thread.item.done" and item.get("id") == after_call:
                start = number
            return None
        if number <= start:
            return None
        return b"id: %d.%d\ndata: %s\n\n" % (anchor, number, orjson.dumps(event))

    layout = ChatKitLayout(ctx, cid, reply_id, as_written=True)
    async for event in _followed(ctx, cid, layout, ping_seconds):
        if isinstance(event, Quiet):
            yield PING
        elif (sent := frame(event)) is not None:
            yield sent


async def _followed(ctx: Context, cid: str, layout: ChatKitLayout, keepalive: float) -> AsyncIterator[Event | Quiet]:
    """The run's events as the reply goes (and `Quiet` after `keepalive` quiet seconds), to its end,
    the client tool result it waits for, or the moment it can no longer be followed."""
    async with ctx.streams.conversation.watch_group(cid, keepalive) as watch:
        snapshot = watch.snapshot()
        items = [Item(state.item_id, state.seq, state.data) for state in snapshot]
        for event in opening(cid, items, layout.reply_id):
            yield event
        async for laid in follow(layout, snapshot, watch):
            yield laid
        if layout.reply is None:
            yield error_event("the reply is not there (its thread was deleted)", allow_retry=False)
        elif layout.lost is not None:
            yield error_event(layout.lost, allow_retry=False)

