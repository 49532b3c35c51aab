"""POST /api/conversations/{conversationId}/messages/{messageId}/stop: end a reply now, keeping its text."""

from __future__ import annotations

from typing import Any

from streamchat.chat.messages import FINISHED, ConversationMessage, MessageItem
from streamchat.chat.ownership import require_owner
from streamchat.chat.stopping import stop_reply
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody, HttpError, Item

config = ApiConfig(
    name="StopMessage",
    method="POST",
    path="/api/conversations/{conversationId}/messages/{messageId}/stop",
    writes=["conversation"],
    responses={202: MessageItem, 404: ErrorBody, 409: ErrorBody},
    description="Stop a streaming or queued reply (202 with the item); 409 if it already finished.",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    cid, mid = req.path_params["conversationId"], req.path_params["messageId"]
    await require_owner(ctx, cid, req.principal)
    reply = await ctx.streams.conversation.get(cid, mid)
    if reply is None:
        raise HttpError(404, "not_found", f"messageId {mid!r}: no such message in conversation {cid!r}")
    if reply.data.status in FINISHED:
        raise HttpError(409, "conflict", f"messageId {mid!r}: already {reply.data.status}, nothing to stop")
    await stop_reply(ctx, cid, reply)
    ctx.logger.info("stop requested", extra={"conversationId": cid, "messageId": mid})
    latest = await ctx.streams.conversation.get(cid, mid)
    return ApiResponse(202, as_json(latest or reply))


def as_json(item: Item[ConversationMessage]) -> dict[str, Any]:
    return {**item.data.model_dump(mode="json", by_alias=True, exclude_none=True), "id": item.id, "seq": item.seq}
