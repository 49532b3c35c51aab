"""The events of one response (a stretch of a reply, see responses_segments.py), in an order fixed by
what is stored, so event N is the same event live, rebuilt later, and on every instance.

Per model round of the stretch: the round's text as a `message` item, one `output_text.delta` per
piece as the model wrote it (the reply journal's pieces); then the round's calls in the order the
model made them: first each call opened (`output_item.added`, `mcp_call.in_progress`, its whole
arguments as one `mcp_call_arguments.delta`, `mcp_call_arguments.done`) or, for a call that waits
for the user, its `mcp_approval_request` item (added and done), or, for a call of a tool the client
runs, its whole `function_call` item (`output_item.added`, its arguments as one
`function_call_arguments.delta`, `function_call_arguments.done`, `output_item.done`); then, call by
call in that same order, each server-run call's end (`mcp_call.completed` or `.failed`,
`output_item.done`). A round with an approval request or a function call ends the response
(`response.completed`): the client's answer is the next response's input; otherwise the next
round's text follows in a new message item, and the reply's end ends the response. A call is shown once the model has
written all of it (its arguments are whole then; the pieces it streamed in are not kept, so they are
not numbered), and a call that ends early waits for the ones before it: the order never depends on
timing.

`ResponseLayout` is fed the conversation's items (a group watch's events, or a snapshot) and gives
the events that follow from what it has seen; `output` is the response's items so far.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum, auto
from typing import Any

from streamchat.conversations.messages import FINISHED
from streamchat.conversations.replies.waiting import waited_for_client
from streamchat.framework import Context
from streamchat.protocols.responses_items import (
    approval_item,
    call_item,
    call_output_id,
    function_call_id,
    function_call_item,
    message_id,
    message_item,
    text_part,
)
from streamchat.protocols.responses_segments import Segment
from streamchat.protocols.seen_reply import SeenReply
from streamchat.tools import ToolSet

#: An event before it is numbered: its type and its fields.
Event = tuple[str, dict[str, Any]]
#: The response object at its end, given its status and output (the layout knows neither id nor details).
Respond = Callable[[str, list[dict[str, Any]], bool], dict[str, Any]]

ITEM_STATUS = {"completed": "completed", "error": "incomplete", "stopped": "incomplete"}
STATUS = {"completed": "completed", "error": "failed", "stopped": "cancelled"}
TERMINAL = {"completed": "response.completed", "error": "response.failed", "stopped": "response.incomplete"}


class Phase(Enum):
    START = auto()
    TEXT = auto()
    OPENINGS = auto()
    CLOSINGS = auto()
    END = auto()
    DONE = auto()


class ResponseLayout(SeenReply[Event]):
    def __init__(self, ctx: Context, cid: str, segment: Segment, respond: Respond, *, as_written: bool) -> None:
        super().__init__(ctx, segment.reply_id, as_written=as_written)
        self.cid = cid
        self.segment = segment
        self.respond = respond
        self.tools = ctx.service(ToolSet)
        #: Whether each call waited for the client (its approval, or its result), read once.
        self._asked: dict[str, bool] = {}
        #: Where the layout is.
        self.phase = Phase.START if segment.after_round is not None else Phase.TEXT
        self.round = segment.after_round or 0
        #: The open message item: its place in the output, its events' place fields, its text so far.
        self._message: int | None = None
        self._place: dict[str, Any] = {}
        self._text_parts: list[str] = []
        self._to_close: list[tuple[str, int, bool]] = []
        self._waits = False
        #: The response's items so far; its status and last state once it has ended.
        self.output: list[dict[str, Any]] = []
        self.status: str | None = None
        self.response: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    # -- what follows ------------------------------------------------------------------------

    async def advance(self) -> list[Event]:
        """The events that follow from what has been seen, past those already given."""
        events: list[Event] = []
        while self.lost is None and self.reply is not None:
            phase = self.phase
            if phase is Phase.TEXT:
                moved = self._text(events)
            elif phase is Phase.OPENINGS:
                moved = await self._openings(events)
            elif phase is Phase.CLOSINGS:
                moved = await self._closings(events)
            elif phase is Phase.START:
                moved = await self._start(events)
            elif phase is Phase.END:
                moved = await self._end(events)
            else:
                moved = False
            if not moved:
                break
        return events

    async def _is_asked(self, call_id: str) -> bool:
        if call_id not in self._asked:
            self._asked[call_id] = await waited_for_client(self.ctx, self.cid, call_id, self.calls[call_id])
        return self._asked[call_id]

    async def _runs_in_client(self, call_id: str) -> bool:
        """Whether the call waited for the client to run it (rather than for the user's approval)."""
        return self.calls[call_id].runsIn == "client" and await self._is_asked(call_id)

    async def _start(self, events: list[Event]) -> bool:
        """A continuation: past the stretches before it, then the calls that waited, as they went."""
        calls = self._round_calls(self.round)
        if not calls or any(call_id not in self.whole for call_id in calls):
            return False
        end = max(self.calls[call_id].offset or 0 for call_id in calls)
        if self.known < end:
            return False
        self._take_text(end)  # shown by the responses before this one
        for call_id in calls:  # a function call's output is this response's input, not its output
            if await self._is_asked(call_id) and not await self._runs_in_client(call_id):
                events += self._open_call(call_id, approval=True)
        self._waits = False
        self.phase = Phase.CLOSINGS
        return True

    def _text(self, events: list[Event]) -> bool:
        end = self._text_end(self.round)
        for piece in self._take_text(end):
            events += self._delta(piece)
        if not self._took_text_to(end):
            return False
        if self._round_calls(self.round):
            events += self._close_message("completed")
            self.phase = Phase.OPENINGS
        else:
            self.phase = Phase.END
        return True

    async def _openings(self, events: list[Event]) -> bool:
        calls = self._round_calls(self.round)
        if any(call_id not in self.whole for call_id in calls):
            return False
        self._waits = False
        for call_id in calls:
            if await self._runs_in_client(call_id):
                self._waits = True
                events += self._function_call(call_id)
            elif await self._is_asked(call_id):
                self._waits = True
                item = approval_item(self.tools, call_id, self.calls[call_id])
                index = len(self.output)
                self.output.append(item)
                events.append(("response.output_item.added", {"output_index": index, "item": item}))
                events.append(("response.output_item.done", {"output_index": index, "item": item}))
            else:
                events += self._open_call(call_id, approval=False)
        self.phase = Phase.CLOSINGS
        return True

    def _function_call(self, call_id: str) -> list[Event]:
        """A call the client runs, whole at once: what it waits for is the client's next request."""
        call = self.calls[call_id]
        index = len(self.output)
        arguments = call.arguments or ""
        item = function_call_item(call_id, call, whole=True)
        place = {"item_id": function_call_id(call_id), "output_index": index}
        self.output.append(item)
        events: list[Event] = [("response.output_item.added", {"output_index": index,
                                                               "item": function_call_item(call_id, call, whole=False)})]
        if arguments:
            events.append(("response.function_call_arguments.delta", {**place, "delta": arguments}))
        events.append(("response.function_call_arguments.done", {**place, "arguments": arguments}))
        events.append(("response.output_item.done", {"output_index": index, "item": item}))
        return events

    def _open_call(self, call_id: str, *, approval: bool) -> list[Event]:
        call = self.calls[call_id]
        index = len(self.output)
        arguments = call.arguments or ""
        place = {"item_id": call_output_id(call_id), "output_index": index}
        self.output.append(call_item(self.tools, call_id, call, approval=approval, arguments=arguments))
        self._to_close.append((call_id, index, approval))
        events: list[Event] = [
            ("response.output_item.added", {"output_index": index, "item": call_item(
                self.tools, call_id, call, approval=approval)}),
            ("response.mcp_call.in_progress", dict(place))]
        if arguments:
            events.append(("response.mcp_call_arguments.delta", {**place, "delta": arguments}))
        events.append(("response.mcp_call_arguments.done", {**place, "arguments": arguments}))
        return events

    async def _closings(self, events: list[Event]) -> bool:
        while self._to_close:
            call_id, index, approval = self._to_close[0]
            call = self.calls[call_id]
            if call.status not in FINISHED:
                return False
            self._to_close.pop(0)
            item = call_item(self.tools, call_id, call, approval=approval, arguments=call.arguments or "", ended=True)
            self.output[index] = item
            kind = "response.mcp_call.completed" if call.status == "completed" else "response.mcp_call.failed"
            events.append((kind, {"item_id": item["id"], "output_index": index}))
            events.append(("response.output_item.done", {"output_index": index, "item": item}))
        if self._waits:  # the user is asked: this response ends here, the reply goes on in the next one
            self.status = "completed"
            self.response = self.respond("completed", self.items(), False)
            events.append(("response.completed", {"response": self.response}))
            self.phase = Phase.DONE
        else:
            self.round += 1
            self.phase = Phase.TEXT
        return True

    async def _end(self, events: list[Event]) -> bool:
        reply = self.reply
        assert reply is not None
        if reply.status not in FINISHED:
            return False
        cut = reply.finishReason == "length"
        events += self._close_message("incomplete" if cut else ITEM_STATUS.get(reply.status, "incomplete"))
        self.status = "incomplete" if cut else STATUS.get(reply.status, "failed")
        kind = "response.incomplete" if cut else TERMINAL.get(reply.status, "response.failed")
        self.response = self.respond(self.status, self.items(), True)
        events.append((kind, {"response": self.response}))
        self.phase = Phase.DONE
        return True

    # -- the message item of a round's text ----------------------------------------------------

    def _delta(self, piece: str) -> list[Event]:
        events: list[Event] = []
        if self._message is None:
            self._message = len(self.output)
            item_id = message_id(self.reply_id, self.round)
            self.output.append(message_item(item_id, "", "in_progress"))
            self._place = {"item_id": item_id, "output_index": self._message, "content_index": 0}
            self._text_parts = []
            events.append(("response.output_item.added", {"output_index": self._message,
                                                          "item": message_item(item_id, None, "in_progress")}))
            events.append(("response.content_part.added", {**self._place, "part": text_part("")}))
        self._text_parts.append(piece)
        events.append(("response.output_text.delta", {**self._place, "delta": piece, "logprobs": []}))
        return events

    def _close_message(self, status: str) -> list[Event]:
        if self._message is None:
            return []
        place = self._place
        text = "".join(self._text_parts)
        self.output[self._message] = message_item(place["item_id"], text, status)
        self._message = None
        self._text_parts = []
        return [("response.output_text.done", {**place, "text": text, "logprobs": []}),
                ("response.content_part.done", {**place, "part": text_part(text)}),
                ("response.output_item.done", {"output_index": place["output_index"],
                                               "item": message_item(place["item_id"], text, status)})]

    def items(self) -> list[dict[str, Any]]:
        """A copy of the output as it stands (events keep what they were given)."""
        items = [{**item, "content": [dict(part) for part in item["content"]]} if item["type"] == "message"
                 else dict(item) for item in self.output]
        if self._message is not None:
            items[self._message] = message_item(self._place["item_id"], "".join(self._text_parts), "in_progress")
        return items
