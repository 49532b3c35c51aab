"""GET /v1/responses/{id}: a response as it stands, or (`stream=true`) its events, resumed exactly
after event `starting_after`. Any reply is a response, whichever protocol asked for it; so is each
stretch of it after a round of approval requests (`<reply>.a<round>`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context
from streamchat.protocols.openai_errors import OpenAiError
from streamchat.protocols.openai_responses import (
    HEADERS,
    ResponseObject,
    current_response,
    find_response,
    response_events,
)
from streamchat.settings import Settings


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


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    query: RetrieveQuery = req.query
    target = await find_response(ctx, req.path_params["id"], req.principal)
    if query.stream:
        return ApiResponse(200, response_events(ctx, target, query.starting_after,
                                                ctx.service(Settings).sse_ping_seconds),
                           headers=HEADERS, media_type="text/event-stream")
    return ApiResponse(200, await current_response(ctx, target))
