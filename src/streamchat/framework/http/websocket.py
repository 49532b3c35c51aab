"""WebSocket endpoint speaking Motia's stream protocol, so Motia's published clients work unchanged.

Client frames: `{"type": "join"|"leave", "data": {"streamName", "groupId", "id"?, "subscriptionId",
"delta"?}}`. A join is answered with a `sync` of the group (or item), then every change is pushed.
A join with `"delta": true` receives a streaming text as `delta` custom events instead of whole-item
updates. Each connection has its own bounded outbox drained by a writer task, so one slow reader
never delays the publisher or the other clients; a reader that falls too far behind is dropped.
The outbox is a bare deque and a wake-up future (an asyncio.Queue keeps four deques per socket).
A plain join says whether the connection is compressed (the server offers permessage-deflate and the
client asked for it): without compression whole items come less often (streams/fanout.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from streamchat.framework.access.auth import Principal
from streamchat.framework.observability.metrics import WEBSOCKETS
from streamchat.framework.streams.changes import Change
from streamchat.framework.streams.hub import StreamHub, UnknownStreamError
from streamchat.framework.text import nul_fields, problems

logger = logging.getLogger("streamchat.websocket")

CLOSE_TOO_SLOW = 1013


@dataclass(frozen=True)
class SocketLimits:
    """Per connection: queued frames before a non-reading client is dropped, joins, client frames per second."""

    outbox: int = 20_000
    joins: int = 100
    messages_per_second: int = 50


DEFAULT_SOCKET_LIMITS = SocketLimits()


AccessCheck = Callable[[str, str, "str | None", "Principal | None"], Awaitable[bool]]


async def _open_to_all(stream: str, group: str, item_id: str | None, principal: Principal | None) -> bool:
    return True


class Connection:
    """One client socket: its caller, its joined rooms and its outbox."""

    def __init__(self, websocket: WebSocket, hub: StreamHub, access: AccessCheck = _open_to_all,
                 limits: SocketLimits = DEFAULT_SOCKET_LIMITS, compressed: bool = True) -> None:
        self.websocket = websocket
        self.compressed = compressed
        self.hub = hub
        self.access = access
        self.limits = limits
        self.principal: Principal | None = websocket.scope.get("state", {}).get("principal")
        #: Frames to send; None: close the socket (its reader is too slow). Made with the first frame
        #: and dropped once sent: an empty deque holds a block of 64 slots, most of an idle socket's own.
        self.outbox: deque[str | None] | None = None
        self.wakeup: asyncio.Future[None] | None = None
        self.allowance = float(limits.messages_per_second)
        self.allowance_at = time.monotonic()
        self.joined: set[tuple[str, str, str | None]] = set()
        self.too_slow = False

    def push(self, change: Change | str) -> None:
        """Queue the change's frame: its text, shared with the other sockets that get the same change."""
        if self.too_slow:
            return
        outbox = self.outbox
        if outbox is None:
            outbox = self.outbox = deque()
        if len(outbox) < self.limits.outbox:
            outbox.append(change if isinstance(change, str) else change.motia_text())
        else:
            self.too_slow = True
            logger.warning("dropping a websocket client that does not read", extra={"queued": self.limits.outbox})
            outbox.clear()
            outbox.append(None)
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    async def writer(self) -> None:
        while True:
            outbox = self.outbox
            if not outbox:
                self.outbox = None
                self.wakeup = asyncio.get_running_loop().create_future()
                await self.wakeup
                self.wakeup = None
                continue
            entry = outbox.popleft()
            if entry is None:
                await self.websocket.close(CLOSE_TOO_SLOW, "client too slow")
                return
            await self.websocket.send_text(entry)
            del entry  # an idle socket would otherwise hold its last frame (a whole sync, say) while it waits

    def error(self, code: str, message: str, data: dict[str, Any] | None = None) -> None:
        """Tell the client what was wrong with its frame, shaped like a stream event."""
        frame: dict[str, Any] = {k: data[k] for k in ("streamName", "groupId", "id") if data and k in data}
        frame["event"] = {"type": "error", "error": {"code": code, "message": message}}
        self.push(orjson.dumps(frame).decode())

    def _within_rate(self) -> bool:
        """A token bucket: `messages_per_second` on average, bursts up to twice that."""
        now = time.monotonic()
        rate = self.limits.messages_per_second
        self.allowance = min(2.0 * rate, self.allowance + (now - self.allowance_at) * rate)
        self.allowance_at = now
        if self.allowance < 1:
            return False
        self.allowance -= 1
        return True

    async def handle(self, raw: str | bytes) -> None:
        if not self._within_rate():
            self.error("RATE_LIMITED", f"more than {self.limits.messages_per_second} frames per second; slow down")
            return
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
        if bad := nul_fields({key: data.get(key) for key in ("streamName", "groupId", "id")}, ("data",)):
            self.error("INVALID_MESSAGE", problems(bad)[0])
            return
        stream, group = data["streamName"], data["groupId"]
        key = (stream, group, item_id)
        if message["type"] == "leave":
            self.hub.unsubscribe(self, stream, group, item_id)
            self.joined.discard(key)
            return
        if key not in self.joined and len(self.joined) >= self.limits.joins:
            self.error("TOO_MANY_JOINS", f"at most {self.limits.joins} joins per connection; leave one first", data)
            return
        if stream not in self.hub.configs:
            self.error("STREAM_NOT_FOUND", f"no stream named {stream!r}", data)
            return
        if not await self.access(stream, group, item_id, self.principal):
            self.error("STREAM_ACCESS_DENIED", f"no access to {stream!r} group {group!r}", data)
            return
        try:
            await self.hub.subscribe(self, stream, group, item_id, deltas=data.get("delta") is True,
                                     compressed=self.compressed)
        except UnknownStreamError:
            self.error("STREAM_NOT_FOUND", f"no stream named {stream!r}", data)
            return
        self.joined.add(key)

    def close(self) -> None:
        for stream, group, item_id in self.joined:
            self.hub.unsubscribe(self, stream, group, item_id)
        self.joined.clear()


def asked_for_compression(websocket: WebSocket) -> bool:
    """Whether the client offered permessage-deflate that keeps its context between messages (the server
    takes it when its own is switched on); without the context an item sent again costs it in full."""
    offer = websocket.headers.get("sec-websocket-extensions", "").lower()
    return "permessage-deflate" in offer and "server_no_context_takeover" not in offer


async def stream_socket(websocket: WebSocket, hub: StreamHub, access: AccessCheck = _open_to_all,
                        limits: SocketLimits = DEFAULT_SOCKET_LIMITS, compression: bool = True) -> None:
    """Serve one WebSocket client until it goes away (`compression`: the server offers permessage-deflate)."""
    requested = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="Authorization" if "Authorization" in requested else None)
    connection = Connection(websocket, hub, access, limits, compression and asked_for_compression(websocket))
    writer = asyncio.create_task(connection.writer())
    WEBSOCKETS.inc()
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
        WEBSOCKETS.dec()
        connection.close()
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
