"""The chat's messages as the AI SDK sends them to POST /api/chat, and what the server reads of them.

The server holds the history, so it reads little: the last user message's text to send, or, when
the last message is the assistant's with tool parts in state `approval-responded` (what `ai` 6+'s
`addToolApprovalResponse` leaves before the chat sends its messages again), the answers to give
those calls, and how much of the reply that client already shows, so its stream goes on from there.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from streamchat.conversations import approvals
from streamchat.conversations.ownership import require_owner
from streamchat.framework import Context, HttpError, Principal
from streamchat.protocols.ui_tool_parts import ClientCopy

ANSWERED = "approval-responded"


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

    @property
    def is_tool(self) -> bool:
        return self.type.startswith("tool-") or self.type == "dynamic-tool"

    @property
    def answers_approval(self) -> bool:
        return (self.is_tool and self.state == ANSWERED and self.approval is not None
                and self.approval.approved is not None)


class UiMessage(BaseModel):
    """A UI message as `useChat` keeps it: text parts and tool parts are read."""

    model_config = ConfigDict(extra="allow")

    id: str = ""
    role: Literal["system", "user", "assistant"]
    parts: list[UiMessagePart] = Field(default_factory=list)

    def text(self) -> str:
        return "\n".join(part.text for part in self.parts if part.type == "text" and part.text)

    @property
    def answers_approvals(self) -> bool:
        return self.role == "assistant" and any(part.answers_approval for part in self.parts)


async def answer_approvals(ctx: Context, principal: Principal | None, cid: str, message: UiMessage,
                           where: str) -> tuple[str, ClientCopy]:
    """Give each answered call of `message` (at `where` in the body) its answer; the reply they belong
    to and what the client shows of it. A call answered meanwhile (another tab, the page) keeps that
    answer: the stream shows how it went."""
    await require_owner(ctx, cid, principal)
    items = {item.id: item for item in await ctx.streams.conversation.get_group(cid)}
    replies: set[str] = set()
    answers: list[tuple[str, bool, str | None]] = []
    for index, part in enumerate(message.parts):
        approval = part.approval
        if not part.answers_approval or approval is None or approval.approved is None:
            continue
        call = items.get(approval.id)
        if call is None or not call.data.is_tool_call or call.data.parentId is None:
            field = f"{where}.parts[{index}].approval.id"
            raise HttpError(404, "not_found", f"{field}: no tool call {approval.id!r} in chat {cid!r}")
        replies.add(call.data.parentId)
        answers.append((call.id, approval.approved, approval.reason))
    if len(replies) != 1:
        detail = f"{where}.parts: the approvals answered belong to {len(replies)} replies; one message is one reply"
        raise HttpError(422, "validation_error", detail,
                        fields=[{"field": f"{where}.parts", "message": detail, "type": "value_error"}])
    [reply_id] = replies
    for call_id, approved, reason in answers:
        try:
            await approvals.answer(ctx, principal, cid, call_id, approved, reason)
        except HttpError as error:
            if error.status != 409:
                raise
    states = {part.toolCallId: part.state for part in message.parts
              if part.is_tool and part.toolCallId and part.state and part.toolCallId in items
              and items[part.toolCallId].data.parentId == reply_id}
    shown = sum(len(part.text or "") for part in message.parts if part.type == "text")
    return reply_id, ClientCopy(text_length=shown, call_states=states)
