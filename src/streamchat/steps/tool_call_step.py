"""Tool call: run one call the model made, on whichever instance takes it, and let its reply go on
(conversations/replies/tool_runner.py runs it)."""

from __future__ import annotations

from streamchat.conversations.events import REPLY_ASKED, TOOL_CALL, ChatMessageEvent, ToolCallEvent
from streamchat.conversations.replies.tool_runner import ToolRunner
from streamchat.framework import Context, Emit, EventConfig

config = EventConfig(
    name="ToolCall",
    subscribes=[TOOL_CALL],
    input=ToolCallEvent,
    emits=[Emit(REPLY_ASKED, ChatMessageEvent)],
    writes=["conversation"],
    max_retries=3,
    description="Runs a tool call the model made; when it was its round's last, asks for the reply's next round.",
)


async def handler(data: ToolCallEvent, ctx: Context) -> None:
    await ToolRunner(ctx).run(data)


async def on_failure(data: ToolCallEvent, ctx: Context, error: BaseException) -> None:
    await ToolRunner(ctx).failed(data, error)
