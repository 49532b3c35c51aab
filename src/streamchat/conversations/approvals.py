"""Answering a tool call that waits for the user's approval: approve runs it, deny tells the model no.

A waiting call is only an item (no handler waits with it), so it survives restarts and is answered
on whichever instance the request reaches. One answer per call: two at once (two tabs, approve and
deny) are told apart by a claim, and the loser gets 409, as does a call that is not waiting.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from streamchat.conversations.events import TOOL_CALL, ToolCallEvent
from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.ownership import require_owner
from streamchat.conversations.records import TOOL_CALLS, scope_of
from streamchat.conversations.replies.waiting import answer_key, asked, claim, go_on
from streamchat.conversations.tool_calls import DENIED
from streamchat.framework import Context, HttpError, Item, Principal


class ToolAnswer(BaseModel):
    """The body of an approve or a deny (optional)."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=2000, description="Deny: why, told to the model.")


def _no_such_call(cid: str, call_id: str) -> HttpError:
    return HttpError(404, "not_found", f"messageId {call_id!r}: no such tool call in conversation {cid!r}")


async def answer(ctx: Context, principal: Principal | None, cid: str, call_id: str, approve: bool,
                 reason: str | None = None) -> Item[ConversationMessage]:
    """Approve (the call is queued to run) or deny (it ends `denied` and the reply goes on); the item."""
    await require_owner(ctx, cid, principal)
    stream = ctx.streams.conversation
    call = await stream.get(cid, call_id)
    if call is None or not call.data.is_tool_call:
        raise _no_such_call(cid, call_id)
    if call.data.status != "awaiting_approval" or not await claim(ctx, cid, answer_key(call_id)):
        latest = await stream.get(cid, call_id) or call
        raise HttpError(409, "conflict", f"messageId {call_id!r}: the call is {latest.data.status}, "
                                         "not awaiting approval")
    reply_id = call.data.parentId or ""
    if approve:
        data = await asked(ctx, cid, reply_id)
        await stream.set(cid, call_id, call.data.model_copy(update={"status": "pending"}))
        try:
            await ctx.emit(TOOL_CALL, ToolCallEvent(conversationId=cid, replyId=reply_id, callId=call_id,
                                                    keyId=None if data is None else data.keyId))
        except BaseException:
            # Not queued: the call waits for its answer again, and the answer can be given again.
            await stream.set(cid, call_id, call.data)
            await ctx.state.delete(scope_of(TOOL_CALLS, cid), answer_key(call_id))
            raise
    else:
        said = DENIED if not reason else f"{DENIED}: {reason}"
        await stream.set(cid, call_id, call.data.model_copy(update={"status": "denied", "error": said}))
        await go_on(ctx, cid, reply_id, call.data.round or 0)
    ctx.logger.info("tool call answered", extra={"conversationId": cid, "callId": call_id, "approved": approve})
    return await stream.get(cid, call_id) or call
