"""Running one tool call, for the tool step: on whichever instance takes its event.

The call's item says how it went: `running` (with the tool's progress), then `completed` with the
result, `error` with a short reason, or `cancelled` when its reply was stopped. A tool that raises
`ToolError`, outlasts its timeout or returns something that is not JSON ends `error` at once (the
model hears why and the reply goes on); any other exception is taken for a passing failure and
raised, so the bus runs the call again with backoff, and `failed` ends it `error` once every retry
has failed. Whichever run ends the round's last call asks for the reply's next round.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from pydantic import BaseModel

from streamchat.conversations.deleting import overlapped, read_marks
from streamchat.conversations.events import ToolCallEvent
from streamchat.conversations.messages import FINISHED, ConversationMessage, ToolProgress
from streamchat.conversations.replies.waiting import go_on
from streamchat.framework import Context, Item
from streamchat.tools import ToolSet
from streamchat.tools.config import Tool
from streamchat.tools.context import Progress, ToolContext
from streamchat.tools.errors import ToolError

#: How much of an exception's text a failed call shows the model and the user.
REASON_CHARS = 300


class ToolRunner:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tools = ctx.service(ToolSet)
        self.stream = ctx.streams.conversation

    async def run(self, data: ToolCallEvent) -> None:
        cid, call_id = data.conversationId, data.callId
        call = await self.stream.get(cid, call_id)
        if call is None or call.data.status not in ("pending", "running"):
            return  # ended already: stopped, denied, or this event came twice
        reply = await self.stream.get(cid, data.replyId)
        if reply is None or reply.data.status in FINISHED:
            outcome: dict[str, Any] = {"status": "cancelled"}
        else:
            outcome = await self._outcome(data, call)
        await self._end(cid, call_id, outcome)
        await go_on(self.ctx, cid, data.replyId, call.data.round or 0)

    async def failed(self, data: ToolCallEvent, error: BaseException) -> None:
        """Every retry failed: the call ends `error`, and the reply goes on without it."""
        reason = f"the tool failed after retries: {_short(error)}"
        await self._end(data.conversationId, data.callId, {"status": "error", "error": reason})
        call = await self.stream.get(data.conversationId, data.callId)
        if call is not None:
            await go_on(self.ctx, data.conversationId, data.replyId, call.data.round or 0)

    async def _outcome(self, data: ToolCallEvent, call: Item[ConversationMessage]) -> dict[str, Any]:
        name = call.data.name or ""
        tool = self.tools.get(name)
        if tool is None or not self.tools.available(name):
            return {"status": "error", "error": f"the tool {name!r} is not available now"}
        try:
            arguments = tool.arguments(call.data.arguments or "")
        except ToolError as error:
            return {"status": "error", "error": str(error)}
        await self.stream.set(data.conversationId, call.id, call.data.model_copy(update={"status": "running"}))
        context = ToolContext(conversation_id=data.conversationId, call_id=call.data.toolCallId or call.id,
                              services=self.ctx.services, key_id=data.keyId, logger=self.ctx.logger,
                              on_progress=functools.partial(self._progress, data.conversationId, call.id))
        return await self._call(tool, call.id, functools.partial(tool.handler, arguments, context))

    async def _call(self, tool: Tool, call_id: str, start: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
        """Run the handler until it returns, fails, times out or the call is stopped (from any instance)."""
        async with self.ctx.stoppable(call_id) as control:
            try:
                async for result in control.iterate(_once(start, tool.timeout_seconds)):
                    return _completed(result)
            except ToolError as error:
                return {"status": "error", "error": str(error) or type(error).__name__}
            except TimeoutError:
                return {"status": "error", "error": f"the tool did not answer within {tool.timeout_seconds:g} s"}
        return {"status": "cancelled"}

    async def _progress(self, cid: str, call_id: str, progress: Progress) -> None:
        current = await self.stream.get(cid, call_id)
        if current is not None and current.data.status == "running":
            shown = ToolProgress(progress=progress.progress, total=progress.total, message=progress.message)
            await self.stream.set(cid, call_id, current.data.model_copy(update={"progress": shown}))

    async def _end(self, cid: str, call_id: str, outcome: dict[str, Any]) -> None:
        """The call's last state, unless it ended meanwhile (a stop) or its conversation is being deleted."""
        seen = await read_marks(self.ctx, cid)
        current = await self.stream.get(cid, call_id)
        if seen.running or current is None or current.data.status in FINISHED:
            return
        await self.stream.set(cid, call_id, current.data.model_copy(update=outcome))
        await overlapped(self.ctx, cid, seen)


async def _once(start: Callable[[], Awaitable[Any]], seconds: float) -> AsyncIterator[Any]:
    """The handler's result as a one-item stream, so a stop cancels the handler where it waits."""
    async with asyncio.timeout(seconds):
        result = await start()
    yield result


def _completed(result: Any) -> dict[str, Any]:
    """A result as the item keeps it (plain JSON), or the error of one that is not JSON."""
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    try:
        return {"status": "completed", "result": orjson.loads(orjson.dumps(result)), "progress": None}
    except TypeError as error:
        return {"status": "error", "error": f"the tool returned something that is not JSON ({error})"}


def _short(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= REASON_CHARS else f"{text[:REASON_CHARS]}…"
