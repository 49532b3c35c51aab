"""POST /api/conversations/{conversationId}/messages/{messageId}/approve: run a tool call that waits
for the user's approval."""

from __future__ import annotations

from streamchat.conversations.approvals import ToolAnswer, answer
from streamchat.conversations.events import REPLY_ASKED, TOOL_CALL, ChatMessageEvent, ToolCallEvent
from streamchat.conversations.messages import MessageItem
from streamchat.conversations.public import message_json
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, Emit, ErrorBody

config = ApiConfig(
    name="ApproveToolCall",
    method="POST",
    path="/api/conversations/{conversationId}/messages/{messageId}/approve",
    body=ToolAnswer,
    body_optional=True,
    emits=[Emit(TOOL_CALL, ToolCallEvent), Emit(REPLY_ASKED, ChatMessageEvent)],
    writes=["conversation"],
    responses={200: MessageItem, 404: ErrorBody, 409: ErrorBody, 422: ErrorBody},
    description="Approve a tool call that awaits approval: it runs (200 with the item); 409 if it is not "
                "awaiting approval.",
)


async def handler(req: ApiRequest[ToolAnswer | None], ctx: Context) -> ApiResponse:
    reason = None if req.body is None else req.body.reason
    call = await answer(ctx, req.principal, req.path_params["conversationId"], req.path_params["messageId"],
                        approve=True, reason=reason)
    return ApiResponse(200, message_json(call))
