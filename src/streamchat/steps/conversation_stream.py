"""The `conversation` stream: one group per conversation, one item per message (conversations/messages.py),
every branch of its tree in the one group; a switch of the active branch is its `active-branch` event."""

from __future__ import annotations

from streamchat.conversations.branches import ACTIVE_BRANCH
from streamchat.conversations.messages import ConversationMessage
from streamchat.conversations.ownership import can_watch
from streamchat.framework import StreamConfig

config = StreamConfig(name="conversation", schema=ConversationMessage, can_access=can_watch,
                      summary=("status", "from"), sticky_events=(ACTIVE_BRANCH,), kept_nulls=("parentId",))
