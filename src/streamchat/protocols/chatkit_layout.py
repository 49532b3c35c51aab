"""The ChatKit events of one reply, in an order fixed by what is stored, so event N is the same event
live, rebuilt later and on every instance (what makes resume by event id exact).

Per model round: the round's text as an `assistant_message` item (`thread.item.added`, its content
part added, one `text_delta` per piece as the model wrote it, the part done, `thread.item.done`);
then the round's calls, once the model has written all of them. The calls the server runs come as
one `workflow` item: added, a `workflow.task.added` per call in the order the model made them, then,
in that same order, each call's `workflow.task.updated` once it has ended (a call that ends early
waits for the ones before it), then the workflow done. Then each call the client runs, one at a time:
its `client_tool_call` item done (pending), where the layout waits (`waiting_on`) for the client's
result; with the result in, a new stretch of the stream begins: `stream_options`, the call
`thread.item.replaced` (completed, with its output). Then the next round. The reply's end closes the
open text; a reply that failed adds an `error` event.

`ChatKitLayout` is fed the conversation's items (a group watch's events, or a snapshot) and gives the
events that follow from what it has seen; `items` is the thread items it has laid out so far.
"""

from __future__ import annotations

from enum import Enum, auto
from typing import Any

from streamchat.conversations.messages import FINISHED, ConversationMessage
from streamchat.conversations.replies.waiting import waited_for_approval
from streamchat.framework import Context
from streamchat.protocols.chatkit_errors import error_event
from streamchat.protocols.chatkit_items import (
    assistant_item,
    client_call_item,
    message_item_id,
    task,
    text_part,
    workflow_item,
    workflow_item_id,
)
from streamchat.protocols.seen_reply import SeenReply

Event = dict[str, Any]
#: What ChatKit's own server says at the start of every stretch of a stream.
STREAM_OPTIONS: Event = {"type": "stream_options", "stream_options": {"allow_cancel": True}}
#: The status of a call waiting for the client's result.
AWAITING_RESULT = "awaiting_result"


class Phase(Enum):
    TEXT = auto()
    OPEN_CALLS = auto()
    CLOSE_CALLS = auto()
    CLIENT_CALLS = auto()
    END = auto()
    DONE = auto()


