"""The AG-UI events of one run (a stretch of a reply, ag_ui_runs.py), in an order fixed by what is
stored, so event N is the same event live, rebuilt later, and on every instance.

After RUN_STARTED (ag_ui_stream.py): MESSAGES_SNAPSHOT (ag_ui_snapshot.py), once the reply has begun
(a queued reply waits for the one before it) or, for a run that goes on with a waiting reply, at once;
such a run then gives the results of the round it answered (below). Then per model round:
STEP_STARTED; the round's text as TEXT_MESSAGE_START / one TEXT_MESSAGE_CONTENT per piece as the model
wrote it (the reply journal's pieces) / TEXT_MESSAGE_END, the message id being the reply's; each call
of the round, once the model has written all of it, as TOOL_CALL_START (`parentMessageId` the reply) /
TOOL_CALL_ARGS (the whole arguments) / TOOL_CALL_END; STEP_FINISHED; then the round's results: each
call's TOOL_CALL_RESULT in the same order, as each ends, but for the calls that wait (ag_ui_waits.py).
Those end the run once the round's other calls have ended: with RUN_FINISHED whose outcome is the
interrupt, one per call that waits for approval (its id the call's), or else, for front-end tool calls
waiting for the client's result, the success outcome naming them in `pendingToolCallIds` (AG-UI's way:
the client runs them and sends their results in the next run). A run that goes on shows the results of
the round it answered the same way, the calls that still waited when it began ending it again. The
reply's end ends the run: RUN_FINISHED (outcome `cancelled` for a stopped reply) or RUN_ERROR for a
failed one. A round that wrote nothing (the reply failed before it) has no step.

`RunLayout` is fed the conversation's items (a group watch's events, or a snapshot) and gives the
events that follow from what it has seen.
"""

from __future__ import annotations

from enum import Enum, auto
from typing import Any

import orjson

from streamchat.conversations.messages import FINISHED, ConversationMessage
from streamchat.framework import Context
from streamchat.protocols.ag_ui_runs import AgUiRun, keep_cuts
from streamchat.protocols.ag_ui_snapshot import cuts_of, result_id, result_text, snapshot_messages
from streamchat.protocols.ag_ui_waits import CallWaits
from streamchat.protocols.seen_reply import SeenReply

Event = dict[str, Any]

#: What a client answers an approval interrupt with, as `resume[].payload` (absent, true or false also do).
APPROVAL_SCHEMA = {"type": "object", "properties": {
    "approved": {"type": "boolean", "description": "true runs the call, false denies it"},
    "reason": {"type": "string", "description": "why it is denied (told to the model)"}}}


class Phase(Enum):
    SNAPSHOT = auto()
    RESUMED = auto()
    TEXT = auto()
    CALLS = auto()
    RESULTS = auto()
    END = auto()
    DONE = auto()


