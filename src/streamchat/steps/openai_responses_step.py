"""POST /v1/responses: the OpenAI Responses API's create, for the subset a chat needs.

The response is a reply in a conversation: `previous_response_id` continues the conversation that
response belongs to, else a new one starts. Function `tools` are the client's own, offered for that
reply (openai_tools.py); the model's calls of them are `function_call` output items that end the
response. An `input` of `mcp_approval_response` and `function_call_output` items instead answers what
the previous response waits for (its approval requests, its function calls), and the response is the
reply going on (responses_answers.py). Function outputs may also come without `previous_response_id`
from a client that sends its whole history each time: their `call_id` (the call's item id) finds the
reply. `stream` answers the numbered events; `background` answers at once (status `queued`) and the
reply runs on; neither waits for the response's end, which a plain create does (the reply's end, or
what waits for the client). The client going away never stops the reply: POST
/v1/responses/{id}/cancel does.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streamchat.conversations.chat_settings import ChatSettings
from streamchat.conversations.client_results import find_call
from streamchat.conversations.events import REPLY_ASKED, TOOL_CALL, ChatMessageEvent, ToolCallEvent
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, Emit, HttpError, Principal
from streamchat.llm.model_set import ModelSet
from streamchat.protocols.openai_errors import OpenAiError, invalid, not_found
from streamchat.protocols.openai_input import (
    AnyItem,
    ApprovalAnswer,
    FunctionOutput,
    InputItem,
    InputMessage,
    answers_in,
    as_turns,
    checked_items,
    outputs_in,
)
from streamchat.protocols.openai_models import check_model
from streamchat.protocols.openai_responses import (
    HEADERS,
    ResponseObject,
    current_response,
    find_response,
    response_events,
    settled_response,
)
from streamchat.protocols.openai_tools import RequestTools, check_tool_choice, responses_tools
from streamchat.protocols.responses_answers import answer_requests
from streamchat.protocols.responses_segments import ResponseTarget, Segment, remember_continuation
from streamchat.settings import Settings
from streamchat.tools import ToolSet

#: OpenAI's limits on `metadata`.
METADATA_KEYS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512


class ResponsesRequest(BaseModel):
    # Unknown parameters are refused by name (400), so a client never believes one was applied.
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, description="A configured model (GET /v1/models); omitted: the "
                              "conversation's. Given, it becomes the conversation's model from this reply on.")
    temperature: float | None = Field(default=None, ge=0, le=2, description="The conversation's temperature from "
                                      "this reply on.")
    max_output_tokens: int | None = Field(default=None, ge=1, description="The conversation's token limit per reply "
                                          "from this reply on (a reply cut by it is `incomplete`).")
    input: str | list[InputItem] = Field(description="The user's message, or messages (system and developer ones "
                                         "become instructions; the last must be the user's); or "
                                         "`mcp_approval_response` and `function_call_output` items answering "
                                         "what the previous response waits for.")
    tools: list[Any] | None = Field(default=None, description="Function tools the client runs, offered for this "
                                    "reply: `{\"type\": \"function\", \"name\", \"description\"?, "
                                    "\"parameters\"?, \"strict\"?}`; other types are refused.")
    tool_choice: Any = Field(default=None, description="\"auto\" only.")
    parallel_tool_calls: bool | None = Field(default=None, description="Accepted and not applied.")
    instructions: str | None = Field(default=None, description="The system prompt for this response alone.")
    previous_response_id: str | None = Field(default=None, description="Continue that response's conversation.")
    stream: bool = False
    background: bool = Field(default=False, description="Answer at once (status queued); the reply runs on.")
    metadata: dict[str, str] | None = None
    store: bool = Field(default=True, description="Accepted for compatibility: every response is stored.")
    user: str | None = Field(default=None, description="Accepted and ignored.")

    @field_validator("input", mode="before")
    @classmethod
    def _each_item_named(cls, value: Any) -> Any:
        return checked_items(value, "input")

    @field_validator("metadata")
    @classmethod
    def _openai_metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        if len(value) > METADATA_KEYS:
            raise ValueError(f"at most {METADATA_KEYS} keys")
        for key, text in value.items():
            if len(key) > METADATA_KEY_CHARS or len(text) > METADATA_VALUE_CHARS:
                raise ValueError(f"keys are at most {METADATA_KEY_CHARS} characters, values {METADATA_VALUE_CHARS}")
        return value

    @field_validator("store")
    @classmethod
    def _always_stored(cls, value: bool) -> bool:
        if not value:
            raise ValueError("streamchat stores every response (it is a conversation); send true or leave it out")
        return value


config = ApiConfig(
    name="OpenAiCreateResponse",
    rate_limit="messages",
    method="POST",
    path="/v1/responses",
    body=ResponsesRequest,
    emits=[Emit(REPLY_ASKED, ChatMessageEvent), Emit(TOOL_CALL, ToolCallEvent)],
    writes=["conversation"],
    responses={200: ResponseObject, 400: OpenAiError, 404: OpenAiError, 409: OpenAiError},
    text_responses={200: "text/event-stream"},
    description="OpenAI Responses API: create a response (a reply in a conversation). Errors in OpenAI's shape.",
)


async def handler(req: ApiRequest[ResponsesRequest], ctx: Context) -> ApiResponse:
    body = req.body
    model = check_model(ctx.service(ModelSet), body.model)
    check_tool_choice(body.tool_choice)
    tools = responses_tools(ctx.service(ToolSet), body.tools)
    items: list[AnyItem] = ([InputMessage(role="user", content=body.input)] if isinstance(body.input, str)
                            else body.input)
    answers, outputs = answers_in(items), outputs_in(items)
    previous = None if body.previous_response_id is None else await find_response(
        ctx, body.previous_response_id, req.principal, param="previous_response_id")
    if answers or outputs:
        target = await _continued(ctx, req.principal, body, previous, items, answers, outputs)
    else:
        target = await _sent(ctx, req.principal, body, model, previous,
                             [item for item in items if isinstance(item, InputMessage)], tools)
    if body.stream:
        return ApiResponse(200, response_events(ctx, target, -1, ctx.service(Settings).sse_ping_seconds),
                           headers=HEADERS, media_type="text/event-stream")
    if body.background:
        return ApiResponse(200, await current_response(ctx, target))
    return ApiResponse(200, await settled_response(ctx, target))


def _details(body: ResponsesRequest, model: str, instructions: str | None, tools: Any) -> dict[str, Any]:
    return {"protocol": "responses", "createdAt": int(time.time()), "model": model, "background": body.background,
            "instructions": instructions, "metadata": body.metadata or {},
            "previousResponseId": body.previous_response_id, "tools": tools or []}


async def _sent(ctx: Context, principal: Principal | None, body: ResponsesRequest, model: str,
                previous: ResponseTarget | None, messages: list[InputMessage], tools: RequestTools) -> ResponseTarget:
    """A new reply, to the input's last user message."""
    asked = as_turns(messages, "input", body.instructions)
    details = _details(body, model, asked.instructions, tools.given)
    change = ChatSettings.model_validate({name: value for name, value in (
        ("model", body.model), ("temperature", body.temperature), ("maxTokens", body.max_output_tokens))
        if value is not None})
    sent = await Conversations(ctx).send(principal, asked.message, None if previous is None else
                                         previous.conversation_id, earlier=asked.earlier,
                                         instructions=asked.instructions, details=details, change=change,
                                         client_tools=tools.client_tools)
    cid, reply_id = sent.conversation_id, sent.assistant_message_id
    reply = await ctx.streams.conversation.get(cid, reply_id)
    if reply is None:
        raise HttpError(404, "not_found", f"response {reply_id!r}: its conversation was deleted as it was created")
    return ResponseTarget(cid, Segment(reply_id), details, reply)


