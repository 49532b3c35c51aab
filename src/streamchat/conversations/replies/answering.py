"""The reply a conversation is answering, for STREAMCHAT_BUSY_MODE=reject: one at a time.

Taken atomically in state, so of two messages sent to an idle conversation at the same instant
exactly one passes; the AI step frees it when the reply ends, whatever the ending. An entry older
than reply_quota.STALE_SECONDS (its instance died before the reply ended) no longer counts.
"""

from __future__ import annotations

import time

from streamchat.conversations.records import ANSWERING, scope_of
from streamchat.conversations.replies.quota import STALE_SECONDS
from streamchat.framework import Context


async def take(ctx: Context, conversation_id: str, reply_id: str) -> bool:
    """True if the conversation was answering nothing and now answers `reply_id`."""
    now = time.time()
    return await ctx.state.reserve(scope_of(ANSWERING, conversation_id), reply_id, {"at": now}, 1,
                                   fresh_since=now - STALE_SECONDS)


async def free(ctx: Context, conversation_id: str, reply_id: str) -> None:
    await ctx.state.delete(scope_of(ANSWERING, conversation_id), reply_id)
