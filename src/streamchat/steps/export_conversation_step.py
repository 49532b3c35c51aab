"""GET /api/conversations/{conversationId}/export: a conversation to keep or to move, as JSON or Markdown.

The JSON form is what POST /api/conversations/import takes back; the Markdown form is a transcript
for people (conversations/exports.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from streamchat.conversations.exports import ExportedConversation, transcript
from streamchat.conversations.messages import utc_now
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody


class ExportQuery(BaseModel):
    format: Literal["json", "markdown"] = Field(default="json", description="`json` (importable) or `markdown`.")


config = ApiConfig(
    name="ExportConversation",
    method="GET",
    path="/api/conversations/{conversationId}/export",
    query=ExportQuery,
    responses={200: ExportedConversation, 404: ErrorBody},
    text_responses={200: "text/markdown"},
    description="Download a conversation: `format=json` (what import takes) or `format=markdown` (a transcript).",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    cid = req.path_params["conversationId"]
    view = await Conversations(ctx).view(req.principal, cid)
    record, items = view.record, view.items
    title = record.title if record is not None else cid
    # Every message names its parent as the tree reads it (one kept before the tree too), so the tree
    # comes back whole on import.
    exported = {"format": "streamchat.conversation", "version": 1, "conversationId": cid, "title": title,
                "createdAt": None if record is None else record.created_at,
                "updatedAt": None if record is None else record.updated_at, "exportedAt": utc_now(),
                "activeMessageId": view.active,
                "messages": [{"id": item.id, **item.data.model_dump(mode="json", by_alias=True, exclude_none=True),
                              "parentId": item.data.parentId if item.data.is_tool_call else view.tree.parent(item.id)}
                             for item in items]}
    name = f"conversation-{cid}"
    if req.query.format == "markdown":
        return ApiResponse(200, transcript(title, view.branch()), media_type="text/markdown",
                           headers={"Content-Disposition": f'attachment; filename="{name}.md"'})
    return ApiResponse(200, exported, headers={"Content-Disposition": f'attachment; filename="{name}.json"'})
