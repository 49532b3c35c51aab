"""How `streamchat serve` runs the app under uvicorn, where the process's memory is concerned.

Garbage collection: young objects are collected rarely, so pauses stay off the token path, and the
objects made at start-up are left out of every collection.

WebSocket connections: the websockets library's protocol object is a reference cycle (its frame
parser is a generator that holds it), and with compression on it carried ~50 KB of zlib state.
Left to the collector, closed connections piled up between collections: at 10 new chats a
second, about a thousand of them, 60 MB (the soak, bench/soak.py). Closing the parser when the
connection is lost breaks the cycle, so a closed connection is freed at once. An open connection
holds zlib state only while it sends (deflate.py): its compressor goes after IDLE_COMPRESSOR_SECONDS
without a message, and the handshake's request and response once the handshake is through.

Stopping: uvicorn waits for open responses before the app's shutdown, and an SSE response never
ends by itself, so one watcher held a SIGTERM for the whole graceful timeout. The server ends every
SSE response as the signal arrives (its clients resume from their Last-Event-ID elsewhere or once
the server is back); WebSockets are closed by uvicorn itself.
"""

from __future__ import annotations

import asyncio
import gc
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request

from streamchat.deflate import LazyDeflate, LazyDeflateFactory
from streamchat.framework import end_event_streams

GC_THRESHOLDS = (50_000, 50, 100)
#: How long a connection may send nothing before its compressor is dropped (checked once a period,
#: so it goes between one and two periods after the last message).
IDLE_COMPRESSOR_SECONDS = 2.0


def configure_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol (websockets, sans-I/O), holding little while idle and freed as
    soon as its connection is lost."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if config.ws_per_message_deflate:
            self.conn.available_extensions = [LazyDeflateFactory()]
        self.deflate: LazyDeflate | None = None
        self.idle_check: asyncio.TimerHandle | None = None
        self.sent_at_check = 0

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        for extension in self.conn.extensions:
            if isinstance(extension, LazyDeflate):
                self.deflate = extension
                extension.on_compressor = self._check_idle_later

    def start_keepalive(self) -> None:
        """Called once the handshake's response is sent: uvicorn needs neither half of it any more."""
        super().start_keepalive()
        # websockets' parser keeps the request for the connection's life: its headers at least go.
        self.request.headers.clear()
        del self.request, self.response

    def _check_idle_later(self) -> None:
        if self.idle_check is None and not self.disconnected:
            self.idle_check = self.loop.call_later(IDLE_COMPRESSOR_SECONDS, self._check_idle)

    def _check_idle(self) -> None:
        """Drop the compressor if nothing was sent since the last check; otherwise look again later."""
        self.idle_check = None
        deflate = self.deflate
        if deflate is None or deflate.compressor is None:
            return
        if deflate.sent == self.sent_at_check:
            deflate.release()
            return
        self.sent_at_check = deflate.sent
        self._check_idle_later()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.conn.parser.close()
        if self.idle_check is not None:
            self.idle_check.cancel()
            self.idle_check = None
        if self.deflate is not None:  # it calls back into this protocol: a cycle, unless broken here
            self.deflate.on_compressor = None
            self.deflate = None


class Server(uvicorn.Server):
    """uvicorn's server, ending the SSE responses as soon as it is asked to stop."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_soon_threadsafe(end_event_streams)  # wakes the loop from a signal handler
