"""GET /api/conversations/{conversationId}: the conversation's messages, in order."""

from __future__ import annotations

from pydantic import BaseModel

from streamchat.conversations.messages import MessageItem
from streamchat.conversations.public import message_json
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody


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
    record, items = await Conversations(ctx).read(req.principal, cid)
    return ApiResponse(200, {"conversationId": cid, "title": None if record is None else record.title,
                             "messages": [message_json(item) for item in items]})
