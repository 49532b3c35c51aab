"""Server-Sent Events for one group of a stream, with exact resume by `Last-Event-ID`.

Each frame carries `id: <seq>`; a client that reconnects with the last id it saw gets exactly
the changes after it (from the hub's replay buffer), or a fresh snapshot when those are no
longer kept. Comments (`: ping`) keep idle connections and proxies alive.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from streamchat.framework.errors import error_response
from streamchat.framework.streams.changes import Change
from streamchat.framework.streams.hub import StreamHub
from streamchat.framework.streams.watch import end_watches

logger = logging.getLogger("streamchat.sse")

QUEUE_LIMIT = 20_000
BATCH = 256
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


class SseSubscriber:
    """Queues SSE frames for one response; a client that stops reading is cut off, not buffered forever."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = False
        _open_streams.add(self)

    def end(self) -> None:
        """End the response after the frames already written: the client resumes from the last one
        it got (its Last-Event-ID), on this server once it is back or on another instance."""
        self.overflowed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    def push(self, change: Change) -> None:
        frame = change.sse()
        if frame is None or self.overflowed:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            logger.warning("dropping an SSE client that does not read", extra={"queued": QUEUE_LIMIT})
            self.end()


_open_streams: weakref.WeakSet[SseSubscriber] = weakref.WeakSet()


def end_event_streams() -> None:
    """The server is stopping: end every SSE response (and every view following an item) now rather
    than hold the shutdown for them."""
    for subscriber in list(_open_streams):
        subscriber.end()
    end_watches()


def last_event_id(request: Request) -> int | Response | None:
    """The seq to resume after, from the header or `?lastEventId=`; a 400 response if it is not a number."""
    raw = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        return error_response(400, "validation_error", f"lastEventId: expected an integer seq, got {raw[:40]!r}")
    if value < 0:
        return error_response(400, "validation_error", "lastEventId: must not be negative")
    return value


async def sse_response(
    request: Request, hub: StreamHub, stream: str, group: str, ping_seconds: float = 15.0
) -> Response:
    """Subscribe with deltas and stream frames until the client goes away."""
    after = last_event_id(request)
    if isinstance(after, Response):
        return after
    subscriber = SseSubscriber()
    await hub.subscribe(subscriber, stream, group, deltas=True, after_seq=after, sse=True)

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 1000\n\n"
            while True:
                try:
                    first = await asyncio.wait_for(subscriber.queue.get(), ping_seconds)
                except TimeoutError:
                    yield b": ping\n\n"
                    continue
                batch: list[bytes] = []
                entry = first
                while entry is not None:
                    batch.append(entry)
                    if len(batch) >= BATCH or subscriber.queue.empty():
                        break
                    entry = subscriber.queue.get_nowait()
                if batch:
                    yield b"".join(batch)
                if entry is None:
                    return
        finally:
            hub.unsubscribe(subscriber, stream, group)

    return StreamingResponse(frames(), media_type="text/event-stream", headers=HEADERS)
