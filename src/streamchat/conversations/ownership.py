"""Who a conversation belongs to: the API key that first used its id (a POST, or watching it).

Only in force when the service runs with API keys; open, every caller may see everything. Another
key is told the conversation does not exist (404, or STREAM_ACCESS_DENIED on a socket), so its
existence does not leak. Owners are stored by key id, never by key.
"""

from __future__ import annotations

from streamchat.conversations.records import OWNERS
from streamchat.framework import AccessRequest, Context, HttpError, Principal, State


async def owner(state: State, conversation_id: str) -> str | None:
    record = await state.get(OWNERS, conversation_id)
    return None if record is None else str(record["keyId"])


async def claim(state: State, conversation_id: str, principal: Principal | None) -> bool:
    """True if the caller owns the conversation, taking it when nobody does yet."""
    if principal is None:
        return True
    current = await owner(state, conversation_id)  # the usual case, a read: an owned conversation
    if current is None:
        current = str((await state.claim(OWNERS, conversation_id, {"keyId": principal.key_id}))["keyId"])
    return current == principal.key_id


async def owns(state: State, conversation_id: str, principal: Principal | None) -> bool:
    """True if the caller owns the conversation (never takes one)."""
    return principal is None or await owner(state, conversation_id) == principal.key_id


async def require_owner(ctx: Context, conversation_id: str, principal: Principal | None) -> None:
    """404 for a conversation that is someone else's, exactly as for one that does not exist."""
    if not await owns(ctx.state, conversation_id, principal):
        raise HttpError(404, "not_found", f"conversationId {conversation_id!r}: no such conversation")


async def can_watch(request: AccessRequest) -> bool:
    """The `conversation` stream's access rule: watching an unused id takes it (clients may join first)."""
    return await claim(request.state, request.group_id, request.principal)
