"""The chat's messages as the AI SDK sends them to POST /api/chat, and what the server reads of them.

The server holds the history, so it reads little: the last user message's text to send, or, when
the last message is the assistant's, what the client gives the reply it waits on: the answers of tool
parts in state `approval-responded` (what `ai` 6+'s `addToolApprovalResponse` leaves) and the
outputs of tool parts in state `output-available` / `output-error` for calls of tools that run in the
client (what `addToolResult` in `ai` 5, `addToolOutput` in 6 and later leave), before the chat sends
its messages again; and how much of the reply that client already shows, so its stream goes on from
there.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from streamchat.conversations import approvals
from streamchat.conversations.client_results import ClientResult, give_result
from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.ownership import require_owner
from streamchat.framework import Context, HttpError, Item, Principal
from streamchat.protocols.ui_tool_parts import ClientCopy

ANSWERED = "approval-responded"
#: The states of a tool part that carries the outcome of the client's run of the tool.
GIVEN = frozenset({"output-available", "output-error"})
#: What the model is told for an `output-error` part that says nothing.
NO_ERROR_TEXT = "the tool failed in the client"


class UiApproval(BaseModel):
    """A tool part's approval: its id (the call's), and once answered, the answer."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=300)
    approved: bool | None = None
    reason: str | None = Field(default=None, max_length=2000)


class UiMessagePart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None
    toolCallId: str | None = None
    state: str | None = None
    approval: UiApproval | None = None
    output: JsonValue = None
    errorText: str | None = None

    @property
    def is_tool(self) -> bool:
        return self.type.startswith("tool-") or self.type == "dynamic-tool"

    @property
    def answers_approval(self) -> bool:
        return (self.is_tool and self.state == ANSWERED and self.approval is not None
                and self.approval.approved is not None)

    @property
    def gives_outcome(self) -> bool:
        """A tool part with an output or an error: the client's result, if the call waits for one."""
        return self.is_tool and self.state in GIVEN and bool(self.toolCallId)

    def result(self, where: str) -> ClientResult:
        """The part's outcome as a client's result; 422 naming the field when it cannot be one."""
        try:
            if self.state == "output-error":
                return ClientResult(error=self.errorText or NO_ERROR_TEXT)
            return ClientResult(output=self.output)
        except ValidationError as error:
            field = f"{where}.errorText"
            detail = f"{field}: {error.errors(include_url=False)[0]['msg']}"
            raise HttpError(422, "validation_error", detail,
                            fields=[{"field": field, "message": detail, "type": "value_error"}]) from None


class UiMessage(BaseModel):
    """A UI message as `useChat` keeps it: text parts and tool parts are read."""

    model_config = ConfigDict(extra="allow")

    id: str = ""
    role: Literal["system", "user", "assistant"]
    parts: list[UiMessagePart] = Field(default_factory=list)

    def text(self) -> str:
        return "\n".join(part.text for part in self.parts if part.type == "text" and part.text)

    @property
    def continues_reply(self) -> bool:
        """An assistant message with answered approvals or tool outputs: the reply it shows goes on."""
        return self.role == "assistant" and any(part.answers_approval or part.gives_outcome for part in self.parts)


async def continue_reply(ctx: Context, principal: Principal | None, cid: str, message: UiMessage,
                         where: str) -> tuple[str, ClientCopy]:
    """Give each call of `message` (at `where` in the body) what the client gave it: an approval's
    answer, or the result of a call waiting for the client's (the outputs of the other calls are the
    server's own, shown back); the reply they belong to and what the client shows of it. A call
    answered meanwhile (another tab, the page, the result route) keeps that answer: the stream shows
    how it went."""
    await require_owner(ctx, cid, principal)
    items = {item.id: item for item in await ctx.streams.conversation.get_group(cid)}
    replies: set[str] = set()
    answers: list[tuple[str, bool, str | None]] = []
    results: list[tuple[Item[ConversationMessage], ClientResult]] = []
    for index, part in enumerate(message.parts):
        if part.answers_approval and part.approval is not None and part.approval.approved is not None:
            call_id, field = part.approval.id, f"{where}.parts[{index}].approval.id"
        elif part.gives_outcome and part.toolCallId is not None:
            call_id, field = part.toolCallId, f"{where}.parts[{index}].toolCallId"
        else:
            continue
        call = items.get(call_id)
        if call is None or not call.data.is_tool_call or call.data.parentId is None:
            raise HttpError(404, "not_found", f"{field}: no tool call {call_id!r} in chat {cid!r}")
        replies.add(call.data.parentId)
        if part.answers_approval and part.approval is not None and part.approval.approved is not None:
            answers.append((call.id, part.approval.approved, part.approval.reason))
        elif call.data.status == "awaiting_result":
            results.append((call, part.result(f"{where}.parts[{index}]")))
    if len(replies) != 1:
        detail = (f"{where}.parts: the calls answered belong to {len(replies)} replies; one message is one reply")
        raise HttpError(422, "validation_error", detail,
                        fields=[{"field": f"{where}.parts", "message": detail, "type": "value_error"}])
    [reply_id] = replies
    for call_id, approved, reason in answers:
        try:
            await approvals.answer(ctx, principal, cid, call_id, approved, reason)
        except HttpError as error:
            if error.status != 409:
                raise
    for call, result in results:
        try:
            await give_result(ctx, principal, cid, call.id, result)
        except HttpError as error:
            if error.status != 409:
                raise
    states = {part.toolCallId: part.state for part in message.parts
              if part.is_tool and part.toolCallId and part.state and part.toolCallId in items
              and items[part.toolCallId].data.parentId == reply_id}
    shown = sum(len(part.text or "") for part in message.parts if part.type == "text")
    return reply_id, ClientCopy(text_length=shown, call_states=states)
