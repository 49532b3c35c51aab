"""POST /api/conversations/{conversationId}/messages/{messageId}/edit: a new version of a user message,
beside it, and a reply to it; the edited message and everything under it stay."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from streamchat.conversations.events import REPLY_ASKED, ChatMessageEvent
from streamchat.conversations.messages import checked_message
from streamchat.conversations.results import Edited
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, Emit, ErrorBody


class EditRequest(BaseModel):
    message: str = Field(min_length=1, description="The new text of the message.")
    model: str | None = Field(default=None, min_length=1, description="Answer with this model (the "
                              "conversation's otherwise).")

    @field_validator("message")
    @classmethod
    def _not_blank_nor_too_long(cls, value: str) -> str:
        return checked_message(value)


config = ApiConfig(
    name="EditMessage",
    rate_limit="messages",
    method="POST",
    path="/api/conversations/{conversationId}/messages/{messageId}/edit",
    body=EditRequest,
    emits=[Emit(REPLY_ASKED, ChatMessageEvent)],
    writes=["conversation"],
    responses={202: Edited, 404: ErrorBody, 409: ErrorBody, 422: ErrorBody, 429: ErrorBody},
    description="Edit a user message: a new message beside it (same parent) and its reply, which becomes the "
                "active branch (202); the busy mode applies as to a new message.",
)


async def handler(req: ApiRequest[EditRequest], ctx: Context) -> ApiResponse:
    edited = await Conversations(ctx).edit(req.principal, req.path_params["conversationId"],
                                           req.path_params["messageId"], req.body.message, req.body.model)
    return ApiResponse(202, edited.model_dump())