async def _continued(ctx: Context, principal: Principal | None, body: ResponsesRequest,
                     previous: ResponseTarget | None, items: list[AnyItem],
                     answers: list[tuple[int, ApprovalAnswer]],
                     outputs: list[tuple[int, FunctionOutput]]) -> ResponseTarget:
    """The previous response's reply going on, once what it waits for is answered. Without
    `previous_response_id`, function outputs find their reply by their `call_id`: the input is then
    the whole history a client keeps (messages and function calls the server holds already, read past)
    and the request its whole request again (instructions and sampling are the reply's own)."""
    stateless = previous is None
    if previous is None:
        if answers or not outputs:
            raise invalid("previous_response_id", "required with mcp_approval_response input items: the response "
                          "whose approval requests they answer")
        index, output = outputs[0]
        found = await find_call(ctx, principal, output.call_id)
        if found is None or found[1].data.parentId is None:
            raise not_found(f"input[{index}].call_id", output.call_id, "function call")
        previous = await find_response(ctx, found[1].data.parentId, principal, param=f"input[{index}].call_id")
    first = min(index for index, _ in [*answers, *outputs])
    for index, item in enumerate(items):
        if isinstance(item, InputMessage) and (index > first or not stateless):
            raise invalid("input", f"input[{index}]: a message with mcp_approval_response or function_call_output "
                          "items: they continue a reply, send them without messages (or, without "
                          "previous_response_id, after the history)")
    reply = previous.reply.data
    for name, value in (("instructions", body.instructions), ("temperature", body.temperature),
                        ("max_output_tokens", body.max_output_tokens)):
        if value is not None and not stateless:
            raise invalid(name, "not when answering what a response waits for: the reply goes on as it began")
    if body.model is not None and reply.model is not None and body.model != reply.model:
        raise invalid("model", f"the reply goes on with the model it began with, {reply.model!r}")
    segment = await answer_requests(ctx, principal, previous, answers, outputs)
    details = _details(body, reply.model or previous.details.get("model") or "", previous.details.get("instructions"),
                       previous.details.get("tools"))
    await remember_continuation(ctx, previous.conversation_id, segment, details)
    latest = await ctx.streams.conversation.get(previous.conversation_id, segment.reply_id) or previous.reply
    return ResponseTarget(previous.conversation_id, segment, details, latest)
