"""GET /api/conversations/{conversationId}: the conversation's messages, in order."""

from __future__ import annotations

from pydantic import BaseModel

from streamchat.catalog import current_catalog
from streamchat.chat.ownership import require_owner
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody, HttpError
from streamchat.steps.conversation_stream import MessageItem


class ConversationDetail(BaseModel):
    conversationId: str
    title: str | None = None
    messages: list[MessageItem]


config = ApiConfig(
    name="GetConversation",
    method="GET",
    path="/api/conversations/{conversationId}",
    responses={200: ConversationDetail, 404: ErrorBody},
    description="One conversation with every message (404 when unknown).",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    cid = req.path_params["conversationId"]
    await require_owner(ctx, cid, req.principal)
    record = await current_catalog().get(cid)
    items = await ctx.streams.conversation.get_group(cid)
    if record is None and not items:
        raise HttpError(404, "not_found", f"conversationId {cid!r}: no such conversation")
    messages = [{**item.data.model_dump(mode="json", by_alias=True, exclude_none=True),
                 "id": item.id, "seq": item.seq} for item in items]
    return ApiResponse(200, {"conversationId": cid, "title": None if record is None else record.title,
                             "messages": messages})
