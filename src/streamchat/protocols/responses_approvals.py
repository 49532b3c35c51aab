"""Answering approval requests through the Responses API: a request with `previous_response_id` and
`mcp_approval_response` input items approves or denies the calls (the same answer as
POST /api/conversations/{cid}/messages/{callId}/approve or /deny), and its response is the reply's
next stretch, `<reply>.a<round>` (responses_segments.py).

A round's calls go on together, so the request answers every call of the round that still waits
(one left out is a 400 naming it, rather than a reply that waits while its response shows nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

from streamchat.conversations.approvals import answer
from streamchat.conversations.tool_calls import calls_of
from streamchat.framework import Context, Principal
from streamchat.protocols.openai_errors import invalid
from streamchat.protocols.openai_input import ApprovalAnswer
from streamchat.protocols.responses_segments import ResponseTarget, Segment


async def answer_requests(ctx: Context, principal: Principal | None, previous: ResponseTarget,
                          answers: Sequence[tuple[int, ApprovalAnswer]], field: str = "input") -> Segment:
    """Approve or deny each call the answers name (all of one round of the previous response's reply);
    the stretch of the reply that goes on after that round."""
    cid, reply_id = previous.conversation_id, previous.segment.reply_id
    calls = {call.id: call for call in calls_of(await ctx.streams.conversation.get_group(cid), reply_id)}
    answered: set[str] = set()
    rounds: set[int] = set()
    for index, given in answers:
        where = f"{field}[{index}].approval_request_id"
        call = calls.get(given.approval_request_id)
        if call is None:
            raise invalid(where, f"response {previous.response_id!r} has no approval request "
                          f"{given.approval_request_id!r}")
        if call.id in answered:
            raise invalid(where, f"approval request {call.id!r} is answered twice")
        if call.data.status != "awaiting_approval":
            raise invalid(where, f"approval request {call.id!r} was answered already: the call is "
                          f"{call.data.status}", status=409, code="approval_already_answered")
        answered.add(call.id)
        rounds.add(call.data.round or 0)
    if len(rounds) != 1:
        raise invalid(field, "answer the approval requests of one response at a time")
    [round_number] = rounds
    left = [call.id for call in calls.values() if (call.data.round or 0) == round_number
            and call.data.status == "awaiting_approval" and call.id not in answered]
    if left:
        raise invalid(field, f"approval request(s) {', '.join(map(repr, left))} of the same response wait for an "
                      "answer too: answer every one in the same request")
    for _, given in answers:
        await answer(ctx, principal, cid, given.approval_request_id, given.approve, given.reason)
    return Segment(reply_id, round_number)
