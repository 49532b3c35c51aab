"""The `conversation` stream: one group per conversation, one item per message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streamchat.chat.ownership import can_watch
from streamchat.framework import StreamConfig

Status = Literal["created", "streaming", "completed", "error", "stopped"]
FINISHED: frozenset[str] = frozenset({"completed", "error", "stopped"})


def utc_now() -> str:
    """ISO-8601 UTC timestamp with milliseconds, e.g. 2026-11-25T08:00:00.000Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ConversationMessage(BaseModel):
    """A chat message as clients see it; `from` is a Python keyword, hence the alias."""

    model_config = ConfigDict(populate_by_name=True)

    message: str
    sender: Literal["user", "assistant"] = Field(alias="from")
    status: Status
    timestamp: str
    error: str | None = None

    @field_validator("timestamp")
    @classmethod
    def _iso8601(cls, value: str) -> str:
        datetime.fromisoformat(value)
        return value


class MessageItem(ConversationMessage):
    """A message as the HTTP API returns it: the stream item's data plus its id and seq (for the schema)."""

    id: str
    seq: int


config = StreamConfig(name="conversation", schema=ConversationMessage, can_access=can_watch)
