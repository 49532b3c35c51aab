"""search_conversations: find what the user talked about before, in their own conversations only.

Runs the catalog's full-text search as the caller (their key owns what it finds), exactly as
`GET /api/conversations?q=` does, so the model never sees another key's conversations.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from streamchat.catalog import Catalog
from streamchat.tools import ToolConfig, ToolContext

#: Conversations given to the model for one query: enough to choose from, few enough to read.
HITS = 10


class SearchInput(BaseModel):
    query: str = Field(min_length=1, max_length=200,
                       description="Words to look for; a conversation matches when it has every one of them.")


config = ToolConfig(
    name="search_conversations",
    description="Search the user's earlier conversations (titles and messages) by words. Returns the "
                "best matches with their title and the words around the match.",
    input=SearchInput,
    timeout_seconds=15,
)


async def handler(args: SearchInput, ctx: ToolContext) -> list[dict[str, Any]]:
    hits = await ctx.service(Catalog).search(ctx.key_id, args.query, HITS, None)
    return [{"conversationId": hit.conversation.conversation_id, "title": hit.conversation.title,
             "snippet": hit.snippet} for hit in hits.entries]
