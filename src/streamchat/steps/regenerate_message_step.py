"""POST /api/conversations/{conversationId}/messages/{messageId}/regenerate: a new reply to the same turn."""

from __future__ import annotations

import uuid

from pydantic import BaseModel

from streamchat.chat import answering
from streamchat.chat.ownership import require_owner
from streamchat.chat.reply_quota import release, reserve
from streamchat.chat.take_back import take_back
from streamchat.framework import (
    OUTAGES,
    ApiConfig,
    ApiRequest,
    ApiResponse,
    BusClosed,
    Context,
    Emit,
    ErrorBody,
    HttpError,
)
from streamchat.settings import get_settings
from streamchat.steps.ai_response_step import ChatMessageEvent
from streamchat.steps.chat_api_step import make_room
from streamchat.steps.conversation_stream import FINISHED, ConversationMessage, utc_now

#: Why a regenerate may fail after it stored the new reply: a backend outage, or a shutdown.
NOT_QUEUED: tuple[type[Exception], ...] = (*OUTAGES, BusClosed)


class Regenerated(BaseModel):
    conversationId: str
    assistantMessageId: str
    userMessageId: str


config = ApiConfig(
    name="RegenerateMessage",
    rate_limit="messages",
    method="POST",
    path="/api/conversations/{conversationId}/messages/{messageId}/regenerate",
    emits=[Emit("chat-message", ChatMessageEvent)],
    writes=["conversation"],
    responses={202: Regenerated, 404: ErrorBody, 409: ErrorBody, 429: ErrorBody},
    description="Answer the user turn of an assistant message again, as a new message (202); the busy mode "
                "applies as to a new message (409 `conversation_busy` in `reject`).",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    cid, mid = req.path_params["conversationId"], req.path_params["messageId"]
    await require_owner(ctx, cid, req.principal)
    items = await ctx.streams.conversation.get_group(cid)
    position = next((index for index, item in enumerate(items) if item.id == mid), None)
    if position is None:
        raise HttpError(404, "not_found", f"messageId {mid!r}: no such message in conversation {cid!r}")
    target = items[position]
    if target.data.sender != "assistant":
        raise HttpError(409, "conflict", f"messageId {mid!r}: only an assistant message can be regenerated")
    if target.data.status not in FINISHED:
        raise HttpError(409, "conflict", f"messageId {mid!r}: still {target.data.status}; stop it first")
    turn = next((item for item in reversed(items[:position]) if item.data.sender == "user"), None)
    if turn is None:
        raise HttpError(409, "conflict", f"messageId {mid!r}: answers no user message")
    new_id = str(uuid.uuid4())
    key_id = req.principal.key_id if req.principal else None
    taken = await make_room(ctx, cid, new_id)  # the busy mode, as for a new message
    try:
        await reserve(ctx, req.principal, new_id, get_settings().max_concurrent_replies)
    except BaseException:
        if taken:
            await answering.free(ctx, cid, new_id)
        raise
    stored: list[str] = []
    try:
        await ctx.streams.conversation.set(cid, new_id, ConversationMessage(
            message="", sender="assistant", status="created", timestamp=utc_now()))
        stored.append(new_id)
        await ctx.emit("chat-message", ChatMessageEvent(
            message=turn.data.message, conversationId=cid, assistantMessageId=new_id, userMessageId=turn.id,
            keyId=key_id))
    except NOT_QUEUED:
        # Nothing of a regenerate that cannot run is kept: no reply left 'created' for ever, no quota held.
        await take_back(ctx, cid, stored)
        await release(ctx, key_id, new_id)
        if taken:
            await answering.free(ctx, cid, new_id)
        raise
    return ApiResponse(202, {"conversationId": cid, "assistantMessageId": new_id, "userMessageId": turn.id})
