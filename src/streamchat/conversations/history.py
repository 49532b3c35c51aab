"""What the model reads before it answers: the branch being answered, within a budget."""

from __future__ import annotations

from collections.abc import Sequence

from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.tree import Tree
from streamchat.framework import Item
from streamchat.llm import ChatTurn


def history(items: Sequence[Item[ConversationMessage]], tree: Tree, until: str, budget: int) -> list[ChatTurn]:
    """The completed turns of the branch from its root to `until` (the user message being answered)
    and nothing else, newest kept first until `budget` characters are used. The newest turn (the
    user's question) is always kept."""
    by_id = {item.id: item for item in items}
    earlier = [ChatTurn("user" if message.sender == "user" else "assistant", message.message)
               for message in (by_id[message_id].data for message_id in tree.path_to(until))
               if message.status == "completed" and message.message]
    kept: list[ChatTurn] = []
    used = 0
    for turn in reversed(earlier):
        if kept and used + len(turn.content) > budget:
            break
        kept.append(turn)
        used += len(turn.content)
    kept.reverse()
    return kept
