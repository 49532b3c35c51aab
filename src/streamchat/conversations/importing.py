"""Bringing an exported conversation back: its messages, its tree and its active leaf, under its own
id when that is free (nor another key's), else under a new one; nothing of it kept if storing fails."""

from __future__ import annotations

import dataclasses
import uuid

from streamchat.catalog import Catalog, Conversation
from streamchat.conversations.exports import ExportedConversation, as_stored
from streamchat.conversations.messages import utc_now
from streamchat.conversations.ownership import claim
from streamchat.conversations.records import BRANCH_KEY, CONVERSATION, OWNERS, scope_of
from streamchat.conversations.tree import ActiveBranch
from streamchat.framework import Context, Principal


async def bring_in(ctx: Context, catalog: Catalog, principal: Principal | None,
                   exported: ExportedConversation) -> Conversation:
    owner = None if principal is None else principal.key_id
    messages = [as_stored(message) for message in exported.messages]
    texts = {message.id: data.message for message, data in zip(exported.messages, messages, strict=True)
             if data.message and data.status in ("completed", "stopped")}
    now = utc_now()
    first = exported.messages[0].timestamp if exported.messages else now
    last = exported.messages[-1].timestamp if exported.messages else now
    record = Conversation("", exported.title, exported.createdAt or first, exported.updatedAt or last, owner)
    stream = ctx.streams.conversation
    cid = exported.conversationId
    if cid is None or not await _take(ctx, catalog, cid, record, texts, principal):
        cid = str(uuid.uuid4())
        await _take(ctx, catalog, cid, record, texts, principal)
    try:
        for message, data in zip(exported.messages, messages, strict=True):
            await stream.set(cid, message.id, data)
        if exported.activeMessageId is not None:
            branch = ActiveBranch(exported.activeMessageId)
            await ctx.state.set(scope_of(CONVERSATION, cid), BRANCH_KEY, branch.to_json())
    except BaseException:
        await stream.delete_group(cid)
        await catalog.remove(cid)
        await ctx.state.delete(scope_of(CONVERSATION, cid), BRANCH_KEY)
        await ctx.state.delete(OWNERS, cid)
        raise
    ctx.logger.info("conversation imported", extra={"conversationId": cid, "messages": len(messages)})
    # Deleted again already (a DELETE at this very instant): it was imported all the same.
    return await catalog.get(cid) or dataclasses.replace(record, conversation_id=cid)


async def _take(ctx: Context, catalog: Catalog, cid: str, record: Conversation, texts: dict[str, str],
                principal: Principal | None) -> bool:
    """Make `cid` this import's, if nobody uses it: owned by the caller, and its record written.

    A conversation in use is left alone before anything is claimed (claiming first would make an
    unowned conversation, one written while the server ran without keys, the importer's)."""
    if await ctx.streams.conversation.get_group(cid) or await catalog.get(cid) is not None:
        return False
    if not await claim(ctx.state, cid, principal):
        return False  # another key's
    return await catalog.restore(
        Conversation(cid, record.title, record.created_at, record.updated_at, record.owner), texts)
