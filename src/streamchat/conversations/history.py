"""What the model reads before it answers: the conversation's earlier turns within a budget."""

from __future__ import annotations

from collections.abc import Sequence

from streamchat.conversations.messages import ConversationMessage
from streamchat.framework import Item
from streamchat.llm import ChatTurn


def history(items: Sequence[Item[ConversationMessage]], until: str, budget: int) -> list[ChatTurn]:
    """Completed turns up to the item `until` (inclusive when it is a completed turn), newest kept first
    until `budget` characters are used. The newest turn (the user's question) is always kept.
    """
    earlier: list[ChatTurn] = []
    for item in items:
        if item.data.status == "completed" and item.data.message:
            earlier.append(ChatTurn("user" if item.data.sender == "user" else "assistant", item.data.message))
        if item.id == until:
            break
    kept: list[ChatTurn] = []
    used = 0
    for turn in reversed(earlier):
        if kept and used + len(turn.content) > budget:
            break
        kept.append(turn)
        used += len(turn.content)
    kept.reverse()
    return kept


def turn_before(items: Sequence[Item[ConversationMessage]], reply_id: str) -> str:
    """For events without userMessageId: the item just before the reply."""
    previous = reply_id
    for item in items:
        if item.id == reply_id:
            return previous
        previous = item.id
    return previous
