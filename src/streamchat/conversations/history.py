"""What the model reads before it answers: the branch being answered, within a budget."""

from __future__ import annotations

from collections.abc import Sequence

from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.tool_calls import calls_by_reply, reply_turns, turns_size
from streamchat.conversations.tree import Tree
from streamchat.framework import Item
from streamchat.llm import ChatTurn


def history(items: Sequence[Item[ConversationMessage]], tree: Tree, until: str, budget: int) -> list[ChatTurn]:
    """The completed turns of the branch from its root to `until` (the user message being answered)
    and nothing else, newest kept first until `budget` characters are used. The newest turn (the
    user's question) is always kept. A reply that called tools is its text, its calls and their
    outcomes, kept or left out as a whole (a call without its result would be refused)."""
    by_id = {item.id: item for item in items}
    calls = calls_by_reply(items)
    earlier: list[list[ChatTurn]] = []
    for message_id in tree.path_to(until):
        message = by_id[message_id].data
        if message.status != "completed":
            continue
        if message.sender == "user":
            if message.message:
                earlier.append([ChatTurn("user", message.message)])
        elif message_id in calls:
            earlier.append(reply_turns(message, calls[message_id]))
        elif message.message:
            earlier.append([ChatTurn("assistant", message.message)])
    kept: list[list[ChatTurn]] = []
    used = 0
    for turns in reversed(earlier):
        size = turns_size(turns)
        if kept and used + size > budget:
            break
        kept.append(turns)
        used += size
    kept.reverse()
    return [turn for turns in kept for turn in turns]
