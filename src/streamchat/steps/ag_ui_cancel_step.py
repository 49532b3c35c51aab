"""POST /ag-ui/{threadId}/runs/{runId}/cancel: stop the reply a run shows, keeping its text (the same
stop as POST /api/conversations/{cid}/messages/{mid}/stop, wherever the reply runs). The run's stream
ends with RUN_FINISHED, outcome `cancelled`."""

from __future__ import annotations

from pydantic import BaseModel

from streamchat.conversations.messages import FINISHED
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody, HttpError
from streamchat.protocols.ag_ui_runs import find_run


class CancelledRun(BaseModel):
    threadId: str
    runId: str
    messageId: str
    status: str


config = ApiConfig(
    name="AgUiCancelRun",
    method="POST",
    path="/ag-ui/{threadId}/runs/{runId}/cancel",
    writes=["conversation"],
    responses={202: CancelledRun, 404: ErrorBody, 409: ErrorBody},
    description="AG-UI: stop the reply a run shows (202, its text so far kept); 409 when it has already ended.",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    run = await find_run(ctx, req.path_params["threadId"], req.path_params["runId"], req.principal)
    stream = ctx.streams.conversation
    reply = await stream.get(run.thread_id, run.reply_id)
    if reply is None:
        raise HttpError(404, "not_found", f"runId {run.run_id!r}: its reply is gone")
    if reply.data.status in FINISHED:
        raise HttpError(409, "conflict", f"runId {run.run_id!r}: its reply is already {reply.data.status}, "
                        "nothing to cancel")
    await Conversations(ctx).stop_reply(run.thread_id, reply)
    ctx.logger.info("run cancelled", extra={"conversationId": run.thread_id, "messageId": reply.id})
    latest = await stream.get(run.thread_id, reply.id) or reply
    return ApiResponse(202, {"threadId": run.thread_id, "runId": run.run_id, "messageId": reply.id,
                             "status": latest.data.status})
