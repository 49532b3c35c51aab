"""A Chat Completions request that gives the outputs of the function calls a completion handed to
the client: its messages end with the assistant message that made the calls and one `tool` message
per call (`tool_call_id`, the output as `content`).

Chat Completions has no ids for a conversation or a reply: the client sends its whole history each
time. A `tool_call_id` is the call's item id in the conversation (`<reply>.t<round>.<n>`), so it
finds the reply that waits (its conversation through the reply index, the caller's own or a 404),
the outputs end its calls (as POST …/messages/{callId}/result would) and the completion is the
reply's stretch after that round. The history before them is the server's already and is not read.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamchat.conversations.client_results import ClientResult, find_call, give_result
from streamchat.conversations.tool_calls import calls_of
from streamchat.framework import Context, Principal
from streamchat.protocols.openai_chat_completions import CompletionStretch
from streamchat.protocols.openai_errors import invalid, not_found
from streamchat.protocols.openai_input import InputMessage, output_value


async def give_tool_outputs(ctx: Context, principal: Principal | None, messages: Sequence[InputMessage],
                            model: str) -> CompletionStretch:
    """Give each trailing `tool` message's output to its call; the stretch of the reply after them."""
    first = len(messages)
    while first > 0 and messages[first - 1].role == "tool":
        first -= 1
    given = list(enumerate(messages))[first:]
    for index, message in given:
        if not message.tool_call_id:
            raise invalid(f"messages[{index}].tool_call_id", "required: the id of the tool call it answers")
    index, message = given[0]
    found = await find_call(ctx, principal, message.tool_call_id or "")
    if found is None or found[1].data.parentId is None:
        raise not_found(f"messages[{index}].tool_call_id", message.tool_call_id or "", "tool call")
    cid, call = found
    reply_id, round_number = found[1].data.parentId, call.data.round or 0
    group = await ctx.streams.conversation.get_group(cid)
    reply = next((item.data for item in group if item.id == reply_id), None)
    if reply is not None and reply.model is not None and model != reply.model:
        raise invalid("model", f"the reply goes on with the model it began with, {reply.model!r}")
    calls = {item.id: item for item in calls_of(group, reply_id)}
    results: dict[str, ClientResult] = {}
    for index, message in given:
        where = f"messages[{index}].tool_call_id"
        answered = calls.get(message.tool_call_id or "")
        if answered is None or (answered.data.round or 0) != round_number:
            raise invalid(where, f"{message.tool_call_id!r} is not a call of the same completion as "
                          f"{call.id!r}: answer the calls of one completion at a time")
        if answered.id in results:
            raise invalid(where, f"tool call {answered.id!r} is answered twice")
        if answered.data.status != "awaiting_result":
            raise invalid(where, f"tool call {answered.id!r} is not waiting for an output: the call is "
                          f"{answered.data.status}", status=409, code="tool_call_already_answered")
        results[answered.id] = ClientResult(output=output_value(message.content or "", f"messages[{index}].content"))
    left = [item.id for item in calls.values() if (item.data.round or 0) == round_number
            and item.data.status == "awaiting_result" and item.id not in results]
    if left:
        raise invalid("messages", f"the tool call(s) {', '.join(map(repr, left))} wait for their output too: "
                      "send a tool message for each")
    for call_id, result in results.items():
        await give_result(ctx, principal, cid, call_id, result)
    return CompletionStretch(cid, reply_id, round_number)
