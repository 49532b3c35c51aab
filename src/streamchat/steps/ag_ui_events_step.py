"""GET /ag-ui/{threadId}/runs/{runId}/events: a run's events again, after the last one a client saw
(`Last-Event-ID`, or `?lastEventId=`), while the run goes on or after it ended, on any instance: the
resume AG-UI's own HTTP transport lacks. Without it, the run from RUN_STARTED (what an HttpAgent's
`connect()` can read to reattach to a run)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody
from streamchat.protocols.ag_ui_runs import find_run
from streamchat.protocols.ag_ui_stream import HEADERS, run_events
from streamchat.settings import Settings


class EventsQuery(BaseModel):
    lastEventId: str | None = Field(default=None, description="The id of the last event seen (the "
                                    "`Last-Event-ID` header wins when both are sent).")


config = ApiConfig(
    name="AgUiRunEvents",
    method="GET",
    path="/ag-ui/{threadId}/runs/{runId}/events",
    query=EventsQuery,
    responses={200: None, 404: ErrorBody, 422: ErrorBody},
    text_responses={200: "text/event-stream"},
    description="AG-UI: a run's events (SSE) after `Last-Event-ID` (or from the start), exactly those that "
                "followed it in the run's first stream.",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    query: EventsQuery = req.query
    run = await find_run(ctx, req.path_params["threadId"], req.path_params["runId"], req.principal)
    last = req.headers.get("last-event-id")
    field = "Last-Event-ID"
    if last is None and query.lastEventId is not None:
        last, field = query.lastEventId, "lastEventId"
    after = -1 if last is None else run.number_of(last, field)
    return ApiResponse(200, run_events(ctx, run, after, ctx.service(Settings).sse_ping_seconds), headers=HEADERS,
                       media_type="text/event-stream")
