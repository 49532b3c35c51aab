"""POST /chatkit: OpenAI ChatKit's server protocol (the requests of `openai-chatkit`'s `chatkit.types`).

A thread is a conversation. `threads.create` and `threads.add_user_message` send a message,
`threads.retry_after_item` regenerates a reply (a new sibling: the old one stays on its branch),
`threads.add_client_tool_output` gives a client tool's result; each answers the reply as ChatKit's
event stream (protocols/chatkit_stream.py), which the client going away never stops. The other
requests answer JSON: the thread, its items, the list of threads, a rename, a delete, feedback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from streamchat.conversations.client_results import ClientResult, give_result
from streamchat.conversations.events import REPLY_ASKED, TOOL_CALL, ChatMessageEvent, ToolCallEvent
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, Emit, Principal
from streamchat.llm.model_set import ModelSet
from streamchat.protocols import chatkit_threads as threads
from streamchat.protocols.chatkit_errors import ChatKitError
from streamchat.protocols.chatkit_requests import (
    AddUserMessageParams,
    ChatKitBody,
    ClientToolOutputParams,
    CreateParams,
    FeedbackParams,
    ListItemsParams,
    ListThreadsParams,
    RetryParams,
    ThreadParams,
    UpdateParams,
    parse_params,
    settings_in,
)
from streamchat.protocols.chatkit_stream import HEADERS, run_events
from streamchat.settings import Settings

config = ApiConfig(
    name="ChatKit",
    rate_limit="messages",
    method="POST",
    path="/chatkit",
    body=ChatKitBody,
    emits=[Emit(REPLY_ASKED, ChatMessageEvent), Emit(TOOL_CALL, ToolCallEvent)],
    writes=["conversation"],
    responses={200: None, 400: ChatKitError, 404: ChatKitError, 409: ChatKitError, 422: ChatKitError,
               429: ChatKitError},
    text_responses={200: "text/event-stream"},
    description="OpenAI ChatKit's server protocol: `threads.create`, `threads.add_user_message`, "
                "`threads.retry_after_item` and `threads.add_client_tool_output` answer ChatKit's event stream "
                "(SSE, each event with an `id:` to resume from: GET /chatkit/threads/{threadId}/events); "
                "`threads.get_by_id`, `threads.list`, `items.list`, `threads.update`, `threads.delete` and "
                "`items.feedback` answer JSON. Errors are ChatKit's `error` event object.",
)


async def handler(req: ApiRequest[ChatKitBody], ctx: Context) -> ApiResponse:
    params = parse_params(req.body)
    principal = req.principal
    if isinstance(params, CreateParams | AddUserMessageParams | RetryParams | ClientToolOutputParams):
        return await _streamed(req.body, params, principal, ctx)
    if isinstance(params, ListThreadsParams):
        return ApiResponse(200, await threads.list_threads(ctx, principal, params))
    if isinstance(params, ListItemsParams):
        return ApiResponse(200, await threads.list_items(ctx, principal, params))
    if isinstance(params, UpdateParams):
        return ApiResponse(200, await threads.rename(ctx, principal, params.thread_id, params.title))
    if isinstance(params, FeedbackParams):
        await threads.give_feedback(ctx, principal, params)
        return ApiResponse(200, {})
    assert isinstance(params, ThreadParams)
    if req.body.type == "threads.delete":
        await Conversations(ctx).delete(principal, params.thread_id)
        return ApiResponse(200, {})
    return ApiResponse(200, await threads.get_thread(ctx, principal, params.thread_id))


Streamed = CreateParams | AddUserMessageParams | RetryParams | ClientToolOutputParams


async def _streamed(body: ChatKitBody, params: Streamed, principal: Principal | None, ctx: Context) -> ApiResponse:
    conversations = Conversations(ctx)
    models = ctx.service(ModelSet)
    after_call: str | None = None
    if isinstance(params, CreateParams | AddUserMessageParams):
        thread_id = params.thread_id if isinstance(params, AddUserMessageParams) else None
        if thread_id is not None:
            await conversations.read(principal, thread_id)  # a thread that exists, and the caller's
        change = settings_in(body, models, params.input.inference_options.model)
        sent = await conversations.send(principal, params.input.text(), thread_id, change=change)
        cid, reply_id = sent.conversation_id, sent.assistant_message_id
    elif isinstance(params, RetryParams):
        cid = params.thread_id
        view = await conversations.view(principal, cid)
        retried = threads.reply_to_retry(view, params.item_id)
        reply_id = (await conversations.regenerate(principal, cid, retried)).assistantMessageId
    else:
        cid = params.thread_id
        reply_id, after_call = threads.waiting_client_call(await conversations.view(principal, cid))
        await give_result(ctx, principal, cid, after_call, ClientResult(output=params.result))
    return ApiResponse(200, _events(ctx, cid, reply_id, after_call), headers=HEADERS, media_type="text/event-stream")


def _events(ctx: Context, cid: str, reply_id: str, after_call: str | None) -> AsyncIterator[bytes]:
    return run_events(ctx, cid, reply_id, ctx.service(Settings).sse_ping_seconds, after_call=after_call)
