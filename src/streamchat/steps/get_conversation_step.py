"""GET /api/conversations/{conversationId}: the conversation's messages, in order."""

from __future__ import annotations

from pydantic import BaseModel

from streamchat.catalog import Conversation, current_catalog
from streamchat.chat.messages import ConversationMessage, MessageItem
from streamchat.chat.ownership import require_owner
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody, HttpError, Item, Principal


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


async def read_conversation(ctx: Context, cid: str, principal: Principal | None
                            ) -> tuple[Conversation | None, list[Item[ConversationMessage]]]:
    """The caller's conversation: its record (None for one kept without) and messages; 404 otherwise."""
    await require_owner(ctx, cid, principal)
    record = await current_catalog().get(cid)
    items = await ctx.streams.conversation.get_group(cid)
    if record is None and not items:
        raise HttpError(404, "not_found", f"conversationId {cid!r}: no such conversation")
    return record, items


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    cid = req.path_params["conversationId"]
    record, items = await read_conversation(ctx, cid, req.principal)
    messages = [{**item.data.model_dump(mode="json", by_alias=True, exclude_none=True),
                 "id": item.id, "seq": item.seq} for item in items]
    return ApiResponse(200, {"conversationId": cid, "title": None if record is None else record.title,
                             "messages": messages})
