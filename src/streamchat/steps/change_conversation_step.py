"""PATCH /api/conversations/{conversationId}: rename a conversation and/or change its settings."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from streamchat.conversations.chat_settings import FIELDS, ChatSettings, given
from streamchat.conversations.public import TITLE_MAX, ConversationRecord
from streamchat.conversations.service import Conversations
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody

#: Stands in for a title when a request gives nothing to change, so the refusal names `title`.
NOTHING_GIVEN = "\x00nothing given"


class ChangeRequest(ChatSettings):
    title: str | None = Field(default=None, min_length=1, max_length=TITLE_MAX,
                              description="The new title, 1 to 200 characters.")

    @model_validator(mode="before")
    @classmethod
    def _something(cls, data: Any) -> Any:
        if isinstance(data, dict) and not any(name in data for name in ("title", *FIELDS)):
            return {**data, "title": NOTHING_GIVEN}
        return data

    @field_validator("title")
    @classmethod
    def not_blank(cls, title: str | None) -> str | None:
        if title == NOTHING_GIVEN:
            raise ValueError(f"give a title, or one of the settings {', '.join(FIELDS)}")
        if title is not None and not title.strip():
            raise ValueError("title is blank")
        return title


class ChangedConversation(ConversationRecord):
    settings: ChatSettings | None = Field(default=None, description="When the request changed settings: all of "
                                          "them as they are now.")


config = ApiConfig(
    name="ChangeConversation",
    method="PATCH",
    path="/api/conversations/{conversationId}",
    body=ChangeRequest,
    responses={200: ChangedConversation, 404: ErrorBody, 422: ErrorBody},
    description="Rename a conversation (its new title is searchable at once) and/or change its settings (the "
                "fields given; null resets one to the model's default); 200 with its record and settings.",
)


async def handler(req: ApiRequest[ChangeRequest], ctx: Context) -> ApiResponse:
    body = req.body
    record, settings = await Conversations(ctx).configure(req.principal, req.path_params["conversationId"],
                                                          body.title, body)
    changed = {"settings": settings.model_dump(mode="json")} if given(body) else {}
    return ApiResponse(200, {**record.public(), **changed})
