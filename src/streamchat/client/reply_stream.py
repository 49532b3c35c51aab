"""A reply the caller asked for (a message sent, a reply regenerated): its ids, and its text read over SSE.

`await client.send("hi")` answers as soon as the server took the message; the object it returns
is the reply to come. Iterating it reads the conversation's Server-Sent Events, keeps the frames
of that one reply and gives the text each adds, from the first character to the end. SSE rather
than the WebSocket because its resume is exact: a dropped connection is opened again with
`Last-Event-ID` (`Events` does it) and the server sends exactly the frames missed, so no piece is
lost or given twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol

from streamchat.client.errors import StreamchatError
from streamchat.client.pieces import PieceReader
from streamchat.client.sse import Events, SseFrame
from streamchat.client.watch import FINISHED, Item

#: How long a reply may go unseen on a fresh connection before it is looked up (see `_first_frame`).
UNSEEN_SECONDS = 2.0


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


class ReplySource(Protocol):
    """What a reply is read and stopped through: a StreamchatClient."""

    def events(self, conversation_id: str, *, last_event_id: int | None = None) -> Events: ...

    async def conversation(self, conversation_id: str) -> list[Item]: ...

    async def stop(self, conversation_id: str, message_id: str) -> Item: ...


class ReplyStream(PieceReader):
    """`async for piece in reply` gives the reply's text piece by piece, and stops when the reply ends.

    It keeps what the server answered (`conversation_id`, `user_message_id`, `assistant_message_id`,
    `body`), so it stands wherever an `Accepted` did. Nothing is opened until the first piece is
    asked for; a reply that already ended gives its whole text at once. One pass only: afterwards
    `text` is the whole reply, `status` is `completed`, `stopped` or `error` and `error` says why it
    failed. `restarts` counts the times the text began again from nothing (a reply re-run after its
    instance died): the pieces given before are no longer part of it. A deleted reply raises
    StreamchatError `not_found`. Leaving early: `async with reply:` or `await reply.aclose()`.
    """

    def __init__(self, client: ReplySource, accepted: Accepted) -> None:
        super().__init__()
        self.client = client
        self.accepted = accepted
        self.item: Item | None = None
        self._parts: list[str] = []  # the text so far; joined when read, so a piece costs O(1)
        self.restarts = 0
        self._seq = -1
        self._events: Events | None = None

    @property
    def conversation_id(self) -> str:
        return self.accepted.conversation_id

    @property
    def user_message_id(self) -> str:
        return self.accepted.user_message_id

    @property
    def assistant_message_id(self) -> str:
        return self.accepted.assistant_message_id

    @property
    def body(self) -> dict[str, Any]:
        return self.accepted.body

    @property
    def text(self) -> str:
        """The reply's text so far (all of it once the iteration ended)."""
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @property
    def status(self) -> str | None:
        """The reply's status as last seen (None before the first frame of it)."""
        return None if self.item is None else str(self.item.get("status"))

    @property
    def error(self) -> str | None:
        """Why the reply failed, when its status is `error`."""
        error = None if self.item is None else self.item.get("error")
        return None if error is None else str(error)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def reconnects(self) -> int:
        """Times the SSE connection dropped and was resumed while this reply was read."""
        return 0 if self._events is None else self._events.reconnects

    async def stop(self) -> Item:
        """Stop the reply (its text so far is kept); the iteration then ends with status `stopped`."""
        return await self.client.stop(self.conversation_id, self.assistant_message_id)

    async def collect(self) -> str:
        """Read the rest of the reply; its whole text."""
        async for _ in self:
            pass
        return self.text

    async def _follow(self) -> AsyncGenerator[str, None]:
        async with self.client.events(self.conversation_id) as events:
            self._events = events
            piece = await self._first_frame(events)
            if piece:
                yield piece
            if self.finished:
                return
            async for frame in events:
                piece = self._apply(frame)
                if piece:
                    yield piece
                if self.finished:
                    return

    async def _first_frame(self, events: Events) -> str:
        """Read up to the first frame of this reply; the text it adds.

        A fresh connection's snapshot carries the reply at once, unless the conversation was
        deleted before it opened (then no frame of it ever comes): a reply still unseen after
        UNSEEN_SECONDS is looked up once, and one no longer there raises `not_found`. A read cut
        short by that wait resumes exactly (`Last-Event-ID`).
        """
        looked_up = False
        while True:
            try:
                async with asyncio.timeout(None if looked_up else UNSEEN_SECONDS):
                    async for frame in events:
                        piece = self._apply(frame)
                        if self.item is not None or self._seq >= 0:
                            return piece
                raise AssertionError("the conversation's events never end by themselves")
            except TimeoutError:
                looked_up = True
                items = await self.client.conversation(self.conversation_id)
                if not any(item.get("id") == self.assistant_message_id for item in items):
                    raise StreamchatError(None, "not_found",
                                          f"reply {self.assistant_message_id} was deleted") from None

    def _apply(self, frame: SseFrame) -> str:
        """Take one frame of the conversation into account; the text it adds to this reply."""
        data = frame.data
        if not isinstance(data, dict) or data.get("id") != self.assistant_message_id:
            return ""
        if frame.event == "delete":
            raise StreamchatError(None, "not_found", f"reply {self.assistant_message_id} was deleted")
        if frame.event == "delta":
            seq, piece = int(data["seq"]), str(data["delta"])
            if seq <= self._seq:  # already part of the item it follows
                return ""
            self._seq = seq
            self._parts.append(piece)
            return piece
        if frame.event != "item":
            return ""
        self.item = data
        self._seq = int(data.get("seq", self._seq))
        message = str(data.get("message", ""))
        text = self.text
        if message.startswith(text):
            piece = message[len(text):]
        else:
            self.restarts += 1
            piece = message
        self._parts[:] = [message]
        return piece
