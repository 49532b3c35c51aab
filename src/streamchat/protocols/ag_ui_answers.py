"""A run that goes on with a reply that waits: its `resume` entries answer the approval interrupts that
ended the previous run (the same answer as POST /api/conversations/{cid}/messages/{callId}/approve or
/deny), its `tool` messages give the results of front-end tool calls (as POST .../{callId}/result), and
the run shows the reply going on.

An entry `resolved` approves, unless its payload says otherwise: `false`, or `{"approved": false,
"reason"?: str}` denies (the reason is told to the model); `cancelled` denies. As AG-UI asks, a resume
answers every open interrupt of the run it resumes, each once: one left out, or one named twice, is a
422 naming it, and a call already answered a 409. Everything a request answers belongs to one model
round of one reply; all of it is checked before anything is answered.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from ag_ui.core import ResumeEntry

from streamchat.conversations.approvals import answer
from streamchat.conversations.client_results import give_result
from streamchat.conversations.messages import ConversationMessage
from streamchat.framework import Context, Item, Principal
from streamchat.protocols.ag_ui_input import GoingOn, ToolResult, invalid

#: The statuses of a call that waits for someone outside the server.
WAITING = ("awaiting_approval", "awaiting_result")


@dataclass(frozen=True, slots=True)
class Resumed:
    """The reply that goes on, the round answered, the last call answered, and the calls of that round
    that still wait (answered by a later run)."""

    reply_id: str
    round: int
    last: Item[ConversationMessage]
    pending: list[str]


def decision(entry: ResumeEntry, where: str) -> tuple[bool, str | None]:
    """(approve, reason) an entry gives; 422 naming `where` for a payload that says neither."""
    if entry.status == "cancelled":
        return False, None
    payload: Any = entry.payload
    if payload is None or isinstance(payload, bool):
        return payload is not False, None
    if isinstance(payload, dict) and isinstance(payload.get("approved"), bool) and set(payload) <= {
            "approved", "reason"}:
        reason = payload.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise invalid(f"{where}.reason", "a string, told to the model with the denial")
        return bool(payload["approved"]), reason
    raise invalid(where, 'an approval is answered with true, false or {"approved": bool, "reason"?: str}')


async def go_on(ctx: Context, principal: Principal | None, thread_id: str, asked: GoingOn) -> Resumed:
    """Approve or deny the calls the resume entries name and give the results the tool messages hold."""
    items = await ctx.streams.conversation.get_group(thread_id)
    calls = {item.id: item for item in items if item.data.is_tool_call}
    answers: dict[str, tuple[bool, str | None]] = {}
    for index, entry in asked.entries:
        call = _waiting(calls, entry.interrupt_id, f"resume[{index}].interruptId", "awaiting_approval", answers)
        answers[call.id] = decision(entry, f"resume[{index}].payload")
    results: dict[str, ToolResult] = {}
    for result in asked.results:
        call = _waiting(calls, result.call_id, result.where, "awaiting_result", results)
        results[call.id] = result
    named = [*answers, *results]
    rounds = {(calls[call_id].data.parentId, calls[call_id].data.round or 0) for call_id in named}
    if len(rounds) != 1:
        raise invalid("resume" if answers else "messages", "answer the calls of one run at a time")
    [(reply_id, round_number)] = rounds
    of_round = [item for item in calls.values() if item.data.parentId == reply_id
                and (item.data.round or 0) == round_number]
    left = [item.id for item in of_round if item.data.status == "awaiting_approval" and item.id not in answers]
    if answers and left:
        raise invalid("resume", f"interrupt(s) {', '.join(map(repr, left))} of the same run wait for an answer "
                      "too: a resume answers every one")
    last = None
    for call_id, (approve, reason) in answers.items():
        last = await answer(ctx, principal, thread_id, call_id, approve, reason)
    for call_id, result in results.items():
        last = await give_result(ctx, principal, thread_id, call_id, result.result)
    assert last is not None and reply_id is not None
    stream = ctx.streams.conversation
    pending = [item.id for item in of_round if (latest := await stream.get(thread_id, item.id)) is not None
               and latest.data.status in WAITING]
    return Resumed(reply_id, round_number, last, pending)


def _waiting(calls: dict[str, Item[ConversationMessage]], call_id: str, where: str, status: str,
             named: Collection[str]) -> Item[ConversationMessage]:
    """The call an answer names, if it waits for that answer: 422 naming `where` for no such call or one
    named twice, 409 for a call that does not wait (any more)."""
    call = calls.get(call_id)
    if call is None:
        raise invalid(where, f"{call_id!r}: the thread has no such tool call")
    if call.id in named:
        raise invalid(where, f"{call_id!r} is answered twice")
    if call.data.status != status:
        waits = "approval" if status == "awaiting_approval" else "a client's result"
        raise invalid(where, f"{call_id!r} does not wait for {waits}: the call is {call.data.status}", status=409,
                      error="conflict")
    return call
