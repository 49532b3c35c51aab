"""POST /ag-ui: an AG-UI run (what @ag-ui/client's HttpAgent and CopilotKit send), answered as the run's
events (SSE). `threadId` is the conversation: the run is the reply to the new user message of
`messages` (offered the run's `tools`, which run in the client), or the reply going on once the
previous run's interrupts (`resume`) or front-end tool calls (`tool` messages) are answered.
The client going away never stops the reply (POST /ag-ui/{threadId}/runs/{runId}/cancel does), and
GET /ag-ui/{threadId}/runs/{runId}/events resumes the run after the last event id a client saw.
"""

from __future__ import annotations

from streamchat.conversations.events import REPLY_ASKED, TOOL_CALL, ChatMessageEvent, ToolCallEvent
from streamchat.conversations.ownership import owner
from streamchat.conversations.service import Conversations, no_such_conversation
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, Emit, ErrorBody, HttpError, Principal
from streamchat.protocols.ag_ui_answers import go_on
from streamchat.protocols.ag_ui_input import AgUiRunInput, Asked, NewTurn, what_is_asked
from streamchat.protocols.ag_ui_runs import AgUiRun, keep, release, reserve
from streamchat.protocols.ag_ui_stream import HEADERS, run_events
from streamchat.settings import Settings

config = ApiConfig(
    name="AgUiRun",
    rate_limit="messages",
    method="POST",
    path="/ag-ui",
    body=AgUiRunInput,
    emits=[Emit(REPLY_ASKED, ChatMessageEvent), Emit(TOOL_CALL, ToolCallEvent)],
    writes=["conversation"],
    responses={200: None, 404: ErrorBody, 409: ErrorBody, 422: ErrorBody, 429: ErrorBody},
    text_responses={200: "text/event-stream"},
    description="AG-UI: run the agent on a thread (a conversation): the reply to the last user message (`tools` "
                "run in the client), or the reply going on once the previous run's approval interrupts (`resume`) "
                "or front-end tool calls (`tool` messages) are answered. Answers the run's AG-UI "
                "events as SSE, each with an `id:` that GET /ag-ui/{threadId}/runs/{runId}/events resumes after.",
)


async def handler(req: ApiRequest[AgUiRunInput], ctx: Context) -> ApiResponse:
    body = req.body
    thread_id = body.thread_id
    # Another key's thread is a 404 before anything is read; an unused id is taken by the send itself,
    # so a refused request takes nothing.
    if req.principal is not None and await owner(ctx.state, thread_id) not in (None, req.principal.key_id):
        raise no_such_conversation(thread_id)
    stored = {item.id for item in await ctx.streams.conversation.get_group(thread_id)}
    asked = what_is_asked(body, stored)
    await reserve(ctx, thread_id, body.run_id)
    try:
        run = await _started(ctx, req.principal, body, asked)
    except BaseException:
        await release(ctx, thread_id, body.run_id)
        raise
    await keep(ctx, run)
    return ApiResponse(200, run_events(ctx, run, -1, ctx.service(Settings).sse_ping_seconds), headers=HEADERS,
                       media_type="text/event-stream")


async def _started(ctx: Context, principal: Principal | None, body: AgUiRunInput,
                   asked: Asked) -> AgUiRun:
    thread_id = body.thread_id
    if isinstance(asked, NewTurn):
        sent = await Conversations(ctx).send(principal, asked.text, thread_id, client_tools=asked.tools)
        reply = await ctx.streams.conversation.get(thread_id, sent.assistant_message_id)
        if reply is None:
            raise HttpError(404, "not_found", f"threadId {thread_id!r}: the thread was deleted as the run began")
        return AgUiRun(thread_id, body.run_id, reply.id, None, reply.seq, body.parent_run_id)
    resumed = await go_on(ctx, principal, thread_id, asked)
    return AgUiRun(thread_id, body.run_id, resumed.reply_id, resumed.round, resumed.last.seq, body.parent_run_id,
                   tuple(resumed.pending))
