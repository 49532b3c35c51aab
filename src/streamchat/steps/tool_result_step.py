"""POST /api/conversations/{conversationId}/messages/{messageId}/result: the result of a tool call
that runs in the client."""

from __future__ import annotations

from streamchat.conversations.client_results import ClientResult, give_result
from streamchat.conversations.events import REPLY_ASKED, ChatMessageEvent
from streamchat.conversations.messages import MessageItem
from streamchat.conversations.public import message_json
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, Emit, ErrorBody

config = ApiConfig(
    name="GiveToolResult",
    method="POST",
    path="/api/conversations/{conversationId}/messages/{messageId}/result",
    body=ClientResult,
    emits=[Emit(REPLY_ASKED, ChatMessageEvent)],
    writes=["conversation"],
    responses={200: MessageItem, 404: ErrorBody, 409: ErrorBody, 422: ErrorBody},
    description="Give the result (`output`) or the failure (`error`) of a tool call that awaits a client's "
                "result: the call ends with it and the reply goes on (200 with the item); 409 if the call is "
                "not awaiting a result.",
)


async def handler(req: ApiRequest[ClientResult], ctx: Context) -> ApiResponse:
    call = await give_result(ctx, req.principal, req.path_params["conversationId"], req.path_params["messageId"],
                             req.body)
    return ApiResponse(200, message_json(call))