class RunLayout(SeenReply[Event]):
    def __init__(self, ctx: Context, run: AgUiRun, *, as_written: bool = True) -> None:
        super().__init__(ctx, run.reply_id, as_written=as_written)
        self.run = run
        self.phase = Phase.SNAPSHOT
        self.round = run.after_round or 0
        self._text_open = False
        self._step_open = False
        self._results_given = 0
        self._interrupts: list[Event] = []
        self._pending: list[str] = []
        self.waits = CallWaits(ctx, run.thread_id)
        #: The terminal event's type once given.
        self.ended: str | None = None

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    # -- what follows ------------------------------------------------------------------------

    async def advance(self) -> list[Event]:
        """The events that follow from what has been seen, past those already given."""
        events: list[Event] = []
        while self.lost is None and self.reply is not None and self.phase is not Phase.DONE:
            phase = self.phase
            if phase is Phase.TEXT:
                moved = self._text(events)
            elif phase is Phase.CALLS:
                moved = self._show_calls(events)
            elif phase is Phase.RESULTS:
                moved = await self._results(events, going_on=False)
            elif phase is Phase.SNAPSHOT:
                moved = await self._snapshot(events)
            elif phase is Phase.RESUMED:
                moved = await self._results(events, going_on=True)
            else:
                moved = self._end(events)
            if not moved:
                break
        return events

    async def _snapshot(self, events: list[Event]) -> bool:
        assert self.reply is not None
        resuming = self.run.after_round is not None
        if not resuming and self.reply.status == "created":
            return False  # queued: the reply before it is still being written
        calls = self._round_calls(self.round) if resuming else []
        if any(call_id not in self.whole for call_id in calls):
            return False
        shown_before = max((self.calls[call_id].offset or 0 for call_id in calls), default=0)
        if self.known < shown_before:
            return False  # the text the runs before this one showed is not all read yet
        items = await self.ctx.streams.conversation.get_group(self.run.thread_id)
        if not any(item.id == self.reply_id for item in items):
            return False  # deleted meanwhile: the watch tells
        cuts = await keep_cuts(self.ctx, self.run, cuts_of(items, self.reply_id))
        events.append({"type": "MESSAGES_SNAPSHOT",
                       "messages": snapshot_messages(items, self.reply_id, self.run.after_round, cuts)})
        if resuming:
            self._take_text(shown_before)  # shown by the runs before this one
            self.phase = Phase.RESUMED
        else:
            self.phase = Phase.TEXT
        return True

    def _next_round(self) -> None:
        self.round += 1
        self._results_given = 0
        self._interrupts, self._pending = [], []
        self.phase = Phase.TEXT

    def _text(self, events: list[Event]) -> bool:
        end = self._text_end(self.round)
        for piece in self._take_text(end):
            self._open_step(events)
            if not self._text_open:
                self._text_open = True
                events.append({"type": "TEXT_MESSAGE_START", "messageId": self.reply_id, "role": "assistant"})
            events.append({"type": "TEXT_MESSAGE_CONTENT", "messageId": self.reply_id, "delta": piece})
        if not self._took_text_to(end):
            return False
        self._close_text(events)
        self.phase = Phase.CALLS if self._round_calls(self.round) else Phase.END
        return True

    def _show_calls(self, events: list[Event]) -> bool:
        calls = self._round_calls(self.round)
        if any(call_id not in self.whole for call_id in calls):
            return False
        self._open_step(events)
        for call_id in calls:
            call = self.calls[call_id]
            events.append({"type": "TOOL_CALL_START", "toolCallId": call_id, "toolCallName": call.name or "",
                           "parentMessageId": self.reply_id})
            if call.arguments:
                events.append({"type": "TOOL_CALL_ARGS", "toolCallId": call_id, "delta": call.arguments})
            events.append({"type": "TOOL_CALL_END", "toolCallId": call_id})
        self._close_step(events)
        self.phase = Phase.RESULTS
        return True

    async def _results(self, events: list[Event], *, going_on: bool) -> bool:
        """Each call's result in order, but for the calls that wait: those end the run. In a run that goes
        on, they are the calls that still waited when it began."""
        calls = self._round_calls(self.round)
        while self._results_given < len(calls):
            call_id = calls[self._results_given]
            call = self.calls[call_id]
            waited = await self.waits.of(call_id, call)
            if call_id in self.run.pending if going_on else waited is not None:
                if waited == "approval":
                    self._interrupts.append(_approval_interrupt(call_id, call))
                else:
                    self._pending.append(call_id)
            elif call.status in FINISHED:
                events.append(self._result(call_id))
            else:
                return False
            self._results_given += 1
        if self._interrupts:
            events.append(self._finished({"type": "interrupt", "interrupts": self._interrupts}))
        elif self._pending:
            events.append(self._finished({"type": "success", "pendingToolCallIds": self._pending}))
        else:
            self._next_round()
        return True

    def _result(self, call_id: str) -> Event:
        return {"type": "TOOL_CALL_RESULT", "messageId": result_id(call_id), "toolCallId": call_id,
                "content": result_text(self.calls[call_id]), "role": "tool"}

    def _end(self, events: list[Event]) -> bool:
        reply = self.reply
        assert reply is not None
        if reply.status not in FINISHED:
            return False
        self._close_step(events)
        if reply.status == "error":
            self.ended = "RUN_ERROR"
            self.phase = Phase.DONE
            events.append({"type": "RUN_ERROR", "message": reply.error or "the reply failed", "code": "reply_failed"})
        else:
            events.append(self._finished({"type": "cancelled"} if reply.status == "stopped" else None))
        return True

    def _finished(self, outcome: Event | None) -> Event:
        self.ended = "RUN_FINISHED"
        self.phase = Phase.DONE
        event: Event = {"type": "RUN_FINISHED", "threadId": self.run.thread_id, "runId": self.run.run_id}
        if outcome is not None:
            event["outcome"] = outcome
        return event

    def _open_step(self, events: list[Event]) -> None:
        if not self._step_open:
            self._step_open = True
            events.append({"type": "STEP_STARTED", "stepName": f"round {self.round}"})

    def _close_step(self, events: list[Event]) -> None:
        self._close_text(events)
        if self._step_open:
            self._step_open = False
            events.append({"type": "STEP_FINISHED", "stepName": f"round {self.round}"})

    def _close_text(self, events: list[Event]) -> None:
        if self._text_open:
            self._text_open = False
            events.append({"type": "TEXT_MESSAGE_END", "messageId": self.reply_id})


def _approval_interrupt(call_id: str, call: ConversationMessage) -> Event:
    arguments = call.arguments or "{}"
    try:
        shown = orjson.dumps(orjson.loads(arguments)).decode()
    except orjson.JSONDecodeError:
        shown = arguments
    return {"id": call_id, "reason": "tool_approval", "toolCallId": call_id,
            "message": f"Run {call.name} with {shown}?", "responseSchema": APPROVAL_SCHEMA}
