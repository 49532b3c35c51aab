"""DELETE /api/conversations/{conversationId}: a conversation and everything of it, gone.

A reply still running or queued is stopped first (its provider request closes); then every item
is deleted, so each watcher gets a delete per item and nothing after; then the catalog's record
and search text, what is kept beside its replies, and who owned it (chat/deleting.py, which also
keeps a message sent at that instant from outliving the delete). The id is free afterwards: a
later message may start afresh.
"""

from __future__ import annotations

from streamchat.catalog import current_catalog
from streamchat.chat.deleting import delete_conversation
from streamchat.chat.ownership import require_owner
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody, HttpError

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
    if not await ctx.streams.conversation.get_group(cid) and await current_catalog().get(cid) is None:
        raise HttpError(404, "not_found", f"conversationId {cid!r}: no such conversation")
    count = await delete_conversation(ctx, cid)
    ctx.logger.info("conversation deleted", extra={"conversationId": cid, "messages": count})
    return ApiResponse(204, None)
