"""A chat message as every part of streamchat sees it: the `conversation` stream's item, its
statuses, and the rules a message must meet whichever protocol brought it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

from streamchat.settings import get_settings

#: A message's statuses, and a tool call's (pending … denied): one item model for both, so every client
#: that watches a conversation sees its tool calls the way it sees its messages.
Status = Literal["created", "streaming", "completed", "error", "stopped",
                 "pending", "awaiting_approval", "awaiting_result", "running", "cancelled", "denied"]
Sender = Literal["user", "assistant", "tool"]
#: Why a reply ended: "length" when a token limit cut it, "stop" otherwise.
FinishReason = Literal["stop", "length"]
FINISHED: frozenset[str] = frozenset({"completed", "error", "stopped", "cancelled", "denied"})
#: What a conversation or message id may be, wherever a client chooses one.
ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"


def utc_now() -> str:
    """ISO-8601 UTC timestamp with milliseconds, e.g. 2026-11-25T08:00:00.000Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ReplyUsage(BaseModel):
    """What a reply cost, as its model counted it; on a reply once it has ended. Every field is
    always sent, null included (messages leave out their unset fields; usage does not)."""

    promptTokens: int | None = Field(default=None, description="Tokens the model read; null if the provider "
                                     "did not say.")
    completionTokens: int | None = Field(default=None, description="Tokens the model wrote; null if the "
                                         "provider did not say.")
    model: str
    timeToFirstTokenMs: int | None = Field(default=None, description="From the model call to the first text; "
                                           "null if none came.")
    durationMs: int = Field(description="From the model call to the reply's end.")

    @model_serializer(mode="plain")
    def every_field(self) -> dict[str, Any]:
        return {"promptTokens": self.promptTokens, "completionTokens": self.completionTokens, "model": self.model,
                "timeToFirstTokenMs": self.timeToFirstTokenMs, "durationMs": self.durationMs}


class ToolProgress(BaseModel):
    """How far a running tool call is, as its tool (or MCP server) last said."""

    progress: float
    total: float | None = None
    message: str | None = None


class ConversationMessage(BaseModel):
    """A chat message as clients see it; `from` is a Python keyword, hence the alias.

    A tool call is an item of its own (`from` "tool") whose parent is the reply that made it: its
    arguments grow while the model writes them, its status follows the call, and it ends with a
    `result` (or an `error`). `round` and `offset` place it in its reply: the model round that made
    it, and how much of the reply's text came before it."""

    model_config = ConfigDict(populate_by_name=True)

    message: str
    sender: Sender = Field(alias="from")
    status: Status
    timestamp: str
    error: str | None = None
    usage: ReplyUsage | None = None
    parentId: str | None = Field(default=None, description="The message this one follows (a reply: the user "
                                 "message it answers); null for a first message. Absent on messages kept by "
                                 "versions before the tree: each follows the one before it.")
    model: str | None = Field(default=None, description="A reply: the configured model writing it.")
    finishReason: FinishReason | None = Field(default=None, description="A reply that ended: `length` when a "
                                              "token limit cut it, else `stop`.")
    toolCallId: str | None = Field(default=None, description="A tool call: its id, as the model gave it.")
    name: str | None = Field(default=None, description="A tool call: the tool's name.")
    arguments: str | None = Field(default=None, description="A tool call: its arguments as JSON text (growing "
                                  "while the model writes them).")
    result: Any = Field(default=None, description="A completed tool call: what the tool returned (JSON).")
    progress: ToolProgress | None = Field(default=None, description="A running tool call: how far it is.")
    runsIn: Literal["client"] | None = Field(default=None, description="A tool call of a tool that runs in the "
                                             "client (its result comes from there); absent: it runs here.")
    round: int | None = Field(default=None, ge=0, description="A tool call: the model round of its reply that "
                              "made it (0 first).")
    offset: int | None = Field(default=None, ge=0, description="A tool call: how many characters of its reply's "
                               "text came before it.")

    @field_validator("timestamp")
    @classmethod
    def _iso8601(cls, value: str) -> str:
        datetime.fromisoformat(value)
        return value

    @property
    def is_tool_call(self) -> bool:
        return self.sender == "tool"

    @property
    def parent_recorded(self) -> bool:
        """Whether this message names its parent (null included), as every message written since the tree does."""
        return "parentId" in self.model_fields_set


class MessageItem(ConversationMessage):
    """A message as the HTTP API returns it: the stream item's data plus its id and seq (for the schema)."""

    id: str
    seq: int


class TreeMessageItem(MessageItem):
    """A message of a conversation as GET returns it: also where it sits among its siblings."""

    siblings: list[str] = Field(description="The ids of the messages with the same parent, in creation order, "
                                "this one included.")
    siblingIndex: int = Field(description="This message's index in `siblings`.")


def checked_message(value: str) -> str:
    """A user message as every protocol takes it: not blank, within STREAMCHAT_MAX_MESSAGE_CHARS."""
    if not value.strip():
        raise ValueError("message must not be blank")
    limit = get_settings().max_message_chars
    if len(value) > limit:
        raise ValueError(f"message is {len(value)} characters; the limit is {limit}")
    return value
