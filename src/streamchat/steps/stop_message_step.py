"""POST /api/conversations/{conversationId}/messages/{messageId}/stop: end a reply now, keeping its text."""

from __future__ import annotations

from streamchat.conversations.messages import MessageItem
from streamchat.conversations.public import message_json
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody

config = ApiConfig(
    name="StopMessage",
    method="POST",
    path="/api/conversations/{conversationId}/messages/{messageId}/stop",
    writes=["conversation"],
    responses={202: MessageItem, 404: ErrorBody, 409: ErrorBody},
    description="Stop a streaming or queued reply (202 with the item); 409 if it already finished.",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    stopped = await Conversations(ctx).stop(req.principal, req.path_params["conversationId"],
                                            req.path_params["messageId"])
    return ApiResponse(202, message_json(stopped))
