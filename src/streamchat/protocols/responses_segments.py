"""Which part of a reply a Responses API response is, and finding it by its id.

A reply is one assistant message across its model rounds; a response is a stretch of it. The reply's
own id names the first stretch, from its beginning. OpenAI ends a response that asks the user to
approve a tool call (status `completed`, with the `mcp_approval_request` items), or that calls the
client's functions (with the `function_call` items), and goes on in a new response created with the
answers (`mcp_approval_response`, `function_call_output`); so here a round whose calls waited for
the client ends its stretch, and the reply goes on in the next one, `<reply>.a<round>`: the calls that
waited for approval (now as `mcp_call` items with their outcome; the function calls' outputs are that
response's input, not its output), then the next rounds, up to the next round that waits or the
reply's end. That id is fixed by the reply, so the same stretch has the same id on every instance,
whether the client answered through the Responses API or another way.

Whether a call waited for the client is kept by the wait itself: a call waits as `awaiting_approval`
or `awaiting_result`, and answering it (approve, deny, a result, or the stop that ends it) takes its
one answer claim first (replies/waiting.py), so a call that has moved on still tells.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.ownership import owns
from streamchat.conversations.records import TOOL_CALLS, scope_of
from streamchat.conversations.replies.index import locate
from streamchat.conversations.replies.waiting import waited_for_client
from streamchat.conversations.tool_calls import calls_of
from streamchat.framework import Context, Item, Principal
from streamchat.protocols.openai_errors import not_found

_CONTINUATION = re.compile(r"^(?P<reply>.+)\.a(?P<round>\d+)$")


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of a reply: from its beginning (`after_round` None), or after round `after_round`'s
    approval requests."""

    reply_id: str
    after_round: int | None = None

    @property
    def response_id(self) -> str:
        return self.reply_id if self.after_round is None else f"{self.reply_id}.a{self.after_round}"


def parse_continuation(response_id: str) -> Segment | None:
    found = _CONTINUATION.match(response_id)
    return None if found is None else Segment(found["reply"], int(found["round"]))


async def waiting_rounds(ctx: Context, cid: str, calls: Iterable[Item[ConversationMessage]]) -> list[int]:
    """The rounds of a reply whose calls waited for the client, in order: where its stretches end."""
    rounds: set[int] = set()
    for call in calls:
        number = call.data.round or 0
        if number not in rounds and await waited_for_client(ctx, cid, call.id, call.data):
            rounds.add(number)
    return sorted(rounds)


def _record_key(response_id: str) -> str:
    return f"response:{response_id}"


async def remember_continuation(ctx: Context, cid: str, segment: Segment, details: Mapping[str, Any]) -> None:
    """What the request that continued the reply asked for (kept with the conversation's tool records,
    so deleting the conversation deletes it)."""
    await ctx.state.set(scope_of(TOOL_CALLS, cid), _record_key(segment.response_id), dict(details))


@dataclass(frozen=True, slots=True)
class ResponseTarget:
    """A response found: its conversation, which stretch of which reply, and what its request kept."""

    conversation_id: str
    segment: Segment
    details: Mapping[str, Any]
    reply: Item[ConversationMessage]

    @property
    def response_id(self) -> str:
        return self.segment.response_id


async def find_response(ctx: Context, response_id: str, principal: Principal | None,
                        param: str = "id") -> ResponseTarget:
    """The response an id names, if the caller may see it; else 404 in OpenAI's shape naming `param`."""
    segment = Segment(response_id)
    record = await locate(ctx.state, response_id)
    if record is None and (continuation := parse_continuation(response_id)) is not None:
        segment = continuation
        record = await locate(ctx.state, segment.reply_id)
    if record is not None and await owns(ctx.state, record.conversation_id, principal):
        cid = record.conversation_id
        reply = await ctx.streams.conversation.get(cid, segment.reply_id)
        if reply is not None:
            if segment.after_round is None:
                return ResponseTarget(cid, segment, record.details, reply)
            details = await _continuation_details(ctx, cid, segment, record.details)
            if details is not None:
                return ResponseTarget(cid, segment, details, reply)
    raise not_found(param, response_id, "response")


async def _continuation_details(ctx: Context, cid: str, segment: Segment,
                                reply_details: Mapping[str, Any]) -> dict[str, Any] | None:
    """A continuation's details (those its request kept, else the reply's with the stretch before it as
    the previous response); None when the reply has no such stretch (that round did not wait)."""
    calls = calls_of(await ctx.streams.conversation.get_group(cid), segment.reply_id)
    rounds = await waiting_rounds(ctx, cid, calls)
    if segment.after_round not in rounds:
        return None
    kept = await ctx.state.get(scope_of(TOOL_CALLS, cid), _record_key(segment.response_id))
    if isinstance(kept, dict):
        return kept
    earlier = [number for number in rounds if number < (segment.after_round or 0)]
    before = Segment(segment.reply_id, earlier[-1] if earlier else None)
    return {**reply_details, "createdAt": None, "previousResponseId": before.response_id}
