"""Taking back what a failed request stored, so an error answer leaves nothing of it behind."""

from __future__ import annotations

from streamchat.framework import Context


async def take_back(ctx: Context, conversation_id: str, item_ids: list[str]) -> None:
    """Delete items a failed request stored (deleting takes no new room); what cannot be deleted stays."""
    for item_id in reversed(item_ids):
        try:
            await ctx.streams.conversation.delete(conversation_id, item_id)
        except Exception:
            ctx.logger.exception("could not take back a stored message", extra={"messageId": item_id})
