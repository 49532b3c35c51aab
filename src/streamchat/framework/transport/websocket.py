"""WebSocket endpoint speaking Motia's stream protocol, so Motia's published clients work unchanged.

Client frames: `{"type": "join"|"leave", "data": {"streamName", "groupId", "id"?, "subscriptionId"}}`.
A join is answered with a `sync` of the group (or item), then every change is pushed as it happens.
Each connection has its own bounded outbox drained by a writer task, so one slow reader never
delays the publisher or the other clients; a reader that falls too far behind is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..streams import StreamHub, UnknownStreamError

logger = logging.getLogger("streamchat.websocket")

OUTBOX_LIMIT = 20_000
CLOSE_TOO_SLOW = 1013


class Connection:
    """One client socket: its joined rooms and its outbox."""

    def __init__(self, websocket: WebSocket, hub: StreamHub) -> None:
        self.websocket = websocket
        self.hub = hub
        self.outbox: asyncio.Queue[bytes | None] = asyncio.Queue(OUTBOX_LIMIT)
        self.joined: set[tuple[str, str, str | None]] = set()
        self.too_slow = False

    def push(self, frame: bytes) -> None:
        if self.too_slow:
            return
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            self.too_slow = True
            logger.warning("dropping a websocket client that does not read", extra={"queued": OUTBOX_LIMIT})
            self.outbox = asyncio.Queue(1)
            self.outbox.put_nowait(None)

    async def writer(self) -> None:
        while True:
            frame = await self.outbox.get()
            if frame is None:
                await self.websocket.close(CLOSE_TOO_SLOW, "client too slow")
                return
            await self.websocket.send_text(frame.decode())

    def error(self, code: str, message: str, data: dict[str, Any] | None = None) -> None:
        """Tell the client what was wrong with its frame, shaped like a stream event."""
        frame: dict[str, Any] = {"event": {"type": "error", "error": {"code": code, "message": message}}}
        if data:
            frame.update({k: data[k] for k in ("streamName", "groupId", "id") if k in data})
        self.push(orjson.dumps(frame))

    async def handle(self, raw: str | bytes) -> None:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.error("INVALID_MESSAGE", "frame is not JSON")
            return
        if not isinstance(message, dict) or message.get("type") not in ("join", "leave"):
            self.error("INVALID_MESSAGE", "expected {\"type\": \"join\"|\"leave\", \"data\": {...}}")
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
        if message["type"] == "leave":
            self.hub.leave(self, stream, group, item_id)
            self.joined.discard((stream, group, item_id))
            return
        try:
            self.hub.join(self, stream, group, item_id)
        except UnknownStreamError:
            self.error("STREAM_NOT_FOUND", f"no stream named {stream!r}", data)
            return
        self.joined.add((stream, group, item_id))
        await self.sync(stream, group, item_id)

    async def sync(self, stream: str, group: str, item_id: str | None) -> None:
        """Send the current state right after a join; live frames queued meanwhile follow it."""
        if item_id is None:
            snapshot: Any = await self.hub.list(stream, group)
        else:
            snapshot = await self.hub.get(stream, group, item_id)
        self.push(self.hub.frame(stream, group, item_id, {"type": "sync", "data": snapshot}))

    def close(self) -> None:
        for stream, group, item_id in self.joined:
            self.hub.leave(self, stream, group, item_id)
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
