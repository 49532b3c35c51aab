"""How a conversation is shown to clients: its record, its messages as items, the title rule."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from streamchat.conversations.messages import ConversationMessage
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
