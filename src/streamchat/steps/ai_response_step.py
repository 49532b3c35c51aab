"""AI response: stream the model's reply into the assistant message, token by token
(conversations/replies/runner.py runs it)."""

from __future__ import annotations

from streamchat.conversations.events import REPLY_ASKED, ChatMessageEvent
from streamchat.conversations.replies.runner import ReplyRunner
from streamchat.framework import Context, EventConfig

__all__ = ["ChatMessageEvent", "config", "handler", "on_failure"]

config = EventConfig(
    name="AiResponse",
    subscribes=[REPLY_ASKED],
    input=ChatMessageEvent,
    writes=["conversation"],
    max_retries=3,
    group_by="conversationId",
    description="Calls the model with streaming on and writes the growing reply into the conversation.",
)


async def handler(data: ChatMessageEvent, ctx: Context) -> None:
    await ReplyRunner(ctx).run(data)


async def on_failure(data: ChatMessageEvent, ctx: Context, error: BaseException) -> None:
    await ReplyRunner(ctx).failed(data)
