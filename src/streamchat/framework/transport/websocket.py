"""WebSocket endpoint speaking Motia's stream protocol, so Motia's published clients work unchanged.

Client frames: `{"type": "join"|"leave", "data": {"streamName", "groupId", "id"?, "subscriptionId",
"delta"?}}`. A join is answered with a `sync` of the group (or item), then every change is pushed.
A join with `"delta": true` receives a streaming text as `delta` custom events instead of whole-item
updates. Each connection has its own bounded outbox drained by a writer task, so one slow reader
never delays the publisher or the other clients; a reader that falls too far behind is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..changes import Change
from ..streams import StreamHub, UnknownStreamError

logger = logging.getLogger("streamchat.websocket")

OUTBOX_LIMIT = 20_000
CLOSE_TOO_SLOW = 1013


class Connection:
    """One client socket: its joined rooms and its outbox."""

    def __init__(self, websocket: WebSocket, hub: StreamHub) -> None:
        self.websocket = websocket
        self.hub = hub
        self.outbox: asyncio.Queue[Change | str | None] = asyncio.Queue(OUTBOX_LIMIT)
        self.joined: set[tuple[str, str, str | None]] = set()
        self.too_slow = False

    def push(self, change: Change | str) -> None:
        if self.too_slow:
            return
        try:
            self.outbox.put_nowait(change)
        except asyncio.QueueFull:
            self.too_slow = True
            logger.warning("dropping a websocket client that does not read", extra={"queued": OUTBOX_LIMIT})
            self.outbox = asyncio.Queue(1)
            self.outbox.put_nowait(None)

    async def writer(self) -> None:
        while True:
            entry = await self.outbox.get()
            if entry is None:
                await self.websocket.close(CLOSE_TOO_SLOW, "client too slow")
                return
            await self.websocket.send_text(entry if isinstance(entry, str) else entry.motia_text())

    def error(self, code: str, message: str, data: dict[str, Any] | None = None) -> None:
        """Tell the client what was wrong with its frame, shaped like a stream event."""
        frame: dict[str, Any] = {k: data[k] for k in ("streamName", "groupId", "id") if data and k in data}
        frame["event"] = {"type": "error", "error": {"code": code, "message": message}}
        self.push(orjson.dumps(frame).decode())

    async def handle(self, raw: str | bytes) -> None:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.error("INVALID_MESSAGE", "frame is not JSON")
            return
        if not isinstance(message, dict) or message.get("type") not in ("join", "leave"):
            self.error("INVALID_MESSAGE", 'expected {"type": "join"|"leave", "data": {...}}')
            return
        data = message.get("data")
        if not isinstance(data, dict) or not all(
            isinstance(data.get(key), str) and data.get(key) for key in ("streamName", "groupId")
        ):
            self.error("INVALID_MESSAGE", "data.streamName and data.groupId must be non-empty strings")
            return
        item_id = data.get("id")
        if item_id is not None and not isinstance(item_id, str):
            self.error("INVALID_MESSAGE", "data.id must be a string", data)
            return
        stream, group = data["streamName"], data["groupId"]
        key = (stream, group, item_id)
        if message["type"] == "leave":
            self.hub.unsubscribe(self, stream, group, item_id)
            self.joined.discard(key)
            return
        try:
            await self.hub.subscribe(self, stream, group, item_id, deltas=data.get("delta") is True)
        except UnknownStreamError:
            self.error("STREAM_NOT_FOUND", f"no stream named {stream!r}", data)
            return
        self.joined.add(key)

    def close(self) -> None:
        for stream, group, item_id in self.joined:
            self.hub.unsubscribe(self, stream, group, item_id)
        self.joined.clear()


async def stream_socket(websocket: WebSocket, hub: StreamHub) -> None:
    """Serve one WebSocket client until it goes away."""
    requested = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="Authorization" if "Authorization" in requested else None)
    connection = Connection(websocket, hub)
    writer = asyncio.create_task(connection.writer())
    try:
        while True:
            received = await websocket.receive()
            if received["type"] == "websocket.disconnect":
                break
            payload = received.get("text") if received.get("text") is not None else received.get("bytes")
            if payload is not None:
                await connection.handle(payload)
    except WebSocketDisconnect:
        pass
    finally:
        connection.close()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
