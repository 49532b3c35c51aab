"""POST /api/conversations/import: a conversation exported as JSON, brought back as a conversation.

It keeps its id when no conversation has it (nor another key's watcher), else it gets a new one;
the record is taken first, in one step, so two imports of one export at the same instant never
share an id. A reply that was still running when it was exported comes back `stopped` (nothing
will finish it). If storing fails part-way, what was stored of it is removed again.
"""

from __future__ import annotations

import dataclasses
import uuid

from streamchat.catalog import Conversation, current_catalog
from streamchat.chat.messages import FINISHED, ConversationMessage, utc_now
from streamchat.chat.ownership import OWNERS, claim
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody, Principal
from streamchat.settings import get_settings
from streamchat.steps.export_conversation_step import ExportedConversation, ExportedMessage
from streamchat.steps.list_conversations_step import ConversationRecord

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
    exported = req.body
    owner = req.principal.key_id if req.principal is not None else None
    messages = [as_stored(message) for message in exported.messages]
    texts = {message.id: data.message for message, data in zip(exported.messages, messages, strict=True)
             if data.message and data.status in ("completed", "stopped")}
    now = utc_now()
    first = exported.messages[0].timestamp if exported.messages else now
    last = exported.messages[-1].timestamp if exported.messages else now
    record = Conversation("", exported.title, exported.createdAt or first, exported.updatedAt or last, owner)

    cid = exported.conversationId
    if cid is None or not await take(ctx, cid, record, texts, req.principal):
        cid = str(uuid.uuid4())
        await take(ctx, cid, record, texts, req.principal)
    try:
        for message, data in zip(exported.messages, messages, strict=True):
            await ctx.streams.conversation.set(cid, message.id, data)
    except BaseException:
        await ctx.streams.conversation.delete_group(cid)
        await current_catalog().remove(cid)
        await ctx.state.delete(OWNERS, cid)
        raise
    ctx.logger.info("conversation imported", extra={"conversationId": cid, "messages": len(messages)})
    # Deleted again already (a DELETE at this very instant): it was imported all the same.
    stored = await current_catalog().get(cid) or dataclasses.replace(record, conversation_id=cid)
    return ApiResponse(201, stored.public())


async def take(ctx: Context, cid: str, record: Conversation, texts: dict[str, str],
               principal: Principal | None) -> bool:
    """Make `cid` this import's, if nobody uses it: owned by the caller, and its record written.

    A conversation in use is left alone before anything is claimed (claiming first would make an
    unowned conversation, one written while the server ran without keys, the importer's)."""
    if await ctx.streams.conversation.get_group(cid) or await current_catalog().get(cid) is not None:
        return False
    if not await claim(ctx.state, cid, principal):
        return False  # another key's
    return await current_catalog().restore(
        Conversation(cid, record.title, record.created_at, record.updated_at, record.owner), texts)


def as_stored(message: ExportedMessage) -> ConversationMessage:
    data = ConversationMessage.model_validate(message.model_dump(exclude={"id"}))
    if data.status in FINISHED:
        return data
    if data.sender == "user":
        return data.model_copy(update={"status": "completed"})
    return data.model_copy(update={"status": "stopped"})
