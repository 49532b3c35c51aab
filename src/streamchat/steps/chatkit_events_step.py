"""GET /chatkit/threads/{threadId}/events: a ChatKit stream resumed (streamchat's extension of the
protocol, whose own server cannot: a refresh there loses the reply in progress).

With `Last-Event-ID` (the header, or `?lastEventId=`), the events of that event's stream after it,
exactly, while its reply goes on or after it ended, on any instance; without, the stream of the
thread's latest reply from its beginning (204 when the thread has no reply). Either ends where the
reply ends or waits for a client tool's result.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context
from streamchat.protocols.chatkit_errors import ChatKitError
from streamchat.protocols.chatkit_stream import HEADERS, reply_of_event, run_events
from streamchat.settings import Settings


class ResumeQuery(BaseModel):
    lastEventId: str | None = Field(default=None, max_length=60, description="The id of the last event the "
                                    "client got (as the `Last-Event-ID` header, which wins when both are given).")


config = ApiConfig(
    name="ChatKitResume",
    method="GET",
    path="/chatkit/threads/{threadId}/events",
    query=ResumeQuery,
    responses={200: None, 204: None, 404: ChatKitError, 422: ChatKitError},
    text_responses={200: "text/event-stream"},
    description="Resume a ChatKit stream: with `Last-Event-ID`, exactly the events of its stream after it; "
                "without, the thread's latest reply from its beginning (204 when there is none).",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    cid = req.path_params["threadId"]
    view = await Conversations(ctx).view(req.principal, cid)
    last = req.headers.get("last-event-id") or req.query.lastEventId
    after = -1
    if last:
        reply_id, after = await reply_of_event(ctx, cid, last)
    else:
        branch = [] if view.active is None else view.tree.path_to(view.active)
        by_id = {item.id: item for item in view.items}
        replies = [message_id for message_id in branch if by_id[message_id].data.sender == "assistant"]
        if not replies:
            return ApiResponse(204, None)
        reply_id = replies[-1]
    return ApiResponse(200, run_events(ctx, cid, reply_id, ctx.service(Settings).sse_ping_seconds, after=after),
                       headers=HEADERS, media_type="text/event-stream")
