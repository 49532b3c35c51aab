"""The `conversation` stream: one group per conversation, one item per message (chat/messages.py)."""

from __future__ import annotations

from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.ownership import can_watch
from streamchat.framework import StreamConfig

config = StreamConfig(name="conversation", schema=ConversationMessage, can_access=can_watch,
                      summary=("status", "from"))
