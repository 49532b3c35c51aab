"""POST /api/conversations/{conversationId}/messages/{messageId}/regenerate: a new reply to the same turn."""

from __future__ import annotations

import contextlib
import uuid

from pydantic import BaseModel

from streamchat.chat import answering
from streamchat.chat.deleting import after_writing, before_writing
from streamchat.chat.messages import FINISHED, ConversationMessage, utc_now
from streamchat.chat.ownership import require_owner
from streamchat.chat.reply_index import forget, remember
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
    Principal,
)
from streamchat.settings import get_settings
from streamchat.steps.ai_response_step import ChatMessageEvent
from streamchat.steps.chat_api_step import make_room

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
    regenerated = await regenerate(ctx, req.principal, req.path_params["conversationId"],
                                   req.path_params["messageId"])
    return ApiResponse(202, regenerated.model_dump())


async def regenerate(ctx: Context, principal: Principal | None, cid: str, mid: str | None) -> Regenerated:
    """A new reply to the user turn that assistant message `mid` answered (None: the last assistant
    message), as every protocol's "regenerate" does it."""
    await require_owner(ctx, cid, principal)
    deletion_seen = await before_writing(ctx, cid)
    items = await ctx.streams.conversation.get_group(cid)
    if mid is None:
        last = next((item for item in reversed(items) if item.data.sender == "assistant"), None)
        if last is None:
            raise HttpError(404, "not_found", f"conversationId {cid!r}: no reply to regenerate")
        mid = last.id
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
    key_id = principal.key_id if principal else None
    taken = await make_room(ctx, cid, new_id)  # the busy mode, as for a new message
    try:
        await reserve(ctx, principal, new_id, get_settings().max_concurrent_replies)
    except BaseException:
        if taken:
            await answering.free(ctx, cid, new_id)
        raise
    stored: list[str] = []
    try:
        await ctx.streams.conversation.set(cid, new_id, ConversationMessage(
            message="", sender="assistant", status="created", timestamp=utc_now()))
        stored.append(new_id)
        await remember(ctx.state, new_id, cid)
        await ctx.emit("chat-message", ChatMessageEvent(
            message=turn.data.message, conversationId=cid, assistantMessageId=new_id, userMessageId=turn.id,
            keyId=key_id))
    except NOT_QUEUED:
        # Nothing of a regenerate that cannot run is kept: no reply left 'created' for ever, no quota held.
        await take_back(ctx, cid, stored)
        with contextlib.suppress(*OUTAGES):
            await forget(ctx.state, [new_id])
        await release(ctx, key_id, new_id)
        if taken:
            await answering.free(ctx, cid, new_id)
        raise
    await after_writing(ctx, cid, deletion_seen)
    return Regenerated(conversationId=cid, assistantMessageId=new_id, userMessageId=turn.id)
