"""POST /chat: store the user's message and an empty assistant reply, then ask for the reply."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streamchat.conversations.chat_settings import FIELDS, ChatSettings
from streamchat.conversations.events import REPLY_ASKED, ChatMessageEvent
from streamchat.conversations.messages import ID_PATTERN, checked_message
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, Emit, ErrorBody


class ChatRequest(ChatSettings):
    """The message, and optionally the conversation's settings (model, systemPrompt, temperature,
    maxTokens) for a new conversation, or changed from this reply on."""

    model_config = ConfigDict(extra="ignore")

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
    emits=[Emit(REPLY_ASKED, ChatMessageEvent)],
    writes=["conversation"],
    responses={200: ChatResponse, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 413: ErrorBody, 422: ErrorBody,
               429: ErrorBody, 503: ErrorBody},
    description="Send a message; the reply streams into the `conversation` stream.",
)


async def handler(req: ApiRequest[ChatRequest], ctx: Context) -> ApiResponse:
    body = req.body
    change = ChatSettings.model_validate(body.model_dump(include=set(FIELDS), exclude_unset=True))
    sent = await Conversations(ctx).send(req.principal, body.message, body.conversationId, change=change)
    return ApiResponse(200, {
        "conversationId": sent.conversation_id,
        "message": "Message received, AI is responding...",
        "status": "streaming",
        "userMessageId": sent.user_message_id,
        "assistantMessageId": sent.assistant_message_id,
        "__motia": {"type": "state-stream", "streamName": "conversation", "groupId": sent.conversation_id,
                    "id": sent.assistant_message_id},
    })
