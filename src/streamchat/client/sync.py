"""`SyncStreamchatClient`: the client for code without an event loop (scripts, a terminal, notebooks).

It is the async `StreamchatClient` run on a loop of its own thread (`bridge.LoopThread`): every
method is the async one's, waited for; a reply is iterated with a plain `for`. So both clients
speak the protocol the same way, through one implementation.

    with SyncStreamchatClient("http://127.0.0.1:3000") as client:
        for piece in client.send("Write a haiku about rivers"):
            print(piece, end="", flush=True)
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Literal, overload

import httpx

from streamchat.client.api import PAGE_SIZE, ExportFormat, Page, StreamchatClient
from streamchat.client.bridge import BlockingIterator, LoopThread
from streamchat.client.reply_stream import ReplyStream
from streamchat.client.sse import SseFrame
from streamchat.client.watch import Item


class SyncReplyStream:
    """A `ReplyStream` read from blocking code: `for piece in reply`, then `text`, `status`, `error`.

    A KeyboardInterrupt while a piece is awaited leaves the reading where it was: `stop()` the
    reply and go on iterating to see it end `stopped`, or `close()` to let it go.
    """

    def __init__(self, loop: LoopThread, reply: ReplyStream) -> None:
        self.loop = loop
        self.reply = reply
        self._pieces = loop.iterate(reply, reply.aclose)

    @property
    def conversation_id(self) -> str:
        return self.reply.conversation_id

    @property
    def user_message_id(self) -> str:
        return self.reply.user_message_id

    @property
    def assistant_message_id(self) -> str:
        return self.reply.assistant_message_id

    @property
    def body(self) -> dict[str, Any]:
        return self.reply.body

    @property
    def item(self) -> Item | None:
        return self.reply.item

    @property
    def text(self) -> str:
        return self.reply.text

    @property
    def status(self) -> str | None:
        return self.reply.status

    @property
    def error(self) -> str | None:
        return self.reply.error

    @property
    def finished(self) -> bool:
        return self.reply.finished

    @property
    def restarts(self) -> int:
        return self.reply.restarts

    @property
    def reconnects(self) -> int:
        return self.reply.reconnects

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def stop(self) -> Item:
        """Stop the reply on the server; the iteration then ends with status `stopped`."""
        return self.loop.call(self.reply.stop)

    def collect(self) -> str:
        """Read the rest of the reply; its whole text."""
        for _ in self:
            pass
        return self.text

    def close(self) -> None:
        """Stop reading (the reply goes on on the server) and close its connection."""
        self._pieces.close()

    def __enter__(self) -> SyncReplyStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class SyncStreamchatClient:
    """`with SyncStreamchatClient(url) as client:` the methods of StreamchatClient, blocking.

    Errors are the async client's: StreamchatError for what the server refused, httpx's for a
    server out of reach. `client` is the async client underneath; `close()` ends its thread.
    """

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float | None = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.loop = LoopThread()
        self.client = StreamchatClient(base_url, api_key, timeout=timeout, transport=transport)

    @property
    def base_url(self) -> str:
        return self.client.base_url

    def __enter__(self) -> SyncStreamchatClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the open replies and streams, the connections, then the loop's thread."""
        self.loop.close(self.client.aclose)

    def send(self, message: str, conversation_id: str | None = None) -> SyncReplyStream:
        """POST /chat; the reply to come, to iterate: see `StreamchatClient.send`."""
        return SyncReplyStream(self.loop, self.loop.call(self.client.send, message, conversation_id))

    def regenerate(self, conversation_id: str, message_id: str | None = None) -> SyncReplyStream:
        """A new reply to the turn `message_id` answered (None: the last reply); see `StreamchatClient.regenerate`."""
        return SyncReplyStream(self.loop, self.loop.call(self.client.regenerate, conversation_id, message_id))

    def stop(self, conversation_id: str, message_id: str) -> Item:
        return self.loop.call(self.client.stop, conversation_id, message_id)

    def conversations(self, limit: int | None = None) -> list[dict[str, Any]]:
        return self.loop.call(self.client.conversations, limit)

    def search(self, query: str, limit: int | None = None) -> list[dict[str, Any]]:
        return self.loop.call(self.client.search, query, limit)

    def conversations_page(self, limit: int = PAGE_SIZE, cursor: str | None = None, query: str | None = None) -> Page:
        return self.loop.call(self.client.conversations_page, limit, cursor, query)

    def conversation(self, conversation_id: str, *, branch: bool = False) -> list[Item]:
        return self.loop.call(functools.partial(self.client.conversation, branch=branch), conversation_id)

    def rename(self, conversation_id: str, title: str) -> dict[str, Any]:
        return self.loop.call(self.client.rename, conversation_id, title)

    def delete(self, conversation_id: str) -> None:
        self.loop.call(self.client.delete, conversation_id)

    @overload
    def export(self, conversation_id: str, format: Literal["json"] = "json") -> dict[str, Any]: ...

    @overload
    def export(self, conversation_id: str, format: Literal["markdown"]) -> str: ...

    def export(self, conversation_id: str, format: ExportFormat = "json") -> dict[str, Any] | str:
        async def export() -> dict[str, Any] | str:
            return await self.client.export(conversation_id, format)

        return self.loop.call(export)

    def models(self) -> dict[str, Any]:
        return self.loop.call(self.client.models)

    def reply_text(self, conversation_id: str, message_id: str) -> BlockingIterator[str]:
        """One reply's text over the WebSocket, blocking; `.source` is the async `Reply` (its `item`)."""
        return self.loop.iterate(self.client.reply_text(conversation_id, message_id))

    def events(self, conversation_id: str, *, last_event_id: int | None = None) -> BlockingIterator[SseFrame]:
        """The conversation's SSE frames, resuming after a drop; `close()` (or `with`) ends them."""
        return self.loop.iterate(self.client.events(conversation_id, last_event_id=last_event_id))
