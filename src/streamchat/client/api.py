"""`StreamchatClient`: the HTTP API over one connection pool, and the live views of a conversation."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, overload
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import orjson

from streamchat.client.errors import StreamchatError
from streamchat.client.reply import Reply
from streamchat.client.reply_stream import Accepted, ReplyStream
from streamchat.client.sse import Events
from streamchat.client.watch import Item, Watch


@dataclass(frozen=True)
class Page:
    """One page of conversations; `next_cursor` asks for the next one (None: this was the last)."""

    conversations: list[dict[str, Any]]
    next_cursor: str | None


#: The server's page size when none is asked for, and the largest it gives.
PAGE_SIZE, PAGE_SIZE_MAX = 50, 200

ExportFormat = Literal["json", "markdown"]


def websocket_url(base_url: str) -> str:
    """Where the server speaks Motia's protocol: its root, on the same port, as ws:// or wss://."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/", parts.query, ""))


class StreamchatClient:
    """A streamchat server's API: `async with StreamchatClient("http://127.0.0.1:3000") as client:`.

    Every call that the server refuses raises StreamchatError with its status, `error` code and
    `detail`; a server that cannot be reached raises httpx's (or websockets') own error. With
    `api_key` every request, socket and stream carries it as the server expects.
    """

    #: Conversations asked for in each page when `conversations()` or `search()` reads several.
    page_size = PAGE_SIZE_MAX

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float | None = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`transport` replaces httpx's network transport for the HTTP calls, e.g.
        `httpx.ASGITransport(app)` for an app served in this process (it hands over a response once
        the response has ended, so live SSE and the WebSocket need a real server)."""
        self.base_url = base_url.rstrip("/")
        self.ws_url = websocket_url(self.base_url)
        self.api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    async def __aenter__(self) -> StreamchatClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def send(self, message: str, conversation_id: str | None = None) -> ReplyStream:
        """POST /chat; an unseen `conversation_id` starts that conversation.

        Answers once the server took the message: the ids, and the reply to come as an async
        iterator of its text (`async for piece in await client.send("hi")`).
        """
        body: dict[str, Any] = {"message": message}
        if conversation_id is not None:
            body["conversationId"] = conversation_id
        return ReplyStream(self, Accepted.from_body(await self._call("POST", "/chat", json=body)))

    async def regenerate(self, conversation_id: str, message_id: str | None = None) -> ReplyStream:
        """A new reply to the user turn that `message_id` answered (None: the conversation's last reply)."""
        if message_id is None:
            replies = [m for m in await self.conversation(conversation_id) if m.get("from") == "assistant"]
            if not replies:
                raise StreamchatError(None, "not_found", f"conversation {conversation_id} has no reply to regenerate")
            message_id = str(replies[-1]["id"])
        path = f"{_message_path(conversation_id, message_id)}/regenerate"
        return ReplyStream(self, Accepted.from_body(await self._call("POST", path)))

    async def stop(self, conversation_id: str, message_id: str) -> Item:
        """Stop a streaming or queued reply; the item as it ends (`stopped`, its partial text kept)."""
        return dict(await self._call("POST", f"{_message_path(conversation_id, message_id)}/stop"))

    async def conversations(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The conversations (conversationId, title, createdAt, updatedAt), most recent first: every one,
        page after page, or the first `limit`. `conversations_page` reads one page at a time."""
        return await self._gather(None, limit)

    async def search(self, query: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Conversations whose title or messages hold every word of `query`, best match first (all, or the
        first `limit`); each also has `snippet` and `messageId`, the best-matching message (None for a title)."""
        return await self._gather(query, limit)

    async def conversations_page(self, limit: int = PAGE_SIZE, cursor: str | None = None,
                                 query: str | None = None) -> Page:
        """One page of the listing (or of a search, with `query`); `Page.next_cursor` asks for the next."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        if query is not None:
            params["q"] = query
        answer = await self._call("GET", "/api/conversations", params=params)
        return Page(list(answer["conversations"]), answer.get("nextCursor"))

    async def conversation(self, conversation_id: str, *, branch: bool = False) -> list[Item]:
        """A conversation's messages as stored now: every message of its tree in creation order, or
        (`branch`) its active branch, root first. Each carries `parentId`, `siblings`, `siblingIndex`."""
        params = {} if branch else {"all": "true"}
        return list((await self._call("GET", _conversation_path(conversation_id), params=params))["messages"])

    async def rename(self, conversation_id: str, title: str) -> dict[str, Any]:
        """Give a conversation a title; its record (conversationId, title, createdAt, updatedAt)."""
        return dict(await self._call("PATCH", _conversation_path(conversation_id), json={"title": title}))

    async def delete(self, conversation_id: str) -> None:
        """Delete a conversation and all of it (a running reply is stopped first); its id is free again."""
        await self._request("DELETE", _conversation_path(conversation_id))

    @overload
    async def export(self, conversation_id: str, format: Literal["json"] = "json") -> dict[str, Any]: ...

    @overload
    async def export(self, conversation_id: str, format: Literal["markdown"]) -> str: ...

    async def export(self, conversation_id: str, format: ExportFormat = "json") -> dict[str, Any] | str:
        """A conversation to keep: `json` (a dict, what the server's import takes back) or `markdown` (a transcript)."""
        response = await self._request("GET", f"{_conversation_path(conversation_id)}/export",
                                       params={"format": format})
        return response.text if format == "markdown" else dict(orjson.loads(response.content))

    async def models(self) -> dict[str, Any]:
        """`{"serving": {...}, "models": [...]}`: the model answering now and those the server could run."""
        return dict(await self._call("GET", "/api/models"))

    def watch(self, conversation_id: str, item_id: str | None = None, *, deltas: bool = False) -> Watch:
        """The conversation (or one item) over the WebSocket, as an async context manager."""
        return Watch(self.ws_url, conversation_id, item_id, deltas=deltas, api_key=self.api_key)

    def reply_text(self, conversation_id: str, message_id: str) -> Reply:
        """The text of one reply, piece by piece, until it is completed, error or stopped."""
        return Reply(self.watch(conversation_id, message_id, deltas=True), message_id)

    def events(self, conversation_id: str, *, last_event_id: int | None = None) -> Events:
        """The conversation's SSE frames; after a dropped connection they go on where they stopped."""
        return Events(self.http, f"{_conversation_path(conversation_id)}/events", last_event_id)

    async def _gather(self, query: str | None, limit: int | None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while limit is None or len(found) < limit:
            wanted = self.page_size if limit is None else min(self.page_size, limit - len(found))
            page = await self.conversations_page(wanted, cursor, query)
            found += page.conversations
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return found

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return orjson.loads((await self._request(method, path, **kwargs)).content)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.request(method, path, **kwargs)
        if not response.is_success:
            raise StreamchatError.from_response(response)
        return response


def _segment(value: str) -> str:
    """An id as one path segment, whatever characters it holds."""
    return quote(value, safe="")


def _conversation_path(conversation_id: str) -> str:
    return f"/api/conversations/{_segment(conversation_id)}"


def _message_path(conversation_id: str, message_id: str) -> str:
    return f"{_conversation_path(conversation_id)}/messages/{_segment(message_id)}"
