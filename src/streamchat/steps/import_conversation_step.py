"""POST /api/conversations/import: a conversation exported as JSON, brought back as a conversation.

It keeps its id when no conversation has it (nor another key's watcher), else it gets a new one;
the record is taken first, in one step, so two imports of one export at the same instant never
share an id. A reply that was still running when it was exported comes back `stopped` (nothing
will finish it). If storing fails part-way, what was stored of it is removed again.
"""

from __future__ import annotations

from streamchat.conversations.exports import ExportedConversation
from streamchat.conversations.public import ConversationRecord
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody
from streamchat.settings import get_settings

config = ApiConfig(
    name="ImportConversation",
    method="POST",
    path="/api/conversations/import",
    body=ExportedConversation,
    writes=["conversation"],
    responses={201: ConversationRecord, 422: ErrorBody},
    max_body_bytes=lambda: get_settings().max_import_bytes,
    description="Store a conversation exported as JSON (201 with its record): under its own id when that "
                "is free, else under a new one.",
)


async def handler(req: ApiRequest[ExportedConversation], ctx: Context) -> ApiResponse:
    record = await Conversations(ctx).bring_in(req.principal, req.body)
    return ApiResponse(201, record.public())
