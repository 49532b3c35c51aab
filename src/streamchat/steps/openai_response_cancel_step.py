"""POST /v1/responses/{id}/cancel: stop a queued or streaming response, keeping its text (the same
stop as POST /api/conversations/{cid}/messages/{mid}/stop). Cancelling a cancelled one answers it again.
Any stretch of a reply that has not ended stops the whole reply (its calls and waiting approvals too)."""

from __future__ import annotations

import dataclasses

from streamchat.conversations.messages import FINISHED
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context
from streamchat.protocols.openai_errors import OpenAiError, invalid
from streamchat.protocols.openai_responses import ResponseObject, current_response, find_response

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
    target = await find_response(ctx, response_id, req.principal)
    cid, reply = target.conversation_id, target.reply
    if reply.data.status in FINISHED - {"stopped"}:
        raise invalid("id", f"response {response_id!r} is already {reply.data.status}; only a queued or in-progress "
                      "response can be cancelled", code="response_not_cancellable")
    if reply.data.status not in FINISHED:
        await Conversations(ctx).stop_reply(cid, reply)
        ctx.logger.info("response cancelled", extra={"conversationId": cid, "messageId": reply.id})
    latest = await ctx.streams.conversation.get(cid, reply.id) or reply
    return ApiResponse(200, await current_response(ctx, dataclasses.replace(target, reply=latest)))
