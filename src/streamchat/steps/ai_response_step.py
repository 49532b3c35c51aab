"""AI response: stream the model's reply into the assistant message, token by token
(conversations/replies/runner.py runs it)."""

from __future__ import annotations

from streamchat.conversations.events import REPLY_ASKED, TOOL_CALL, ChatMessageEvent, ToolCallEvent
from streamchat.conversations.replies.runner import ReplyRunner
from streamchat.framework import Context, Emit, EventConfig

__all__ = ["ChatMessageEvent", "config", "handler", "on_failure"]

config = EventConfig(
    name="AiResponse",
    subscribes=[REPLY_ASKED],
    input=ChatMessageEvent,
    emits=[Emit(TOOL_CALL, ToolCallEvent), Emit(REPLY_ASKED, ChatMessageEvent)],
    writes=["conversation"],
    max_retries=3,
    group_by="conversationId",
    description="Calls the model with streaming on and writes the growing reply into the conversation; the tool "
                "calls it makes are queued as tool-call events, and the reply goes on in a later round.",
)


async def handler(data: ChatMessageEvent, ctx: Context) -> None:
    await ReplyRunner(ctx).run(data)


async def on_failure(data: ChatMessageEvent, ctx: Context, error: BaseException) -> None:
    await ReplyRunner(ctx).failed(data)
