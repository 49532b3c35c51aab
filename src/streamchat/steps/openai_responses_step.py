"""POST /v1/responses: the OpenAI Responses API's create, for the subset a chat needs.

The response is a reply in a conversation: `previous_response_id` continues the conversation that
response belongs to, else a new one starts. `stream` answers the numbered events; `background`
answers at once (status `queued`) and the reply runs on; neither waits for the reply's end. The
client going away never stops the reply: POST /v1/responses/{id}/cancel does.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streamchat.conversations.chat_settings import ChatSettings
from streamchat.conversations.events import REPLY_ASKED, ChatMessageEvent
from streamchat.conversations.ownership import owns
from streamchat.conversations.replies.index import locate
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, Emit, HttpError
from streamchat.llm.model_set import ModelSet
from streamchat.protocols.following import FollowedReply
from streamchat.protocols.openai_errors import OpenAiError, not_found
from streamchat.protocols.openai_input import InputMessage, as_turns
from streamchat.protocols.openai_models import check_model
from streamchat.protocols.openai_responses import HEADERS, ResponseObject, response_events, response_object
from streamchat.settings import Settings

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
    input: str | list[InputMessage] = Field(description="The user's message, or messages (system and developer "
                                            "ones become instructions; the last must be the user's).")
    instructions: str | None = Field(default=None, description="The system prompt for this response alone.")
    previous_response_id: str | None = Field(default=None, description="Continue that response's conversation.")
    stream: bool = False
    background: bool = Field(default=False, description="Answer at once (status queued); the reply runs on.")
    metadata: dict[str, str] | None = None
    store: bool = Field(default=True, description="Accepted for compatibility: every response is stored.")
    user: str | None = Field(default=None, description="Accepted and ignored.")

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
    emits=[Emit(REPLY_ASKED, ChatMessageEvent)],
    writes=["conversation"],
    responses={200: ResponseObject, 404: OpenAiError, 409: OpenAiError},
    text_responses={200: "text/event-stream"},
    description="OpenAI Responses API: create a response (a reply in a conversation). Errors in OpenAI's shape.",
)


async def handler(req: ApiRequest[ResponsesRequest], ctx: Context) -> ApiResponse:
    body = req.body
    model = check_model(ctx.service(ModelSet), body.model)
    messages = [InputMessage(role="user", content=body.input)] if isinstance(body.input, str) else body.input
    asked = as_turns(messages, "input", body.instructions)
    conversation_id = None
    if body.previous_response_id is not None:
        previous = await locate(ctx.state, body.previous_response_id)
        if previous is None or not await owns(ctx.state, previous.conversation_id, req.principal):
            raise not_found("previous_response_id", body.previous_response_id, "response")
        conversation_id = previous.conversation_id
    details: dict[str, Any] = {
        "protocol": "responses", "createdAt": int(time.time()), "model": model, "background": body.background,
        "instructions": asked.instructions, "metadata": body.metadata or {},
        "previousResponseId": body.previous_response_id,
    }
    change = ChatSettings.model_validate({name: value for name, value in (
        ("model", body.model), ("temperature", body.temperature), ("maxTokens", body.max_output_tokens))
        if value is not None})
    sent = await Conversations(ctx).send(req.principal, asked.message, conversation_id, earlier=asked.earlier,
                                         instructions=asked.instructions, details=details, change=change)
    cid, reply_id = sent.conversation_id, sent.assistant_message_id
    reply = await ctx.streams.conversation.get(cid, reply_id)
    if reply is None:
        raise HttpError(404, "not_found", f"response {reply_id!r}: its conversation was deleted as it was created")
    if body.stream:
        return ApiResponse(200, response_events(ctx, cid, reply_id, details, reply.data, -1,
                                                ctx.service(Settings).sse_ping_seconds),
                           headers=HEADERS, media_type="text/event-stream")
    if not body.background:
        await FollowedReply(ctx, cid, reply_id).wait()
        reply = await ctx.streams.conversation.get(cid, reply_id) or reply
    return ApiResponse(200, response_object(reply_id, cid, details, reply.data))
