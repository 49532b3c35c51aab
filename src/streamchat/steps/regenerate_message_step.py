"""POST /api/conversations/{conversationId}/messages/{messageId}/regenerate: a new reply to the same turn."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from streamchat.conversations.events import REPLY_ASKED, ChatMessageEvent
from streamchat.conversations.results import Regenerated
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, Emit, ErrorBody


class RegenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, min_length=1, description="Answer with this model (the "
                              "conversation's otherwise): replies of two models side by side, as siblings.")


config = ApiConfig(
    name="RegenerateMessage",
    rate_limit="messages",
    method="POST",
    path="/api/conversations/{conversationId}/messages/{messageId}/regenerate",
    body=RegenerateRequest,
    body_optional=True,
    emits=[Emit(REPLY_ASKED, ChatMessageEvent)],
    writes=["conversation"],
    responses={202: Regenerated, 404: ErrorBody, 409: ErrorBody, 422: ErrorBody, 429: ErrorBody},
    description="Answer the user turn of an assistant message again, as a new reply beside it (same parent; the "
                "old one stays), which becomes the active branch (202); the busy mode applies as to a new message "
                "(409 `conversation_busy` in `reject`).",
)


async def handler(req: ApiRequest[RegenerateRequest], ctx: Context) -> ApiResponse:
    regenerated = await Conversations(ctx).regenerate(req.principal, req.path_params["conversationId"],
                                                      req.path_params["messageId"], req.body.model)
    return ApiResponse(202, regenerated.model_dump())
