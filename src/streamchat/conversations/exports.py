"""A conversation as a file to keep or to move: the JSON form import takes back, and a Markdown transcript."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import orjson
from pydantic import BaseModel, Field, field_validator, model_validator

from streamchat.conversations.messages import FINISHED, ID_PATTERN, ConversationMessage
from streamchat.conversations.public import TITLE_MAX
from streamchat.framework import Item

MESSAGES_MAX = 10_000


class ExportedMessage(ConversationMessage):
    id: str = Field(min_length=1, max_length=200, pattern=ID_PATTERN)


class ExportedConversation(BaseModel):
    format: Literal["streamchat.conversation"] = "streamchat.conversation"
    version: Literal[1] = 1
    conversationId: str | None = Field(default=None, min_length=1, max_length=200, pattern=ID_PATTERN,
                                       description="Kept on import when no conversation has it.")
    title: str = Field(min_length=1, max_length=TITLE_MAX)
    createdAt: str | None = None
    updatedAt: str | None = None
    exportedAt: str | None = None
    messages: list[ExportedMessage] = Field(max_length=MESSAGES_MAX)
    activeMessageId: str | None = Field(default=None, description="The active branch's leaf; absent: the last "
                                        "message.")

    @field_validator("messages")
    @classmethod
    def unique_ids(cls, messages: list[ExportedMessage]) -> list[ExportedMessage]:
        seen: set[str] = set()
        for message in messages:
            if message.id in seen:
                raise ValueError(f"message id {message.id!r} appears twice")
            seen.add(message.id)
        return messages

    @model_validator(mode="after")
    def _tree_closed(self) -> ExportedConversation:
        """Every parent and the active leaf name a message given before (parents come first)."""
        seen: set[str] = set()
        for message in self.messages:
            if message.parentId is not None and message.parentId not in seen:
                raise ValueError(f"messages: {message.id!r} names parentId {message.parentId!r}, which is not "
                                 "a message before it")
            seen.add(message.id)
        if self.activeMessageId is not None and self.activeMessageId not in seen:
            raise ValueError(f"activeMessageId: {self.activeMessageId!r} is not one of the messages")
        return self


def as_stored(message: ExportedMessage) -> ConversationMessage:
    """An exported message as it is stored again: one still running when exported comes back
    `stopped` (nothing will finish it)."""
    # Only the fields the export gave: one without parentId (an export made before the tree) stays such.
    data = ConversationMessage.model_validate(message.model_dump(exclude={"id"}, exclude_unset=True))
    if data.status in FINISHED:
        return data
    if data.sender == "user":
        return data.model_copy(update={"status": "completed"})
    return data.model_copy(update={"status": "cancelled" if data.is_tool_call else "stopped"})


def transcript(title: str, items: Sequence[Item[ConversationMessage]]) -> str:
    """A readable Markdown transcript: the title, then each message under who said it and when."""
    parts = [f"# {' '.join(title.split())}\n"]
    for item in items:
        message = item.data
        if message.is_tool_call:
            parts.append(_call_transcript(message))
            continue
        heading = "User" if message.sender == "user" else "Assistant"
        notes = [message.timestamp]
        if message.usage is not None:
            notes.append(message.usage.model)
        if message.status not in ("completed", "created"):
            notes.append(message.status + (f": {message.error}" if message.error else ""))
        parts.append(f"## {heading}\n\n_{' · '.join(notes)}_\n\n{message.message.strip()}\n")
    return "\n".join(parts)


def _call_transcript(call: ConversationMessage) -> str:
    """A tool call under its reply: the tool, how it ended, its arguments and its result or error."""
    outcome = (f"```json\n{orjson.dumps(call.result, option=orjson.OPT_INDENT_2).decode()}\n```"
               if call.status == "completed" else f"_{call.error or call.status}_")
    return (f"### Tool call `{call.name}` ({call.status})\n\n```json\n{call.arguments or ''}\n```\n\n"
            f"{outcome}\n")
