"""What the use cases answer, whichever protocol asked."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class Sent:
    conversation_id: str
    user_message_id: str
    assistant_message_id: str


class Regenerated(BaseModel):
    conversationId: str
    assistantMessageId: str
    userMessageId: str


class Edited(BaseModel):
    conversationId: str
    userMessageId: str
    assistantMessageId: str


class ActiveBranchView(BaseModel):
    activeMessageId: str
    path: list[str]
