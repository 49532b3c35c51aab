"""How many replies one API key may have running at once (STREAMCHAT_MAX_CONCURRENT_REPLIES).

A reply counts from the POST that asks for it until the AI step ends it, whatever the ending.
Kept in state by key id, so every instance sees the same count, and reserved atomically, so a
burst of requests never gets more than the limit; an entry older than STALE_SECONDS (a reply
whose instance died) no longer counts.
"""

from __future__ import annotations

import time

from streamchat.conversations.records import RUNNING_REPLIES, scope_of
from streamchat.framework import Context, HttpError, Principal

STALE_SECONDS = 15 * 60
RETRY_AFTER_SECONDS = 5


async def reserve(ctx: Context, principal: Principal | None, reply_id: str, limit: int) -> None:
    """Count a new reply against the caller's limit; 429 when it is reached (nothing is stored then)."""
    if principal is None or limit <= 0:
        return
    now = time.time()
    if not await ctx.state.reserve(scope_of(RUNNING_REPLIES, principal.key_id), reply_id, {"at": now}, limit,
                                   fresh_since=now - STALE_SECONDS):
        raise HttpError(429, "too_many_replies",
                        f"{limit} replies of this API key are still running (the limit); "
                        "wait for one to finish or stop one", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


async def release(ctx: Context, key_id: str | None, reply_id: str) -> None:
    if key_id is not None:
        await ctx.state.delete(scope_of(RUNNING_REPLIES, key_id), reply_id)
