"""PUT /api/conversations/{conversationId}/active: make the branch through a message the active one."""

from __future__ import annotations

from pydantic import BaseModel, Field

from streamchat.conversations.messages import ID_PATTERN
from streamchat.conversations.results import ActiveBranchView
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody


class SwitchRequest(BaseModel):
    messageId: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN,
                           description="A message of the branch to show; its leaf is the one last active under it.")


config = ApiConfig(
    name="SwitchBranch",
    method="PUT",
    path="/api/conversations/{conversationId}/active",
    body=SwitchRequest,
    writes=["conversation"],
    responses={200: ActiveBranchView, 404: ErrorBody, 422: ErrorBody},
    description="Switch the active branch (every watcher gets an `active-branch` event): 200 with the active "
                "leaf and the path from the root to it.",
)


async def handler(req: ApiRequest[SwitchRequest], ctx: Context) -> ApiResponse:
    switched = await Conversations(ctx).switch(req.principal, req.path_params["conversationId"],
                                               req.body.messageId)
    return ApiResponse(200, switched.model_dump())