class ChatKitLayout(SeenReply[Event]):
    def __init__(self, ctx: Context, cid: str, reply_id: str, *, as_written: bool) -> None:
        super().__init__(ctx, reply_id, as_written=as_written)
        self.cid = cid
        self.phase = Phase.TEXT
        self.round = 0
        #: The open text item's id and its text; the round's workflow and the calls still to close or show.
        self._message: str | None = None
        self._text: list[str] = []
        self._workflow: str | None = None
        self._tasks: list[dict[str, Any]] = []
        self._to_close: list[str] = []
        self._to_show: list[str] = []
        self._shown: set[str] = set()
        #: The client call the layout stands at, waiting for its result (None when it does not wait).
        self.waiting_on: str | None = None
        #: The thread items laid out so far, in order (the open text's is filled in by laid_items).
        self.items: dict[str, dict[str, Any]] = {}

    def laid_items(self) -> list[dict[str, Any]]:
        """The thread items laid out so far, as they stand (the open text with what it has)."""
        laid = list(self.items.values())
        if self._message is not None:
            laid[list(self.items).index(self._message)] = assistant_item(self.cid, self._message, self._created(),
                                                                         "".join(self._text))
        return laid

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def through(self) -> bool:
        """A stream also ends where the layout waits for a client tool's result (its next one goes on)."""
        return super().through or self.waiting_on is not None

    # -- what follows ------------------------------------------------------------------------

    async def advance(self) -> list[Event]:
        """The events that follow from what has been seen, past those already given."""
        events: list[Event] = []
        while self.lost is None and self.reply is not None:
            phase = self.phase
            if phase is Phase.TEXT:
                moved = self._text_of_round(events)
            elif phase is Phase.OPEN_CALLS:
                moved = await self._open_calls(events)
            elif phase is Phase.CLOSE_CALLS:
                moved = self._close_calls(events)
            elif phase is Phase.CLIENT_CALLS:
                moved = self._client_calls(events)
            elif phase is Phase.END:
                moved = self._end(events)
            else:
                moved = False
            if not moved:
                break
        return events

    def _text_of_round(self, events: list[Event]) -> bool:
        end = self._text_end(self.round)
        for piece in self._take_text(end):
            events += self._delta(piece)
        if not self._took_text_to(end):
            return False
        events += self._close_message()
        self.phase = Phase.OPEN_CALLS if self._round_calls(self.round) else Phase.END
        return True

    async def _open_calls(self, events: list[Event]) -> bool:
        calls = self._round_calls(self.round)
        if any(call_id not in self.whole for call_id in calls):
            return False
        client = [call_id for call_id in calls if await self._runs_in_client(self.calls[call_id])]
        self._to_show = client
        self._to_close = [call_id for call_id in calls if call_id not in client]
        if self._to_close:
            assert self.reply is not None
            self._workflow = workflow_item_id(self.reply_id, self.round)
            self._tasks = []
            item = workflow_item(self.cid, self._workflow, self.reply.timestamp, [], done=False)
            events.append({"type": "thread.item.added", "item": item})
            for call_id in self._to_close:
                asked = await waited_for_approval(self.ctx, self.cid, call_id, self.calls[call_id])
                self._tasks.append(task(self.cid, call_id, self.calls[call_id], asked=asked, ended=False))
                events.append({"type": "thread.item.updated", "item_id": self._workflow, "update": {
                    "type": "workflow.task.added", "task_index": len(self._tasks) - 1, "task": self._tasks[-1]}})
            self.items[self._workflow] = self._workflow_now(done=False)
        self.phase = Phase.CLOSE_CALLS
        return True

    @staticmethod
    async def _runs_in_client(call: ConversationMessage) -> bool:
        """Whether the call's result comes from the client (its item says so), whatever its status now."""
        return call.status == AWAITING_RESULT or call.runsIn == "client"

    def _workflow_now(self, *, done: bool) -> dict[str, Any]:
        assert self.reply is not None and self._workflow is not None
        return workflow_item(self.cid, self._workflow, self.reply.timestamp, [dict(entry) for entry in self._tasks],
                             done=done)

    def _close_calls(self, events: list[Event]) -> bool:
        while self._to_close:
            call_id = self._to_close[0]
            call = self.calls[call_id]
            if call.status not in FINISHED:
                return False
            self._to_close.pop(0)
            index = len(self._tasks) - len(self._to_close) - 1
            self._tasks[index] = task(self.cid, call_id, call, asked=False, ended=True)
            events.append({"type": "thread.item.updated", "item_id": self._workflow, "update": {
                "type": "workflow.task.updated", "task_index": index, "task": self._tasks[index]}})
            self.items[str(self._workflow)] = self._workflow_now(done=False)
        if self._workflow is not None:
            self.items[self._workflow] = self._workflow_now(done=True)
            events.append({"type": "thread.item.done", "item": self._workflow_now(done=True)})
            self._workflow = None
        self.phase = Phase.CLIENT_CALLS
        return True

    def _client_calls(self, events: list[Event]) -> bool:
        while self._to_show:
            call_id = self._to_show[0]
            call = self.calls[call_id]
            if call_id not in self._shown:
                self._shown.add(call_id)
                self.items[call_id] = client_call_item(self.cid, call_id, call, answered=False)
                events.append({"type": "thread.item.done", "item": self.items[call_id]})
            if call.status not in FINISHED:
                self.waiting_on = call_id
                return False
            self.waiting_on = None
            self._to_show.pop(0)
            self.items[call_id] = client_call_item(self.cid, call_id, call, answered=True)
            events += [STREAM_OPTIONS, {"type": "thread.item.replaced", "item": self.items[call_id]}]
        self.round += 1
        self.phase = Phase.TEXT
        return True

    def _end(self, events: list[Event]) -> bool:
        reply = self.reply
        assert reply is not None
        if reply.status not in FINISHED:
            return False
        events += self._close_message()
        if reply.status == "error":
            events.append(error_event(reply.error or "the reply failed", allow_retry=True))
        self.phase = Phase.DONE
        return True

    # -- the assistant message item of a round's text -----------------------------------------

    def _delta(self, piece: str) -> list[Event]:
        events: list[Event] = []
        if self._message is None:
            assert self.reply is not None
            self._message = message_item_id(self.reply_id, self.round)
            self._text = []
            events.append({"type": "thread.item.added",
                           "item": assistant_item(self.cid, self._message, self.reply.timestamp, None)})
            events.append({"type": "thread.item.updated", "item_id": self._message, "update": {
                "type": "assistant_message.content_part.added", "content_index": 0, "content": text_part("")}})
            self.items[self._message] = {}  # its text so far is read when asked (laid_items)
        self._text.append(piece)
        events.append({"type": "thread.item.updated", "item_id": self._message, "update": {
            "type": "assistant_message.content_part.text_delta", "content_index": 0, "delta": piece}})
        return events

    def _created(self) -> str:
        assert self.reply is not None
        return self.reply.timestamp

    def _close_message(self) -> list[Event]:
        if self._message is None:
            return []
        item_id, text = self._message, "".join(self._text)
        self._message = None
        self._text = []
        self.items[item_id] = assistant_item(self.cid, item_id, self._created(), text)
        return [{"type": "thread.item.updated", "item_id": item_id, "update": {
                    "type": "assistant_message.content_part.done", "content_index": 0, "content": text_part(text)}},
                {"type": "thread.item.done", "item": self.items[item_id]}]
