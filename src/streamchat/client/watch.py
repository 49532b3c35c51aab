"""A WebSocket subscription in Motia's stream protocol, keeping the items it is told about up to date.

The server answers a join with a `sync` of the group (or of one item), then pushes `create`,
`update` and `delete` frames, and, for a join with `"delta": true`, the text a streaming item
grows by as `delta` custom events. `Watch.items` is the group as the frames so far describe it,
deltas applied. The per-frame work is small on purpose (orjson, a dict update, no models): the
benchmark watches thousands of frames a second through this class.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, NamedTuple

import orjson
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.typing import Subprotocol

from streamchat.client.errors import StreamchatError

#: The statuses a reply ends in.
FINISHED = frozenset({"completed", "error", "stopped"})

Frame = dict[str, Any]
Item = dict[str, Any]


class Change(NamedTuple):
    """One item changed by one frame: what it is now, and the text that frame added to its message.

    `item` is the watch's current state of the item, which later deltas may grow in place: copy
    it to keep this version. `restarted`: the new message does not extend the one known before
    (a reply run again from the start); `appended` is then the whole new message. `kind` is the
    frame's: `create`, `update`, `delete` or `delta`.
    """

    kind: str
    item: Item
    appended: str
    restarted: bool


class Watch:
    """Joined to one conversation (or one item of it) over a WebSocket; an async context manager.

    Entering connects, joins and waits for the `sync`, so nothing that changes afterwards is
    missed. Then `async for frame in watch` gives every frame, `watch.changes()` every item change,
    `await watch.until_finished(id)` waits for a reply to end, and `watch.items` / `watch.text(id)`
    say where things stand. `keep_frames` also records every frame in `watch.frames`.
    `connection` is the websockets connection class (a subclass may count bytes on the wire).
    """

    def __init__(self, url: str, conversation_id: str, item_id: str | None = None, *, deltas: bool = False,
                 api_key: str | None = None, keep_frames: bool = False,
                 connection: type[ClientConnection] | None = None, open_timeout: float = 10.0) -> None:
        self.url = url
        self.conversation_id = conversation_id
        self.item_id = item_id
        self.join: dict[str, Any] = {"streamName": "conversation", "groupId": conversation_id,
                                     "subscriptionId": str(uuid.uuid4())}
        if item_id is not None:
            self.join["id"] = item_id
        if deltas:
            self.join["delta"] = True
        self.api_key = api_key
        self.connection = connection
        self.open_timeout = open_timeout
        self.items: dict[str, Item] = {}
        self.frames: list[Frame] | None = [] if keep_frames else None
        self.bytes_received = 0
        self._own: set[str] = set()  # items whose dict is the watch's own copy, grown in place by deltas
        self._socket: ClientConnection | None = None

    @property
    def socket(self) -> ClientConnection:
        if self._socket is None:
            raise RuntimeError("not connected: use `async with` first")
        return self._socket

    async def __aenter__(self) -> Watch:
        subprotocols = [Subprotocol("Authorization"), Subprotocol(self.api_key)] if self.api_key else None
        try:
            self._socket = await websockets.connect(
                self.url, subprotocols=subprotocols, max_size=None, open_timeout=self.open_timeout,
                create_connection=self.connection)
        except InvalidStatus as refused:
            answer = refused.response
            raise StreamchatError.from_answer(answer.status_code, bytes(answer.body or b"")) from refused
        try:
            await self._socket.send(orjson.dumps({"type": "join", "data": self.join}).decode())
            first = await self.next()
            event = first.get("event", {})
            if event.get("type") == "error":
                error = event.get("error", {})
                raise StreamchatError(None, str(error.get("code", "error")), str(error.get("message", "")), first)
            if event.get("type") != "sync":
                raise StreamchatError(None, "unexpected_frame", f"expected a sync after the join, got {first}", first)
        except BaseException:
            await self._socket.close()
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._socket is not None:
            await self._socket.close()

    async def next(self, timeout: float | None = None) -> Frame:
        """The next frame, already applied to `items`; the socket's ConnectionClosed when it is closed."""
        return (await self._receive(timeout))[0]

    async def _receive(self, timeout: float | None = None) -> tuple[Frame, Change | None]:
        receiving = self.socket.recv(decode=False)
        raw = await (receiving if timeout is None else asyncio.wait_for(receiving, timeout))
        self.bytes_received += len(raw)
        frame: Frame = orjson.loads(raw)
        if self.frames is not None:
            self.frames.append(frame)
        return frame, self._apply(frame)

    def __aiter__(self) -> AsyncIterator[Frame]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[Frame]:
        try:
            while True:
                yield await self.next()
        except ConnectionClosedOK:
            return

    async def changes(self) -> AsyncIterator[Change]:
        """Every item change from now on, until the server closes the socket (syncs only fill `items`)."""
        # `_receive` written out: this loop runs once a frame for every subscriber the bench holds.
        recv, frames, apply = self.socket.recv, self.frames, self._apply
        try:
            while True:
                raw = await recv(decode=False)
                self.bytes_received += len(raw)
                frame = orjson.loads(raw)
                if frames is not None:
                    frames.append(frame)
                change = apply(frame)
                if change is not None:
                    yield change
        except ConnectionClosedOK:
            return

    async def until_finished(self, item_id: str, timeout: float | None = None) -> Item:
        """The item once its status is completed, error or stopped (at once if it already is)."""
        async def finish() -> Item:
            while (item := self.items.get(item_id)) is None or item.get("status") not in FINISHED:
                await self.next()
            return item

        return await (finish() if timeout is None else asyncio.wait_for(finish(), timeout))

    def text(self, item_id: str) -> str:
        """An item's message as known now: the last whole item plus the deltas after it."""
        item = self.items.get(item_id)
        return "" if item is None else str(item.get("message", ""))

    def _apply(self, frame: Frame) -> Change | None:
        event = frame.get("event")
        if not isinstance(event, dict):
            return None
        kind = event.get("type")
        if kind == "event":
            custom = event.get("event")
            if isinstance(custom, dict) and custom.get("type") == "delta":
                return self._append(custom["data"])
            return None
        data = event.get("data")
        if kind == "sync":
            for item in data if isinstance(data, list) else [data]:
                if isinstance(item, dict) and "id" in item:
                    self.items[item["id"]] = item
                    self._own.discard(item["id"])
            return None
        if not isinstance(data, dict) or "id" not in data:
            return None
        item_id = data["id"]
        self._own.discard(item_id)
        if kind == "delete":
            self.items.pop(item_id, None)
            return Change("delete", data, "", False)
        if kind not in ("create", "update"):
            return None
        before = self.items.get(item_id)
        self.items[item_id] = data
        old = "" if before is None else before.get("message", "")
        new = data.get("message", "")
        if not isinstance(old, str) or not isinstance(new, str):
            return Change(kind, data, "", False)
        if new.startswith(old):
            return Change(kind, data, new[len(old):], False)
        return Change(kind, data, new, True)

    def _append(self, delta: dict[str, Any]) -> Change | None:
        """Grow an item by a delta; one whose seq the item already has is a repeat and changes nothing.

        The first delta after a whole item grows a copy of it (that dict is also a frame's, which
        stays as it arrived); the deltas after it grow that copy in place, one string join each.
        """
        item_id, seq = delta["id"], delta["seq"]
        item = self.items.get(item_id)
        if item is None or item_id not in self._own:
            item = {"id": item_id, "message": "", "seq": 0} if item is None else dict(item)
            self.items[item_id] = item
            self._own.add(item_id)
        if seq <= item.get("seq", 0):
            return None
        piece: str = delta["delta"]
        grows = delta.get("field", "message")  # a tool call's arguments name their field
        item[grows] = (item.get(grows) or "") + piece
        item["seq"] = seq
        return Change("delta", item, piece, False)
