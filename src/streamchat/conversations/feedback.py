"""What a user thought of a reply (ChatKit's thumbs up or down): kept per conversation, by message.

The rating is the user's own note on a message, not part of what the model reads, so it is kept in
state beside the conversation (`feedback:<conversation>`, keyed by the reply's id: `{"kind", "at"}`,
the latest rating winning) rather than in the message item, whose every change each watcher gets.
It goes with the conversation when that is deleted (records.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from streamchat.conversations.messages import utc_now
from streamchat.conversations.records import FEEDBACK, scope_of
from streamchat.framework import State

Kind = Literal["positive", "negative"]


async def rate(state: State, conversation_id: str, message_ids: Iterable[str], kind: Kind) -> None:
    """Record `kind` as the rating of each message (the caller has checked they are the conversation's)."""
    at = utc_now()
    for message_id in dict.fromkeys(message_ids):
        await state.set(scope_of(FEEDBACK, conversation_id), message_id, {"kind": kind, "at": at})


async def ratings(state: State, conversation_id: str) -> dict[str, Kind]:
    """Every rated message of the conversation and its latest rating."""
    kept = await state.get_group(scope_of(FEEDBACK, conversation_id))
    return {message_id: record["kind"] for message_id, record in kept.items()
            if isinstance(record, dict) and record.get("kind") in ("positive", "negative")}
