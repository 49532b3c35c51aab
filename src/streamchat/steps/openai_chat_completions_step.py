"""POST /v1/chat/completions: for clients that send the whole history each time (editors, chat UIs).

Each call is its own conversation, stored whole (listed, searchable, watchable like any other;
its id is in the `x-streamchat-conversation-id` header). `stream` answers chunks; otherwise the
answer waits for the reply's end. `model`, `temperature` and the token limit become the new
conversation's settings; the other sampling parameters are accepted and not applied. Function
`tools` are the client's own, offered for that reply: the model's calls of them end the completion
(`tool_calls`), and a request whose messages end with `tool` messages gives their outputs and
continues that reply (protocols/chat_completions_results.py). Other tool types, legacy `functions`,
several choices and non-text output are refused by name.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streamchat.conversations.chat_settings import ChatSettings
from streamchat.conversations.events import REPLY_ASKED, ChatMessageEvent
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, Emit, HttpError
from streamchat.llm.model_set import ModelSet
from streamchat.protocols.chat_completions_results import give_tool_outputs
from streamchat.protocols.openai_chat_completions import (
    HEADERS,
    ChatCompletion,
    CompletionStretch,
    completion_chunks,
    completion_object,
    settled_stretch,
)
from streamchat.protocols.openai_errors import OpenAiError
from streamchat.protocols.openai_input import InputMessage, as_turns
from streamchat.protocols.openai_models import check_model
from streamchat.protocols.openai_tools import check_tool_choice, completions_tools
from streamchat.settings import Settings
from streamchat.tools import ToolSet

CONVERSATION_HEADER = "x-streamchat-conversation-id"


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="A configured model (GET /v1/models).")
    messages: list[InputMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: Literal[1] = Field(default=1, description="One choice only.")
    response_format: dict[str, Any] | None = Field(default=None, description="Only {\"type\": \"text\"}.")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, description="Deprecated by OpenAI for "
                                   "max_completion_tokens; either caps the reply (finish_reason `length`).")
    max_completion_tokens: int | None = Field(default=None, ge=1)
    # Accepted so that clients which always send them work; not applied.
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    tools: list[Any] | None = Field(default=None, description="Function tools the client runs, offered for this "
                                    "reply: `{\"type\": \"function\", \"function\": {\"name\", "
                                    "\"description\"?, \"parameters\"?, \"strict\"?}}`.")
    tool_choice: Any = Field(default=None, description="\"auto\" only.")
    parallel_tool_calls: bool | None = Field(default=None, description="Accepted and not applied.")

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type") != "text":
            raise ValueError("only {\"type\": \"text\"} is supported")
        return value


config = ApiConfig(
    name="OpenAiChatCompletions",
    rate_limit="messages",
    method="POST",
    path="/v1/chat/completions",
    body=ChatCompletionsRequest,
    emits=[Emit(REPLY_ASKED, ChatMessageEvent)],
    writes=["conversation"],
    responses={200: ChatCompletion, 400: OpenAiError, 404: OpenAiError, 409: OpenAiError, 502: OpenAiError},
    text_responses={200: "text/event-stream"},
    description="OpenAI Chat Completions: answer the last user message of `messages`, as a new conversation "
                "(its id in the x-streamchat-conversation-id header), or, when `messages` end with `tool` messages, "
                "give those outputs to the calls a completion handed over and continue that reply. Function `tools` "
                "are the client's. Errors in OpenAI's shape.",
)


async def handler(req: ApiRequest[ChatCompletionsRequest], ctx: Context) -> ApiResponse:
    body = req.body
    model = check_model(ctx.service(ModelSet), body.model)
    check_tool_choice(body.tool_choice)
    tools = completions_tools(ctx.service(ToolSet), body.tools)
    if body.messages[-1].role == "tool":  # the outputs of the calls a completion handed over
        stretch = await give_tool_outputs(ctx, req.principal, body.messages, model)
    else:
        asked = as_turns(body.messages, "messages")
        limit = body.max_completion_tokens or body.max_tokens
        change = ChatSettings.model_validate({name: value for name, value in (
            ("model", model), ("temperature", body.temperature), ("maxTokens", limit)) if value is not None})
        sent = await Conversations(ctx).send(req.principal, asked.message, earlier=asked.earlier,
                                             instructions=asked.instructions,
                                             details={"protocol": "chat.completions"}, change=change,
                                             client_tools=tools.client_tools)
        stretch = CompletionStretch(sent.conversation_id, sent.assistant_message_id)
    created = int(time.time())
    headers = {CONVERSATION_HEADER: stretch.conversation_id}
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        return ApiResponse(200, completion_chunks(ctx, stretch, created, model, include_usage,
                                                  ctx.service(Settings).sse_ping_seconds),
                           headers={**HEADERS, **headers}, media_type="text/event-stream")
    settled = await settled_stretch(ctx, stretch)
    end = settled.end
    if not settled.calls and (end is None or end.message is None or end.message.status == "error"):
        reason = "the server is stopping" if end is None else end.reason if end.message is None else end.message.error
        raise HttpError(502, "reply_failed", f"the model could not answer: {reason}", headers=headers)
    return ApiResponse(200, completion_object(stretch, created, model, settled), headers=headers)
