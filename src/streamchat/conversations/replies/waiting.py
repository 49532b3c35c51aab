"""A reply between model rounds, waiting for its tool calls: what lets it go on, on any instance, and
what ends it when it is stopped meanwhile.

No handler runs while a reply waits (an approval may wait for days, across restarts): the round's
calls are items, the event that asked for the reply is kept in state, and whichever step ends the
round's last call (the tool step, a deny, an approval's run) asks for the next round. Two calls
ending at once on two instances would both see the round finished; a claim per round lets one of
them ask, so the model is called once.
"""

from __future__ import annotations

import uuid

from streamchat.conversations.events import REPLY_ASKED, ChatMessageEvent
from streamchat.conversations.messages import FINISHED, ConversationMessage
from streamchat.conversations.records import TOOL_CALLS, scope_of
from streamchat.conversations.replies import answering
from streamchat.conversations.replies.quota import release
from streamchat.conversations.tool_calls import calls_of, round_finished
from streamchat.framework import Context
from streamchat.settings import Settings

#: How long a stop waits for a running call to wind up before its item is ended here.
CALL_STOP_WAIT_SECONDS = 2.0


def _asked_key(reply_id: str) -> str:
    return f"asked:{reply_id}"


def answer_key(call_id: str) -> str:
    """The claim of the one answer a waiting call gets (an approve, a deny, a client's result or a stop)."""
    return f"answer:{call_id}"


#: The statuses of a call that waits for the client (its user's approval, or its own result), or was
#: turned down by it.
WAITING = frozenset({"awaiting_approval", "awaiting_result"})


async def waited_for_client(ctx: Context, cid: str, call_id: str, call: ConversationMessage) -> bool:
    """Whether the call waited (or waits) for the client: an approval or a client's result. A call that
    has moved on still tells, because each such wait ends by taking the call's one answer claim (an
    approve, a deny, a result or the stop that ended it)."""
    if call.status in WAITING or call.status == "denied":
        return True
    return await ctx.state.get(scope_of(TOOL_CALLS, cid), answer_key(call_id)) is not None


async def waited_for_approval(ctx: Context, cid: str, call_id: str, call: ConversationMessage) -> bool:
    """Whether the call waited (or waits) for the user's approval."""
    return call.runsIn != "client" and await waited_for_client(ctx, cid, call_id, call)


async def waited_for_result(ctx: Context, cid: str, call_id: str, call: ConversationMessage) -> bool:
    """Whether the call was handed to the client to run (a client tool's call that failed its check
    was answered here and never was)."""
    return call.runsIn == "client" and await waited_for_client(ctx, cid, call_id, call)


async def remember(ctx: Context, data: ChatMessageEvent) -> None:
    """Keep the event that asked for the reply, for whoever asks for its next round."""
    await ctx.state.set(scope_of(TOOL_CALLS, data.conversationId), _asked_key(data.assistantMessageId),
                        data.model_dump(mode="json"))


async def asked(ctx: Context, cid: str, reply_id: str) -> ChatMessageEvent | None:
    record = await ctx.state.get(scope_of(TOOL_CALLS, cid), _asked_key(reply_id))
    return None if record is None else ChatMessageEvent.model_validate(record)


async def claim(ctx: Context, cid: str, key: str) -> bool:
    """Whether this caller is the one that gets `key` of the conversation's tool records (first wins)."""
    mine = {"by": uuid.uuid4().hex}
    return await ctx.state.claim(scope_of(TOOL_CALLS, cid), key, mine) == mine


async def go_on(ctx: Context, cid: str, reply_id: str, round_number: int) -> bool:
    """Once every call of the round has ended, ask for the reply's next round (once); True if asked."""
    items = await ctx.streams.conversation.get_group(cid)
    reply = next((item.data for item in items if item.id == reply_id), None)
    if reply is None or reply.status in FINISHED:
        return False
    if not round_finished(calls_of(items, reply_id), round_number):
        return False
    data = await asked(ctx, cid, reply_id)
    if data is None or not await claim(ctx, cid, f"round:{reply_id}:{round_number + 1}"):
        return False
    await ctx.emit(REPLY_ASKED, data.model_copy(update={"round": round_number + 1}))
    return True


async def let_go(ctx: Context, key_id: str | None, cid: str, reply_id: str) -> None:
    """The reply has ended: it no longer counts against its key, nor keeps its conversation busy."""
    await release(ctx, key_id, reply_id)
    if ctx.service(Settings).busy_mode == "reject":
        await answering.free(ctx, cid, reply_id)


async def end_calls(ctx: Context, cid: str, reply_id: str) -> None:
    """A stopped (or deleted) reply's calls end too: running ones are stopped where they run (a tool
    file's handler is cancelled, an MCP server is told), waiting approvals can no longer be answered
    nor client results given, and every call left unfinished ends `cancelled`. A reply that was
    waiting between rounds ran on no instance: what it held is let go of here."""
    stream = ctx.streams.conversation
    calls = [call for call in calls_of(await stream.get_group(cid), reply_id) if call.data.status not in FINISHED]
    for call in calls:
        if call.data.status == "running":
            await ctx.request_stop(call.id, wait=CALL_STOP_WAIT_SECONDS)
        elif call.data.status in WAITING:
            await claim(ctx, cid, answer_key(call.id))
    for call in calls:
        latest = await stream.get(cid, call.id)
        if latest is not None and latest.data.status not in FINISHED:
            await stream.set(cid, call.id, latest.data.model_copy(update={"status": "cancelled", "progress": None}))
    data = await asked(ctx, cid, reply_id)
    if data is not None:
        await let_go(ctx, data.keyId, cid, reply_id)

