"""POST /chat: store the user's message and an empty assistant reply, then ask for the reply."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, field_validator

from streamchat.catalog import current_catalog
from streamchat.chat import answering
from streamchat.chat.deleting import after_writing, before_writing
from streamchat.chat.messages import FINISHED, ID_PATTERN, ConversationMessage, checked_message, utc_now
from streamchat.chat.ownership import claim
from streamchat.chat.reply_index import forget, remember
from streamchat.chat.reply_quota import release, reserve
from streamchat.chat.stopping import stop_reply
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
from streamchat.llm import ChatTurn
from streamchat.settings import get_settings
from streamchat.steps.ai_response_step import ChatMessageEvent


class ChatRequest(BaseModel):
    message: str = Field(min_length=1, description="The user's message, at most STREAMCHAT_MAX_MESSAGE_CHARS "
                         "characters.")
    conversationId: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=ID_PATTERN,
        description="Continue this conversation; omitted: start a new one.",
    )

    @field_validator("message")
    @classmethod
    def _not_blank_nor_too_long(cls, value: str) -> str:
        return checked_message(value)


class MotiaStreamRef(BaseModel):
    type: str = "state-stream"
    streamName: str
    groupId: str
    id: str


class ChatResponse(BaseModel):
    conversationId: str
    message: str
    status: str
    userMessageId: str
    assistantMessageId: str
    motia: MotiaStreamRef = Field(alias="__motia")


config = ApiConfig(
    name="ChatApi",
    rate_limit="messages",
    method="POST",
    path="/chat",
    body=ChatRequest,
    emits=[Emit("chat-message", ChatMessageEvent)],
    writes=["conversation"],
    responses={200: ChatResponse, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 413: ErrorBody, 422: ErrorBody,
               429: ErrorBody, 503: ErrorBody},
    description="Send a message; the reply streams into the `conversation` stream.",
)


async def handler(req: ApiRequest[ChatRequest], ctx: Context) -> ApiResponse:
    sent = await send_message(ctx, req.principal, req.body.message, req.body.conversationId)
    return ApiResponse(200, {
        "conversationId": sent.conversation_id,
        "message": "Message received, AI is responding...",
        "status": "streaming",
        "userMessageId": sent.user_message_id,
        "assistantMessageId": sent.assistant_message_id,
        "__motia": {"type": "state-stream", "streamName": "conversation", "groupId": sent.conversation_id,
                    "id": sent.assistant_message_id},
    })


@dataclass(frozen=True, slots=True)
class Sent:
    conversation_id: str
    user_message_id: str
    assistant_message_id: str


async def send_message(ctx: Context, principal: Principal | None, message: str, conversation_id: str | None = None,
                       *, earlier: Sequence[ChatTurn] = (), instructions: str | None = None,
                       details: Mapping[str, Any] | None = None) -> Sent:
    """What every protocol's "send" does: store the message (after `earlier` turns a client sent
    along, for a new conversation) and an empty reply, and ask for the reply.

    An id that is another key's, or one being deleted, is a 404; the busy mode and the key's reply
    limit apply; a failure keeps nothing of it. `details` are kept beside the reply in the reply index.
    """
    continuing = conversation_id is not None
    conversation_id = conversation_id or str(uuid.uuid4())
    user_message_id, assistant_message_id = str(uuid.uuid4()), str(uuid.uuid4())
    if not await claim(ctx.state, conversation_id, principal):
        raise HttpError(404, "not_found", f"conversationId {conversation_id!r}: no such conversation")
    # A new id is known to nobody yet, so no delete can meet it.
    deletion_seen = await before_writing(ctx, conversation_id) if continuing else None
    taken = continuing and await make_room(ctx, conversation_id, assistant_message_id)
    try:
        await reserve(ctx, principal, assistant_message_id, get_settings().max_concurrent_replies)
        await store_and_queue(ctx, principal, conversation_id, message, user_message_id, assistant_message_id,
                              earlier, instructions, details)
    except BaseException:
        if taken:  # no reply will run to free it
            await answering.free(ctx, conversation_id, assistant_message_id)
        raise
    if deletion_seen is not None:
        await after_writing(ctx, conversation_id, deletion_seen)
    ctx.logger.info("message received", extra={"conversationId": conversation_id})
    return Sent(conversation_id, user_message_id, assistant_message_id)


async def store_and_queue(ctx: Context, principal: Principal | None, conversation_id: str, message: str,
                          user_message_id: str, assistant_message_id: str, earlier: Sequence[ChatTurn],
                          instructions: str | None, details: Mapping[str, Any] | None) -> None:
    """Store the message and an empty reply, then ask for the reply; a failure keeps nothing half-done."""
    stream = ctx.streams.conversation
    now = utc_now()
    key_id = principal.key_id if principal else None
    stored: list[str] = []
    earlier_ids = [str(uuid.uuid4()) for _ in earlier]
    try:
        for earlier_id, turn in zip(earlier_ids, earlier, strict=True):
            await stream.set(conversation_id, earlier_id, ConversationMessage(
                message=turn.content, sender="user" if turn.role == "user" else "assistant", status="completed",
                timestamp=now))
            stored.append(earlier_id)
        await stream.set(conversation_id, user_message_id, ConversationMessage(
            message=message, sender="user", status="completed", timestamp=now))
        stored.append(user_message_id)
        await stream.set(conversation_id, assistant_message_id, ConversationMessage(
            message="", sender="assistant", status="created", timestamp=now))
        stored.append(assistant_message_id)
        await remember(ctx.state, assistant_message_id, conversation_id, details)
        await ctx.emit("chat-message", ChatMessageEvent(
            message=message, conversationId=conversation_id, assistantMessageId=assistant_message_id,
            userMessageId=user_message_id, keyId=key_id, instructions=instructions))
    except OUTAGES:
        # The store filled up (PostgreSQL fills a page, then cannot add one) or a backend went away
        # between two writes: take back what this request stored, so a 507 or 503 keeps nothing of it.
        await take_back(ctx, conversation_id, stored)
        with contextlib.suppress(*OUTAGES):
            await forget(ctx.state, [assistant_message_id])
        await release(ctx, key_id, assistant_message_id)
        raise
    except BusClosed:
        # Shutting down: the message stays (it was sent), its reply says why it never came; 503.
        await release(ctx, key_id, assistant_message_id)
        await stream.set(conversation_id, assistant_message_id, ConversationMessage(
            message="", sender="assistant", status="error", timestamp=now, error="could not queue the reply"))
        raise
    # After the emit: the reply need not wait for the conversation list's record and search text.
    try:
        catalog = current_catalog()
        await catalog.touch(conversation_id, key_id, user_message_id, message, now)
        for earlier_id, turn in zip(earlier_ids, earlier, strict=True):
            await catalog.index(conversation_id, earlier_id, turn.content)
    except OUTAGES as error:
        # The message is stored and its reply queued: accepted (an error would make the client send
        # it twice). The list catches up with the next message.
        ctx.logger.warning("could not update the conversation list", extra={
            "conversationId": conversation_id, "error": str(error)})


async def make_room(ctx: Context, conversation_id: str, reply_id: str) -> bool:
    """Apply the busy mode to a conversation whose reply is still running or queued; True if
    `reply_id` took the conversation's one reply (reject mode), which the AI step frees.

    enqueue (default): nothing to do, the new reply waits its turn. reject: 409, nothing stored.
    interrupt: stop the unfinished replies first.
    """
    mode = get_settings().busy_mode
    if mode == "enqueue":
        return False
    busy = [item for item in await ctx.streams.conversation.get_group(conversation_id)
            if item.data.sender == "assistant" and item.data.status not in FINISHED]
    if mode == "reject":
        if busy or not await answering.take(ctx, conversation_id, reply_id):
            answered = f"message {busy[-1].id!r}" if busy else "another message sent at the same time"
            raise HttpError(409, "conversation_busy",
                            f"conversationId {conversation_id!r}: still answering {answered}; wait for it or stop it")
        return True
    for reply in busy:
        await stop_reply(ctx, conversation_id, reply)
    return False

