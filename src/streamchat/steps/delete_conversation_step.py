"""DELETE /api/conversations/{conversationId}: a conversation and everything of it, gone.

A reply still running or queued is stopped first (its provider request closes); then every item
is deleted, so each watcher gets a delete per item and nothing after; then every record kept
beside them (conversations/deleting.py, which also keeps a message sent at that instant from
outliving the delete). The id is free afterwards: a later message may start afresh.
"""

from __future__ import annotations

from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody

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
    await Conversations(ctx).delete(req.principal, req.path_params["conversationId"])
    return ApiResponse(204, None)
