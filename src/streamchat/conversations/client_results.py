"""A client's result for a call of a tool that runs in the client: the call ends with it and the reply
goes on (its next model round, in the same message).

Like an approval, the waiting call is only an item, so the result can come much later, after a
restart, on any instance, through any protocol (this route, an AG-UI `tool` message, a ChatKit
client tool output, an OpenAI `function_call_output`, the AI SDK's next request). One result per
call: a second one, or one for a call that is not waiting for it, is a 409.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.ownership import owns, require_owner
from streamchat.conversations.replies.index import locate
from streamchat.conversations.replies.waiting import answer_key, claim, go_on
from streamchat.conversations.tool_calls import reply_of_call
from streamchat.framework import Context, HttpError, Item, Principal


class ClientResult(BaseModel):
    """What the client's run of the tool gave: `output` (any JSON) or `error` (why it failed)."""

    model_config = ConfigDict(extra="forbid")

    output: JsonValue = Field(default=None, description="The tool's result, any JSON; told to the model.")
    error: str | None = Field(default=None, min_length=1, max_length=10_000,
                              description="Why the tool failed in the client; told to the model.")

    @model_validator(mode="after")
    def _one_of_them(self) -> ClientResult:
        given = {"output", "error"} & self.model_fields_set
        if len(given) != 1:
            raise ValueError("give exactly one of `output` and `error`")
        if "error" in given and self.error is None:
            raise ValueError("error: must be a string saying why the tool failed")
        return self

    def outcome(self) -> dict[str, Any]:
        if "error" in self.model_fields_set:
            return {"status": "error", "error": self.error}
        return {"status": "completed", "result": self.output}


async def give_result(ctx: Context, principal: Principal | None, cid: str, call_id: str,
                      result: ClientResult) -> Item[ConversationMessage]:
    """End the waiting call `call_id` with the client's result and let the reply go on; the item."""
    await require_owner(ctx, cid, principal)
    stream = ctx.streams.conversation
    call = await stream.get(cid, call_id)
    if call is None or not call.data.is_tool_call:
        raise HttpError(404, "not_found", f"messageId {call_id!r}: no such tool call in conversation {cid!r}")
    if call.data.status != "awaiting_result" or not await claim(ctx, cid, answer_key(call_id)):
        latest = await stream.get(cid, call_id) or call
        raise HttpError(409, "conflict", f"messageId {call_id!r}: the call is {latest.data.status}, "
                                         "not awaiting a client's result")
    await stream.set(cid, call_id, call.data.model_copy(update=result.outcome()))
    await go_on(ctx, cid, call.data.parentId or "", call.data.round or 0)
    ctx.logger.info("client tool result", extra={"conversationId": cid, "callId": call_id,
                                                 "status": result.outcome()["status"]})
    return await stream.get(cid, call_id) or call


async def find_call(ctx: Context, principal: Principal | None,
                    call_id: str) -> tuple[str, Item[ConversationMessage]] | None:
    """A tool call found by its item id alone, as the protocols that name no conversation send it back
    (a Chat Completions `tool_call_id`, a Responses `call_id`): its conversation and item. None when
    there is no such call or it is another key's (the caller says 404 either way)."""
    reply_id = reply_of_call(call_id)
    record = None if reply_id is None else await locate(ctx.state, reply_id)
    if record is None or not await owns(ctx.state, record.conversation_id, principal):
        return None
    call = await ctx.streams.conversation.get(record.conversation_id, call_id)
    if call is None or not call.data.is_tool_call or call.data.parentId != reply_id:
        return None
    return record.conversation_id, call
