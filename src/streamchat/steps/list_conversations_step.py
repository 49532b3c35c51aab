"""GET /api/conversations: the caller's conversations, most recently active first, or those matching `q`."""

from __future__ import annotations

from pydantic import BaseModel, Field

from streamchat.catalog import BadCursor, Catalog
from streamchat.conversations.chat_settings import ChatSettings, read_settings
from streamchat.conversations.public import ConversationRecord
from streamchat.framework import ApiConfig, ApiRequest, ApiResponse, Context, ErrorBody, HttpError

#: Conversations in one page when the caller does not say.
PAGE_SIZE = 50
PAGE_SIZE_MAX = 200


class ConversationQuery(BaseModel):
    q: str | None = Field(default=None, min_length=1, max_length=200,
                          description="Full-text search over titles and messages; every word must match.")
    limit: int = Field(default=PAGE_SIZE, ge=1, le=PAGE_SIZE_MAX, description="Conversations in this page.")
    cursor: str | None = Field(default=None, min_length=1, max_length=500,
                               description="`nextCursor` of the page before, for the next one.")


class ConversationSummary(ConversationRecord):
    settings: ChatSettings | None = Field(default=None, description="Without `q`: the conversation's settings.")
    snippet: str | None = Field(default=None, description="With `q`: the words around the best match.")
    messageId: str | None = Field(default=None, description="With `q`: the best-matching message; null when "
                                  "only the title matches.")


class ConversationList(BaseModel):
    conversations: list[ConversationSummary]
    nextCursor: str | None


config = ApiConfig(
    name="ListConversations",
    method="GET",
    path="/api/conversations",
    query=ConversationQuery,
    responses={200: ConversationList, 422: ErrorBody},
    description="Conversations, newest activity first; with `q`, those matching it, best match first.",
)


async def handler(req: ApiRequest[None], ctx: Context) -> ApiResponse:
    query: ConversationQuery = req.query
    owner = req.principal.key_id if req.principal is not None else None
    catalog = ctx.service(Catalog)
    try:
        if query.q is None:
            recent = await catalog.recent(owner, query.limit, query.cursor)
            listed, next_cursor = [record.public() for record in recent.entries], recent.next_cursor
            for entry in listed:
                settings = await read_settings(ctx.state, entry["conversationId"])
                entry["settings"] = settings.model_dump(mode="json")
        else:
            hits = await catalog.search(owner, query.q, query.limit, query.cursor)
            listed = [{**hit.conversation.public(), "snippet": hit.snippet, "messageId": hit.message_id}
                      for hit in hits.entries]
            next_cursor = hits.next_cursor
    except BadCursor as error:
        raise HttpError(422, "validation_error", str(error),
                        fields=[{"field": "cursor", "message": str(error), "type": "value_error"}]) from error
    return ApiResponse(200, {"conversations": listed, "nextCursor": next_cursor})
