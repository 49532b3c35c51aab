"""GET /api/conversations/{conversationId}: the conversation's active branch (or every message), in order."""

from __future__ import annotations

from pydantic import BaseModel, Field

from streamchat.conversations.chat_settings import ChatSettings
from streamchat.conversations.messages import TreeMessageItem
from streamchat.conversations.public import tree_message_json
from streamchat.conversations.service import Conversations
from streamchat.conversations.tool_calls import calls_by_reply
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody


class ConversationQuery(BaseModel):
    all: bool = Field(default=False, description="Every message of the tree in creation order, not only the "
                      "active branch.")


class ConversationDetail(BaseModel):
    conversationId: str
    title: str | None = None
    activeMessageId: str | None = Field(description="The active branch's leaf; null for an empty conversation.")
    settings: ChatSettings
    messages: list[TreeMessageItem]


config = ApiConfig(
    name="GetConversation",
    method="GET",
    path="/api/conversations/{conversationId}",
    query=ConversationQuery,
    responses={200: ConversationDetail, 404: ErrorBody},
    description="One conversation: its active branch root first (`all=true`: every message of its tree in "
                "creation order), each message with its parent and siblings; its settings (404 when unknown).",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    cid = req.path_params["conversationId"]
    view = await Conversations(ctx).view(req.principal, cid)
    shown = view.items if req.query.all else view.branch()
    calls = calls_by_reply(view.items)
    return ApiResponse(200, {"conversationId": cid, "title": None if view.record is None else view.record.title,
                             "activeMessageId": view.active, "settings": view.settings.model_dump(mode="json"),
                             "messages": [tree_message_json(item, view.tree, calls) for item in shown]})
