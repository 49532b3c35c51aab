"""POST /v1/responses/{id}/cancel: stop a queued or streaming response, keeping its text (the same
stop as POST /api/conversations/{cid}/messages/{mid}/stop). Cancelling a cancelled one answers it again."""

from __future__ import annotations

from streamchat.conversations.messages import FINISHED
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context
from streamchat.protocols.openai_errors import OpenAiError, invalid
from streamchat.protocols.openai_responses import ResponseObject, find_response, response_object

config = ApiConfig(
    name="OpenAiCancelResponse",
    method="POST",
    path="/v1/responses/{id}/cancel",
    writes=["conversation"],
    responses={200: ResponseObject, 400: OpenAiError, 404: OpenAiError},
    description="OpenAI Responses API: cancel a queued or in-progress response (its text so far is kept).",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    response_id = req.path_params["id"]
    record, reply = await find_response(ctx, response_id, req.principal)
    cid = record.conversation_id
    if reply.data.status in FINISHED - {"stopped"}:
        raise invalid("id", f"response {response_id!r} is already {reply.data.status}; only a queued or in-progress "
                      "response can be cancelled", code="response_not_cancellable")
    if reply.data.status not in FINISHED:
        await Conversations(ctx).stop_reply(cid, reply)
        ctx.logger.info("response cancelled", extra={"conversationId": cid, "messageId": response_id})
    latest = await ctx.streams.conversation.get(cid, response_id) or reply
    return ApiResponse(200, response_object(response_id, cid, record.details, latest.data))
