"""DELETE /api/conversations/{conversationId}: a conversation and everything of it, gone.

A reply still running or queued is stopped first (its provider request closes); then every item
is deleted, so each watcher gets a delete per item and nothing after; then the catalog's record
and search text, what is kept beside its replies, and who owned it. The id is free afterwards:
a later message may start afresh.
"""

from __future__ import annotations

from streamchat.catalog import current_catalog
from streamchat.chat import answering, reply_index, reply_journal
from streamchat.chat.messages import FINISHED
from streamchat.chat.ownership import OWNERS, require_owner
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody, HttpError
from streamchat.steps.stop_message_step import stop_reply

config = ApiConfig(
    name="DeleteConversation",
    method="DELETE",
    path="/api/conversations/{conversationId}",
    writes=["conversation"],
    responses={204: None, 404: ErrorBody},
    description="Delete a conversation: stop its running reply, remove every message, its record and its "
                "search text (204); watchers get a delete per message.",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    cid = req.path_params["conversationId"]
    await require_owner(ctx, cid, req.principal)
    stream, catalog = ctx.streams.conversation, current_catalog()
    items = await stream.get_group(cid)
    if not items and await catalog.get(cid) is None:
        raise HttpError(404, "not_found", f"conversationId {cid!r}: no such conversation")
    running = [item for item in items if item.data.sender == "assistant" and item.data.status not in FINISHED]
    for reply in running:
        await stop_reply(ctx, cid, reply)
    deleted = await stream.delete_group(cid)
    await catalog.remove(cid)
    for reply in running:
        await answering.free(ctx, cid, reply.id)
    replies = [item.id for item in deleted if item.data.sender == "assistant"]
    await reply_index.forget(ctx.state, replies)
    await reply_journal.forget(ctx.state, replies)
    await ctx.state.delete(OWNERS, cid)
    ctx.logger.info("conversation deleted", extra={"conversationId": cid, "messages": len(deleted)})
    return ApiResponse(204, None)
