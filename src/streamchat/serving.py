"""How `streamchat serve` runs the app under uvicorn, where the process's memory is concerned.

Garbage collection: young objects are collected rarely, so pauses stay off the token path, and the
objects made at start-up are left out of every collection.

WebSocket connections: the websockets library's protocol object is a reference cycle (its frame
parser is a generator that holds it), and with compression on it carries ~50 KB of zlib state.
Left to the collector, closed connections piled up between collections: at 10 new chats a
second, about a thousand of them, 60 MB (the soak, bench/soak.py). Closing the parser when the
connection is lost breaks the cycle, so a closed connection is freed at once.

Stopping: uvicorn waits for open responses before the app's shutdown, and an SSE response never
ends by itself, so one watcher held a SIGTERM for the whole graceful timeout. The server ends every
SSE response as the signal arrives (its clients resume from their Last-Event-ID elsewhere or once
the server is back); WebSockets are closed by uvicorn itself.
"""

from __future__ import annotations

import asyncio
import gc
from types import FrameType

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from streamchat.framework import end_event_streams

GC_THRESHOLDS = (50_000, 50, 100)


def configure_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol (websockets, sans-I/O), freed as soon as its connection is lost."""

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.conn.parser.close()


class Server(uvicorn.Server):
    """uvicorn's server, ending the SSE responses as soon as it is asked to stop."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_soon_threadsafe(end_event_streams)  # wakes the loop from a signal handler
