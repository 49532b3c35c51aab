"""Following one reply and the tool calls it makes, in the order a reader sees them: what the views
that show calls (the AI SDK's tool parts, the Responses API's mcp_call items) read.

`FollowedTurn.events()` yields the reply's text as pieces (`str`), each call when it first appears
(`CallShown`, with its arguments so far), the later pieces of its arguments (`CallArguments`), each
later write of it (`CallChanged`: its status, progress, result or error), and `Quiet` after each
`keepalive` seconds without news; afterwards `end` says how the reply ended, as FollowedReply's does.
A view that joins mid-reply gets what is already there laid out in that same order: the text up to
where each round called its tools, those calls, then the text after them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from streamchat.conversations.messages import FINISHED, ConversationMessage
from streamchat.framework import Context, ItemGone, ItemState, Quiet, TextDelta
from streamchat.protocols.following import ReplyEnd, text_pieces


@dataclass(frozen=True, slots=True)
class CallShown:
    """A call seen for the first time, as it is now."""

    call_id: str
    call: ConversationMessage


@dataclass(frozen=True, slots=True)
class CallArguments:
    """More of a call's arguments text, as the model writes it."""

    call_id: str
    piece: str


@dataclass(frozen=True, slots=True)
class CallChanged:
    """A later write of a call: its status, progress, result or error."""

    call_id: str
    call: ConversationMessage


TurnEvent = str | CallShown | CallArguments | CallChanged | Quiet


class FollowedTurn:
    def __init__(self, ctx: Context, conversation_id: str, reply_id: str, *, as_written: bool = False,
                 keepalive: float | None = None) -> None:
        self.ctx = ctx
        self.conversation_id = conversation_id
        self.reply_id = reply_id
        self.as_written = as_written
        self.keepalive = keepalive
        self.end: ReplyEnd | None = None
        self._sent = 0
        self._calls: set[str] = set()

    def _own_call(self, message: ConversationMessage) -> bool:
        return message.is_tool_call and message.parentId == self.reply_id

    async def events(self) -> AsyncIterator[TurnEvent]:
        stream = self.ctx.streams.conversation
        async with stream.watch_group(self.conversation_id, self.keepalive) as watch:
            snapshot = watch.snapshot()
            reply = next((state.data for state in snapshot if state.item_id == self.reply_id), None)
            if reply is None:
                self.end = ReplyEnd(None, "the reply is not there (its conversation was deleted)")
                return
            calls = [(state.item_id, state.data) for state in snapshot if self._own_call(state.data)]
            for shown in await self._laid_out(reply, calls):
                yield shown
            if reply.status in FINISHED:
                self.end = ReplyEnd(reply)
                return
            async for event in watch:
                if isinstance(event, Quiet):
                    yield event
                elif event.item_id == self.reply_id:
                    if isinstance(event, ItemGone):
                        self.end = ReplyEnd(None, "the conversation was deleted")
                        return
                    if isinstance(event, TextDelta):
                        self._sent += len(event.text)
                        yield event.text
                        continue
                    message: ConversationMessage = event.data
                    if len(message.message) < self._sent:
                        self.end = ReplyEnd(None, "the reply was started again from the beginning")
                        return
                    for piece in await self._text_up_to(message.message, len(message.message)):
                        yield piece
                    if message.status in FINISHED:
                        self.end = ReplyEnd(message)
                        return
                elif isinstance(event, TextDelta):
                    if event.item_id in self._calls:
                        yield CallArguments(event.item_id, event.text)
                elif isinstance(event, ItemState) and self._own_call(event.data):
                    if event.item_id in self._calls:
                        yield CallChanged(event.item_id, event.data)
                    else:
                        self._calls.add(event.item_id)
                        yield CallShown(event.item_id, event.data)

    async def _laid_out(self, reply: ConversationMessage,
                        calls: Sequence[tuple[str, ConversationMessage]]) -> list[TurnEvent]:
        """What is there already: per round, the text before its calls, the calls; then the rest of the text."""
        laid: list[TurnEvent] = []
        for call_id, call in sorted(calls, key=lambda pair: pair[1].round or 0):
            laid += await self._text_up_to(reply.message, call.offset or 0)
            self._calls.add(call_id)
            laid.append(CallShown(call_id, call))
        laid += await self._text_up_to(reply.message, len(reply.message))
        return laid

    async def _text_up_to(self, text: str, end: int) -> list[TurnEvent]:
        if end <= self._sent:
            return []
        pieces = await text_pieces(self.ctx, self.reply_id, text[:end], self._sent, self.as_written)
        self._sent = end
        return list(pieces)
