"""POST /api/chat: the Vercel AI SDK's `useChat` sends a message (or asks again) and reads the reply.

The body is what `DefaultChatTransport` sends: the chat `id` (the conversation id), the chat's
`messages`, the `trigger` and, to regenerate one reply, its `messageId`; the transport's `body`
option may add the conversation's settings and `clientTools`, the tools this client runs itself
(tools without `execute`). The server holds the history, so only the last message is read
(protocols/ui_messages.py): a user message is sent; an assistant message answering approvals (`ai`
6+) or giving the outputs of client tools' calls gives those calls their answers, and the answer is
the rest of that reply. The answer is the reply as a UI message stream, in the dialect the header
`X-AI-SDK-Version` asks for (protocols/ui_message_stream.py); the client going away never stops
the reply.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from streamchat.conversations.chat_settings import FIELDS, ChatSettings
from streamchat.conversations.events import REPLY_ASKED, TOOL_CALL, ChatMessageEvent, ToolCallEvent
from streamchat.conversations.messages import ID_PATTERN, checked_message
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, Emit, ErrorBody, HttpError
from streamchat.protocols.ui_message_stream import HEADERS, ui_message_stream
from streamchat.protocols.ui_messages import UiMessage, continue_reply
from streamchat.protocols.ui_tool_parts import dialect_of
from streamchat.settings import Settings
from streamchat.tools import ToolSet
from streamchat.tools.client_tools import ClientTool, request_tools


class UiChatRequest(ChatSettings):
    # Fields a transport adds (its `body` option) are allowed and ignored, but for the conversation's
    # settings (model, systemPrompt, temperature, maxTokens), which change from this reply on.
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN, description="The chat id: the conversation id.")
    messages: list[UiMessage] = Field(default_factory=list, description="The chat's messages; only the last "
                                      "is read (the server holds the history): the user message to send, or the "
                                      "assistant message whose tool parts answer approvals (state "
                                      "`approval-responded`).")
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: str | None = Field(default=None, description="regenerate-message: the reply to answer again "
                                  "(or the user message it answered); absent: the last reply.")
    clientTools: list[ClientTool] | None = Field(
        default=None, max_length=128, description="Tools this client runs (tools without `execute`), offered to "
        "the model for this reply beside the conversation's; a call of one ends the stream at its "
        "`tool-input-available`, and the chat's next request carries its output.")

    @model_validator(mode="after")
    def _has_a_user_message(self) -> UiChatRequest:
        if self.trigger == "submit-message":
            if self.messages and self.messages[-1].continues_reply:
                return self
            if not self.messages or self.messages[-1].role != "user":
                raise ValueError("messages: the last message must be the user's message to send, or the "
                                 "assistant's answering approvals or giving tool outputs (tool parts in state "
                                 "approval-responded, output-available or output-error)")
            checked_message(self.messages[-1].text())
        return self


config = ApiConfig(
    name="AiSdkChat",
    rate_limit="messages",
    method="POST",
    path="/api/chat",
    body=UiChatRequest,
    emits=[Emit(REPLY_ASKED, ChatMessageEvent), Emit(TOOL_CALL, ToolCallEvent)],
    writes=["conversation"],
    responses={200: None, 404: ErrorBody, 409: ErrorBody, 422: ErrorBody, 429: ErrorBody},
    text_responses={200: "text/event-stream"},
    description="The Vercel AI SDK's chat endpoint (`DefaultChatTransport`): send the last user message, "
                "regenerate a reply, give the outputs of the calls of tools this client runs (`clientTools`), or "
                "(`ai` 6+) answer tool approvals; answers the reply as a UI message stream (SSE, "
                "`x-vercel-ai-ui-message-stream: v1`) with its tool calls, ending early where the reply waits for "
                "the client; the header `X-AI-SDK-Version: 6` (or later) adds the approval chunks. Closing the "
                "connection does not stop the reply (POST .../stop does).",
)


async def handler(req: ApiRequest[UiChatRequest], ctx: Context) -> ApiResponse:
    body = req.body
    dialect = dialect_of(req.headers)
    ping = ctx.service(Settings).sse_ping_seconds
    conversations = Conversations(ctx)
    if body.trigger == "submit-message" and body.messages[-1].continues_reply:
        where = f"messages[{len(body.messages) - 1}]"
        reply_id, client = await continue_reply(ctx, req.principal, body.id, body.messages[-1], where)
        return ApiResponse(200, ui_message_stream(ctx, body.id, reply_id, ping, dialect, client),
                           headers=HEADERS, media_type="text/event-stream")
    client_tools = request_tools(ctx.service(ToolSet), body.clientTools or (), field="clientTools")
    if body.trigger == "submit-message":
        sent = await conversations.send(req.principal, body.messages[-1].text(), body.id,
                                        change=ChatSettings.model_validate(body.model_dump(include=set(FIELDS),
                                                                                           exclude_unset=True)),
                                        client_tools=client_tools)
        reply_id = sent.assistant_message_id
    else:
        asked_for = await _reply_asked_for(ctx, body)
        reply_id = (await conversations.regenerate(req.principal, body.id, asked_for,
                                                   client_tools=client_tools)).assistantMessageId
    return ApiResponse(200, ui_message_stream(ctx, body.id, reply_id, ping, dialect),
                       headers=HEADERS, media_type="text/event-stream")


async def _reply_asked_for(ctx: Context, body: UiChatRequest) -> str | None:
    """The reply to regenerate: `messageId` names it, or the user message it answered."""
    if body.messageId is None:
        return None
    items = await ctx.streams.conversation.get_group(body.id)
    position = next((index for index, item in enumerate(items) if item.id == body.messageId), None)
    if position is None or items[position].data.sender == "assistant":
        return body.messageId  # regenerate answers 404 for an unknown id
    reply: Any = next((item for item in items[position + 1:] if item.data.sender == "assistant"), None)
    if reply is None:
        raise HttpError(404, "not_found", f"messageId {body.messageId!r}: no reply to this message to regenerate")
    return str(reply.id)
