"""GET /api/chat/{id}/stream: where `useChat` reconnects (resume) after a reload or a dropped stream.

204 when the conversation has no reply streaming or queued (the only answer that tells the
transport there is nothing to resume); else that reply as a UI message stream from its first
character to its end (or, for `ai` 6+, to the approvals it waits for), whichever instance writes it,
in the dialect the header `X-AI-SDK-Version` asks for.
"""

from __future__ import annotations

from streamchat.conversations.messages import FINISHED
from streamchat.conversations.ownership import require_owner
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody, HttpError
from streamchat.protocols.ui_message_stream import HEADERS, ui_message_stream
from streamchat.protocols.ui_tool_parts import dialect_of
from streamchat.settings import Settings

config = ApiConfig(
    name="AiSdkResume",
    method="GET",
    path="/api/chat/{id}/stream",
    responses={200: None, 204: None, 404: ErrorBody, 422: ErrorBody},
    text_responses={200: "text/event-stream"},
    description="Resume for the Vercel AI SDK: the reply still streaming (or queued), from its beginning, as a UI "
                "message stream; 204 when there is none.",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    cid = req.path_params["id"]
    dialect = dialect_of(req.headers)
    try:
        await require_owner(ctx, cid, req.principal)
    except HttpError:
        raise HttpError(404, "not_found", f"id {cid!r}: another API key's chat") from None
    items = await ctx.streams.conversation.get_group(cid)
    running = next((item for item in items if item.data.sender == "assistant" and item.data.status not in FINISHED),
                   None)
    if running is None:
        return ApiResponse(204, None)
    return ApiResponse(200, ui_message_stream(ctx, cid, running.id, ctx.service(Settings).sse_ping_seconds, dialect),
                       headers=HEADERS, media_type="text/event-stream")
