"""Answering what a Responses API response waits for: a request whose input holds
`mcp_approval_response` items approves or denies calls (as POST /api/conversations/{cid}/messages/
{callId}/approve or /deny do), and one holding `function_call_output` items gives the client's
results of its function calls (as POST …/messages/{callId}/result does); its response is the reply's
next stretch, `<reply>.a<round>` (responses_segments.py).

A round's calls go on together, so the request answers every call of the round that still waits,
approvals and function calls alike (one left out is a 400 naming it, rather than a reply that waits
while its response shows nothing), as OpenAI asks for every function call's output at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamchat.conversations.approvals import answer
from streamchat.conversations.client_results import ClientResult, give_result
from streamchat.conversations.replies.waiting import WAITING
from streamchat.conversations.tool_calls import calls_of
from streamchat.framework import Context, Principal
from streamchat.protocols.openai_errors import invalid
from streamchat.protocols.openai_input import ApprovalAnswer, FunctionOutput, output_value
from streamchat.protocols.responses_segments import ResponseTarget, Segment


async def answer_requests(ctx: Context, principal: Principal | None, previous: ResponseTarget,
                          answers: Sequence[tuple[int, ApprovalAnswer]],
                          outputs: Sequence[tuple[int, FunctionOutput]] = (), field: str = "input") -> Segment:
    """Approve or deny each call the answers name, and give each function call named its output (all
    of one round of the previous response's reply); the stretch of the reply that goes on after it."""
    cid, reply_id = previous.conversation_id, previous.segment.reply_id
    calls = {call.id: call for call in calls_of(await ctx.streams.conversation.get_group(cid), reply_id)}
    answered: set[str] = set()
    rounds: set[int] = set()
    named = [(index, given.approval_request_id, "approval request", "awaiting_approval", "approval_request_id")
             for index, given in answers]
    named += [(index, given.call_id, "function call", "awaiting_result", "call_id") for index, given in outputs]
    for index, call_id, what, waiting, key in sorted(named):
        where = f"{field}[{index}].{key}"
        call = calls.get(call_id)
        if call is None:
            raise invalid(where, f"response {previous.response_id!r} has no {what} {call_id!r}")
        if call.id in answered:
            raise invalid(where, f"{what} {call.id!r} is answered twice")
        if call.data.status != waiting:
            code = "approval_already_answered" if waiting == "awaiting_approval" else "function_call_already_answered"
            raise invalid(where, f"{what} {call.id!r} is not waiting for this answer: the call is "
                          f"{call.data.status}", status=409, code=code)
        answered.add(call.id)
        rounds.add(call.data.round or 0)
    if len(rounds) != 1:
        raise invalid(field, "answer what one response waits for at a time")
    [round_number] = rounds
    left = [call.id for call in calls.values() if (call.data.round or 0) == round_number
            and call.data.status in WAITING and call.id not in answered]
    if left:
        raise invalid(field, f"the call(s) {', '.join(map(repr, left))} of the same response wait for an answer "
                      "too (an mcp_approval_response or a function_call_output): answer every one in the same request")
    results = [(given.call_id, ClientResult(output=output_value(given.output, f"{field}[{index}].output")))
               for index, given in outputs]
    for _, given in answers:
        await answer(ctx, principal, cid, given.approval_request_id, given.approve, given.reason)
    for call_id, result in results:
        await give_result(ctx, principal, cid, call_id, result)
    return Segment(reply_id, round_number)
