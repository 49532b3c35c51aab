"""POST /chat: store the user's message and an empty assistant reply, then ask for the reply."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field, field_validator

from streamchat.catalog import current_catalog
from streamchat.chat import answering
from streamchat.chat.ownership import claim
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
from streamchat.steps.conversation_stream import FINISHED, ID_PATTERN, ConversationMessage, utc_now
from streamchat.steps.stop_message_step import stop_reply


class ChatRequest(BaseModel):
    message: str = Field(min_length=1, description="The user's message, at most STREAMCHAT_MAX_MESSAGE_CHARS "
                         "(default 32000) characters.")
    conversationId: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=ID_PATTERN,
        description="Continue this conversation; omitted: start a new one.",
    )

    @field_validator("message")
    @classmethod
    def _not_blank_nor_too_long(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must not be blank")
        limit = get_settings().max_message_chars
        if len(value) > limit:
            raise ValueError(f"message is {len(value)} characters; the limit is {limit}")
        return value


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
    conversation_id = req.body.conversationId or str(uuid.uuid4())
    user_message_id, assistant_message_id = str(uuid.uuid4()), str(uuid.uuid4())
    if not await claim(ctx.state, conversation_id, req.principal):
        raise HttpError(404, "not_found", f"conversationId {conversation_id!r}: no such conversation")
    taken = req.body.conversationId is not None and await make_room(ctx, conversation_id, assistant_message_id)
    try:
        await reserve(ctx, req.principal, assistant_message_id, get_settings().max_concurrent_replies)
        await store_and_queue(req, ctx, conversation_id, user_message_id, assistant_message_id)
    except BaseException:
        if taken:  # no reply will run to free it
            await answering.free(ctx, conversation_id, assistant_message_id)
        raise
    ctx.logger.info("message received", extra={"conversationId": conversation_id})
    return ApiResponse(200, {
        "conversationId": conversation_id,
        "message": "Message received, AI is responding...",
        "status": "streaming",
        "userMessageId": user_message_id,
        "assistantMessageId": assistant_message_id,
        "__motia": {"type": "state-stream", "streamName": "conversation", "groupId": conversation_id,
                    "id": assistant_message_id},
    })


async def store_and_queue(req: ApiRequest[ChatRequest], ctx: Context, conversation_id: str,
                          user_message_id: str, assistant_message_id: str) -> None:
    """Store the message and an empty reply, then ask for the reply; a failure keeps nothing half-done."""
    stream = ctx.streams.conversation
    now = utc_now()
    key_id = req.principal.key_id if req.principal else None
    stored: list[str] = []
    try:
        await stream.set(conversation_id, user_message_id, ConversationMessage(
            message=req.body.message, sender="user", status="completed", timestamp=now))
        stored.append(user_message_id)
        await stream.set(conversation_id, assistant_message_id, ConversationMessage(
            message="", sender="assistant", status="created", timestamp=now))
        stored.append(assistant_message_id)
        await ctx.emit("chat-message", ChatMessageEvent(
            message=req.body.message, conversationId=conversation_id, assistantMessageId=assistant_message_id,
            userMessageId=user_message_id, keyId=key_id))
    except OUTAGES:
        # The store filled up (PostgreSQL fills a page, then cannot add one) or a backend went away
        # between two writes: take back what this request stored, so a 507 or 503 keeps nothing of it.
        await take_back(ctx, conversation_id, stored)
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
        await current_catalog().touch(conversation_id, key_id, user_message_id, req.body.message, now)
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

