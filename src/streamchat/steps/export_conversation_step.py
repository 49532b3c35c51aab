"""GET /api/conversations/{conversationId}/export: a conversation to keep or to move, as JSON or Markdown.

The JSON form is what POST /api/conversations/import takes back (see import_conversation_step.py);
the Markdown form is a transcript for people.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from streamchat.chat.messages import ID_PATTERN, ConversationMessage, utc_now
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody, Item
from streamchat.steps.get_conversation_step import read_conversation
from streamchat.steps.rename_conversation_step import TITLE_MAX

MESSAGES_MAX = 10_000


class ExportQuery(BaseModel):
    format: Literal["json", "markdown"] = Field(default="json", description="`json` (importable) or `markdown`.")


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

    @field_validator("messages")
    @classmethod
    def unique_ids(cls, messages: list[ExportedMessage]) -> list[ExportedMessage]:
        seen: set[str] = set()
        for message in messages:
            if message.id in seen:
                raise ValueError(f"message id {message.id!r} appears twice")
            seen.add(message.id)
        return messages


config = ApiConfig(
    name="ExportConversation",
    method="GET",
    path="/api/conversations/{conversationId}/export",
    query=ExportQuery,
    responses={200: ExportedConversation, 404: ErrorBody},
    text_responses={200: "text/markdown"},
    description="Download a conversation: `format=json` (what import takes) or `format=markdown` (a transcript).",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    cid = req.path_params["conversationId"]
    record, items = await read_conversation(ctx, cid, req.principal)
    title = record.title if record is not None else cid
    exported = {"format": "streamchat.conversation", "version": 1, "conversationId": cid, "title": title,
                "createdAt": None if record is None else record.created_at,
                "updatedAt": None if record is None else record.updated_at, "exportedAt": utc_now(),
                "messages": [{"id": item.id, **item.data.model_dump(mode="json", by_alias=True, exclude_none=True)}
                             for item in items]}
    name = f"conversation-{cid}"
    if req.query.format == "markdown":
        return ApiResponse(200, transcript(title, items), media_type="text/markdown",
                           headers={"Content-Disposition": f'attachment; filename="{name}.md"'})
    return ApiResponse(200, exported, headers={"Content-Disposition": f'attachment; filename="{name}.json"'})


def transcript(title: str, items: list[Item[ConversationMessage]]) -> str:
    """A readable Markdown transcript: the title, then each message under who said it and when."""
    parts = [f"# {' '.join(title.split())}\n"]
    for item in items:
        message = item.data
        heading = "User" if message.sender == "user" else "Assistant"
        notes = [message.timestamp]
        if message.usage is not None:
            notes.append(message.usage.model)
        if message.status not in ("completed", "created"):
            notes.append(message.status + (f": {message.error}" if message.error else ""))
        parts.append(f"## {heading}\n\n_{' · '.join(notes)}_\n\n{message.message.strip()}\n")
    return "\n".join(parts)
