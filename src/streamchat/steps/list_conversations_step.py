"""GET /api/conversations: the caller's conversations, most recently active first."""

from __future__ import annotations

from pydantic import BaseModel

from streamchat.chat.ownership import OWNERS
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context


class ConversationSummary(BaseModel):
    conversationId: str
    title: str
    createdAt: str
    updatedAt: str


class ConversationList(BaseModel):
    conversations: list[ConversationSummary]


config = ApiConfig(
    name="ListConversations",
    method="GET",
    path="/api/conversations",
    responses={200: ConversationList},
    description="Conversations, newest activity first.",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    records = await ctx.state.get_group("conversations")
    if req.principal is not None:
        owners = await ctx.state.get_group(OWNERS)
        records = {cid: record for cid, record in records.items()
                   if owners.get(cid, {}).get("keyId") == req.principal.key_id}
    ordered = sorted(records.values(), key=lambda record: record["updatedAt"], reverse=True)
    return ApiResponse(200, {"conversations": ordered})
