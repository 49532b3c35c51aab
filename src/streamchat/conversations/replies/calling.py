"""The tool calls of one model round, from the first streamed piece to the call's event.

A call is an item of the conversation from the moment its name is known, its arguments appended as
the model writes them, so every client watches it grow the way it watches text. When the round
ends, each call is checked before anything runs: a tool the conversation does not offer, or
arguments that are not JSON or do not fit the tool's input, end the call `error` with the reason
(given to the model next round); a tool that needs approval waits for it, one that runs in the
client waits for the client's result; the rest are queued on the `tool-call` topic, so they run on
whichever instance takes them, in parallel.
"""

from __future__ import annotations

from collections.abc import Collection

from streamchat.conversations.events import TOOL_CALL, ToolCallEvent
from streamchat.conversations.messages import ConversationMessage, utc_now
from streamchat.conversations.tool_calls import call_item_id
from streamchat.framework import Context
from streamchat.llm import ToolCallDelta, ToolCallParts
from streamchat.tools import ToolSet
from streamchat.tools.errors import ToolArgumentsError


class RoundCalls:
    """Collects the round's calls while it streams; `start` checks and queues them when it ends."""

    def __init__(self, ctx: Context, cid: str, reply_id: str, round_number: int, tools: ToolSet,
                 offered: Collection[str]) -> None:
        self.ctx = ctx
        self.cid = cid
        self.reply_id = reply_id
        self.round = round_number
        self.tools = tools
        self.offered = offered
        self.parts = ToolCallParts()
        self._stream = ctx.streams.conversation
        #: The index of each call whose item exists → the item's id.
        self._items: dict[int, str] = {}
        #: Argument text streamed before the call's name, written with its first item.
        self._early: dict[int, list[str]] = {}
        #: Every index streamed: ToolCallParts gives the whole calls in this order.
        self._indexes: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self.parts)

    async def add(self, delta: ToolCallDelta, written: int) -> None:
        """One streamed piece of a call; `written` is how much of the reply's text exists now."""
        self.parts.add(delta)
        self._indexes.add(delta.index)
        item_id = self._items.get(delta.index)
        if item_id is not None:
            if delta.arguments:
                await self._stream.append(self.cid, item_id, "arguments", delta.arguments)
            return
        if not delta.name:
            self._early.setdefault(delta.index, []).append(delta.arguments)
            return
        item_id = self._items[delta.index] = call_item_id(self.reply_id, self.round, delta.index)
        arguments = "".join([*self._early.pop(delta.index, []), delta.arguments])
        await self._stream.set(self.cid, item_id, self._item(delta.id or "", delta.name, arguments, written))

    def _item(self, call_id: str, name: str, arguments: str, offset: int) -> ConversationMessage:
        tool = self.tools.get(name) if name in self.offered else None
        where = {"runsIn": "client"} if tool is not None and tool.runs_in_client else {}
        return ConversationMessage.model_validate({
            "from": "tool", "message": "", "status": "pending", "timestamp": utc_now(), "parentId": self.reply_id,
            "toolCallId": call_id, "name": name, "arguments": arguments, "round": self.round, "offset": offset,
            **where})

    async def cancel(self) -> None:
        """The round was stopped: calls the model had begun end `cancelled`, none runs."""
        for item_id in self._items.values():
            current = await self._stream.get(self.cid, item_id)
            if current is not None:
                await self._stream.set(self.cid, item_id, current.data.model_copy(update={"status": "cancelled"}))

    async def start(self, written: int, key_id: str | None) -> bool:
        """Check each whole call and set it going; True when none is left to wait for (every one ended
        at its check, so the next round can start at once). ProviderError if the model left a call
        without its id or name."""
        calls = self.parts.calls()
        waiting = False
        for index, call in zip(sorted(self._indexes), calls, strict=True):
            item_id = self._items.get(index) or call_item_id(self.reply_id, self.round, index)
            item = self._item(call.id, call.name, call.arguments, written)
            tool = self.tools.get(call.name) if call.name in self.offered else None
            if tool is None:
                item = item.model_copy(update={"status": "error", "error": f"there is no tool {call.name!r} here; "
                                               f"the tools are {', '.join(map(repr, self.offered)) or 'none'}"})
            else:
                try:
                    tool.arguments(call.arguments)
                except ToolArgumentsError as error:
                    item = item.model_copy(update={"status": "error", "error": str(error)})
                else:
                    waiting = True
                    if tool.runs_in_client:
                        item = item.model_copy(update={"status": "awaiting_result"})
                    elif tool.needs_approval:
                        item = item.model_copy(update={"status": "awaiting_approval"})
            await self._stream.set(self.cid, item_id, item)
            if item.status == "pending":
                await self.ctx.emit(TOOL_CALL, ToolCallEvent(conversationId=self.cid, replyId=self.reply_id,
                                                             callId=item_id, keyId=key_id))
        return not waiting
