"""Answering a run's interrupts: a run whose `resume` entries answer the approval interrupts that ended
the thread's previous run approves or denies those calls (the same answer as POST
/api/conversations/{cid}/messages/{callId}/approve or /deny), and shows the reply going on.

An entry `resolved` approves, unless its payload says otherwise: `false`, or `{"approved": false,
"reason"?: str}` denies (the reason is told to the model); `cancelled` denies. As AG-UI asks, a resume
answers every open interrupt of the run it resumes, each once: one left out, or one named twice, is a
422 naming it, and a call already answered a 409.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ag_ui.core import ResumeEntry

from streamchat.conversations.approvals import answer
from streamchat.conversations.messages import ConversationMessage
from streamchat.framework import Context, Item, Principal
from streamchat.protocols.ag_ui_input import invalid


@dataclass(frozen=True, slots=True)
class Resumed:
    """The reply that goes on, the round whose interrupts were answered, and the last call answered."""

    reply_id: str
    round: int
    last: Item[ConversationMessage]


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


async def answer_interrupts(ctx: Context, principal: Principal | None, thread_id: str,
                            entries: Sequence[tuple[int, ResumeEntry]]) -> Resumed:
    """Approve or deny each call the entries name (all the waiting calls of one round of one reply)."""
    items = await ctx.streams.conversation.get_group(thread_id)
    calls = {item.id: item for item in items if item.data.is_tool_call}
    answers: dict[str, tuple[bool, str | None]] = {}
    for index, entry in entries:
        where = f"resume[{index}].interruptId"
        call = calls.get(entry.interrupt_id)
        if call is None:
            raise invalid(where, f"{entry.interrupt_id!r}: thread {thread_id!r} has no such interrupt")
        if call.id in answers:
            raise invalid(where, f"{call.id!r} is answered twice")
        if call.data.status != "awaiting_approval":
            raise invalid(where, f"{call.id!r} was answered already: the call is {call.data.status}", status=409,
                          error="conflict")
        answers[call.id] = decision(entry, f"resume[{index}].payload")
    if not answers:
        raise invalid("resume", "answer the interrupts of the previous run (or leave resume out)")
    rounds = {(calls[call_id].data.parentId, calls[call_id].data.round or 0) for call_id in answers}
    if len(rounds) != 1:
        raise invalid("resume", "answer the interrupts of one run at a time")
    [(reply_id, round_number)] = rounds
    left = [item.id for item in calls.values() if item.data.parentId == reply_id
            and (item.data.round or 0) == round_number and item.data.status == "awaiting_approval"
            and item.id not in answers]
    if left:
        raise invalid("resume", f"interrupt(s) {', '.join(map(repr, left))} of the same run wait for an answer "
                      "too: a resume answers every one")
    last = None
    for call_id, (approve, reason) in answers.items():
        last = await answer(ctx, principal, thread_id, call_id, approve, reason)
    assert last is not None and reply_id is not None
    return Resumed(reply_id, round_number, last)
