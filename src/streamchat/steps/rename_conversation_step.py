"""PATCH /api/conversations/{conversationId}: give a conversation a title of the user's own."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from streamchat.conversations.public import TITLE_MAX, ConversationRecord
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody


class RenameRequest(BaseModel):
    title: str = Field(min_length=1, max_length=TITLE_MAX, description="The new title, 1 to 200 characters.")

    @field_validator("title")
    @classmethod
    def not_blank(cls, title: str) -> str:
        if not title.strip():
            raise ValueError("title is blank")
        return title


config = ApiConfig(
    name="RenameConversation",
    method="PATCH",
    path="/api/conversations/{conversationId}",
    body=RenameRequest,
    responses={200: ConversationRecord, 404: ErrorBody},
    description="Rename a conversation (200 with its record); its new title is searchable at once.",
)


async def handler(req: ApiRequest[RenameRequest], ctx: Context) -> ApiResponse:
    record = await Conversations(ctx).rename(req.principal, req.path_params["conversationId"], req.body.title)
    return ApiResponse(200, record.public())
