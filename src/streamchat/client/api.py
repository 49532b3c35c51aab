"""`StreamchatClient`: the HTTP API over one connection pool, and the live views of a conversation."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import orjson

from streamchat.client.errors import StreamchatError
from streamchat.client.reply import Reply
from streamchat.client.sse import Events
from streamchat.client.watch import Item, Watch


@dataclass(frozen=True)
class Accepted:
    """A message the server took (POST /chat) or a reply it began again (regenerate); `body` as sent."""

    conversation_id: str
    user_message_id: str
    assistant_message_id: str
    body: dict[str, Any]

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Accepted:
        return cls(body["conversationId"], body["userMessageId"], body["assistantMessageId"], body)


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

    async def send(self, message: str, conversation_id: str | None = None) -> Accepted:
        """POST /chat: the reply then streams; an unseen `conversation_id` starts that conversation."""
        body: dict[str, Any] = {"message": message}
        if conversation_id is not None:
            body["conversationId"] = conversation_id
        return Accepted.from_body(await self._call("POST", "/chat", json=body))

    async def conversations(self) -> list[dict[str, Any]]:
        """Every conversation (id, title, createdAt, updatedAt), most recent first."""
        return list((await self._call("GET", "/api/conversations"))["conversations"])

    async def conversation(self, conversation_id: str) -> list[Item]:
        """A conversation's messages in order, as stored now."""
        return list((await self._call("GET", f"/api/conversations/{_segment(conversation_id)}"))["messages"])

    async def models(self) -> dict[str, Any]:
        """`{"serving": {...}, "models": [...]}`: the model answering now and those the server could run."""
        return dict(await self._call("GET", "/api/models"))

    async def stop(self, conversation_id: str, message_id: str) -> Item:
        """Stop a streaming or queued reply; the item as it ends (`stopped`, its partial text kept)."""
        return dict(await self._call("POST", f"{_message_path(conversation_id, message_id)}/stop"))

    async def regenerate(self, conversation_id: str, message_id: str) -> Accepted:
        """A new reply to the user turn that `message_id` answered; it streams like any other."""
        return Accepted.from_body(await self._call("POST", f"{_message_path(conversation_id, message_id)}/regenerate"))

    def watch(self, conversation_id: str, item_id: str | None = None, *, deltas: bool = False) -> Watch:
        """The conversation (or one item) over the WebSocket, as an async context manager."""
        return Watch(self.ws_url, conversation_id, item_id, deltas=deltas, api_key=self.api_key)

    def reply_text(self, conversation_id: str, message_id: str) -> Reply:
        """The text of one reply, piece by piece, until it is completed, error or stopped."""
        return Reply(self.watch(conversation_id, message_id, deltas=True), message_id)

    def events(self, conversation_id: str, *, last_event_id: int | None = None) -> Events:
        """The conversation's SSE frames; after a dropped connection they go on where they stopped."""
        return Events(self.http, f"/api/conversations/{_segment(conversation_id)}/events", last_event_id)

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, path, **kwargs)
        if not response.is_success:
            raise StreamchatError.from_response(response)
        return orjson.loads(response.content)


def _segment(value: str) -> str:
    """An id as one path segment, whatever characters it holds."""
    return quote(value, safe="")


def _message_path(conversation_id: str, message_id: str) -> str:
    return f"/api/conversations/{_segment(conversation_id)}/messages/{_segment(message_id)}"
