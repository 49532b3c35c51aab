"""How a conversation is shown to clients: its record, its messages as items, the title rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.tree import Tree
from streamchat.framework import Item

#: A title a user gives is at most this many characters (one made from a first message is shorter).
TITLE_MAX = 200


class ConversationRecord(BaseModel):
    conversationId: str
    title: str
    createdAt: str
    updatedAt: str


def message_json(item: Item[ConversationMessage]) -> dict[str, Any]:
    """A message as the HTTP API returns it: the item's data (unset fields left out), its id and seq."""
    return {**item.data.model_dump(mode="json", by_alias=True, exclude_none=True), "id": item.id, "seq": item.seq}


def tree_message_json(item: Item[ConversationMessage], tree: Tree,
                      calls: Mapping[str, Sequence[Item[ConversationMessage]]]) -> dict[str, Any]:
    """A message with its place in the tree: its parent (as the tree reads it, also for a message kept
    before the tree), the ids of its siblings in creation order (itself included) and its index there.
    A tool call's siblings are the calls its reply made (`calls`: each reply's, tool_calls.calls_by_reply)."""
    if item.data.is_tool_call:
        fellows = [call.id for call in calls.get(item.data.parentId or "", ())]
        return {**message_json(item), "siblings": fellows, "siblingIndex": fellows.index(item.id)}
    return {**message_json(item), "parentId": tree.parent(item.id), "siblings": list(tree.siblings(item.id)),
            "siblingIndex": tree.sibling_index(item.id)}
