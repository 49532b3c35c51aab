"""PATCH /api/conversations/{conversationId}: give a conversation a title of the user's own."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from streamchat.catalog import current_catalog
from streamchat.chat.ownership import require_owner
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody, HttpError
from streamchat.steps.list_conversations_step import ConversationRecord

TITLE_MAX = 200


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
    cid = req.path_params["conversationId"]
    await require_owner(ctx, cid, req.principal)
    record = await current_catalog().rename(cid, req.body.title)
    if record is None:
        raise HttpError(404, "not_found", f"conversationId {cid!r}: no such conversation")
    ctx.logger.info("conversation renamed", extra={"conversationId": cid})
    return ApiResponse(200, record.public())
