"""GET /v1/responses/{id}: a response as it stands, or (`stream=true`) its events, resumed exactly
after event `starting_after`. Any reply is a response, whichever protocol asked for it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from streamchat.chat.messages import ConversationMessage
from streamchat.chat.ownership import owns
from streamchat.chat.reply_index import ReplyRecord, locate
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, Item, Principal
from streamchat.protocols.openai_errors import OpenAiError, not_found
from streamchat.protocols.openai_responses import HEADERS, ResponseObject, response_events, response_object
from streamchat.settings import get_settings


class RetrieveQuery(BaseModel):
    stream: bool = Field(default=False, description="Answer the response's events (SSE) instead of the object.")
    starting_after: int = Field(default=-1, ge=-1, description="With stream: only the events after this "
                                "sequence_number (exact resume).")


config = ApiConfig(
    name="OpenAiRetrieveResponse",
    method="GET",
    path="/v1/responses/{id}",
    query=RetrieveQuery,
    responses={200: ResponseObject, 404: OpenAiError},
    text_responses={200: "text/event-stream"},
    description="OpenAI Responses API: retrieve a response, or stream its events from `starting_after`. Events are "
                "kept as long as the conversation is.",
)


async def find_response(ctx: Context, response_id: str,
                        principal: Principal | None) -> tuple[ReplyRecord, Item[ConversationMessage]]:
    """The reply a response id names, if the caller may see it; else 404 in OpenAI's shape."""
    record = await locate(ctx.state, response_id)
    if record is not None and await owns(ctx.state, record.conversation_id, principal):
        reply = await ctx.streams.conversation.get(record.conversation_id, response_id)
        if reply is not None:
            return record, reply
    raise not_found("id", response_id, "response")


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    response_id = req.path_params["id"]
    query: RetrieveQuery = req.query
    record, reply = await find_response(ctx, response_id, req.principal)
    cid = record.conversation_id
    if query.stream:
        return ApiResponse(200, response_events(ctx, cid, response_id, record.details, reply.data, query.starting_after,
                                                get_settings().sse_ping_seconds),
                           headers=HEADERS, media_type="text/event-stream")
    return ApiResponse(200, response_object(response_id, cid, record.details, reply.data))
