"""The serving process's memory: a closed WebSocket connection is freed at once, not by a later collection.

A real uvicorn server in this process (so its objects can be counted) and a real WebSocket client
with compression, as browsers connect.
"""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import uvicorn
import websockets
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.server import ServerProtocol

from conftest import InProcessStarter, free_port
from helpers import until
from streamchat.framework.http.socket_lane import route_path
from streamchat.serving import IDLE_COMPRESSOR_SECONDS, WebSocketProtocol


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": message["text"]})


def alive() -> int:
    return sum(1 for thing in gc.get_objects() if type(thing) is ServerProtocol)


@pytest.fixture
def no_collections() -> Iterator[None]:
    """Only reference counting frees objects meanwhile, as between two of the server's rare collections."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


async def connections_left_after_closing(protocol: type[WebSocketsSansIOProtocol], count: int) -> int:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(echo_app, host="127.0.0.1", port=port, ws=protocol,
                                           ws_per_message_deflate=True, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    async def every_close_seen() -> bool:  # a connection leaves the server's set once it has seen it close
        return not server.server_state.connections

    await until(started, "the server started")
    try:
        before = alive()
        for index in range(count):
            async with websockets.connect(f"ws://127.0.0.1:{port}/", compression="deflate") as socket:
                await socket.send(f"hello {index}")
                assert await socket.recv() == f"hello {index}"
        await until(every_close_seen, "the server saw every close")
        return alive() - before
    finally:
        server.should_exit = True
        await serving


async def test_a_closed_connection_is_freed_at_once(no_collections: None) -> None:
    assert await connections_left_after_closing(WebSocketProtocol, 20) == 0


async def test_without_it_closed_connections_wait_for_a_collection(no_collections: None) -> None:
    """The measurement above can fail: uvicorn's own protocol leaves every closed connection behind."""
    assert await connections_left_after_closing(WebSocketsSansIOProtocol, 20) == 20


async def greeting_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts, sends one message (as a join's sync is sent), then waits for the client to leave."""
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "welcome " * 20})
    while (await receive())["type"] == "websocket.receive":
        pass


HANDSHAKE = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
             b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")


async def open_compressed(port: int) -> asyncio.StreamWriter:
    """A bare client (so the client's own objects stay few): the handshake, then the first message,
    checked to be compressed (RSV1)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HANDSHAKE)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" in head, head
    first = await reader.readexactly(2)
    assert first[0] & 0x40, "the server's first message was not compressed"
    await reader.readexactly(first[1] & 0x7F)
    return writer


Opener = Callable[[int], Awaitable[asyncio.StreamWriter]]


async def idle_bytes_per_connection(protocol: type[WebSocketsSansIOProtocol], count: int, app: Any = greeting_app,
                                    opener: Opener = open_compressed) -> float:
    """Python memory (tracemalloc, which sees zlib's state) per open connection that has been idle a while."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, ws=protocol,
                                           ws_per_message_deflate=True, lifespan="off", log_level="warning"))
    serving = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    await until(started, "the server started")
    writers: list[asyncio.StreamWriter] = []
    try:
        for writer in [await opener(port) for _ in range(3)]:  # the first connections warm up
            writer.close()
        tracemalloc.start()
        try:
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            writers = [await opener(port) for _ in range(count)]
            await asyncio.sleep(2.5 * IDLE_COMPRESSOR_SECONDS)
            gc.collect()
            return (tracemalloc.get_traced_memory()[0] - before) / count
        finally:
            tracemalloc.stop()
    finally:
        for writer in writers:
            writer.close()
        server.should_exit = True
        await serving


#: Well above what an idle connection holds here (~21 KB with its bare client, measured), well below the
#: ~68 KB with uvicorn's own protocol, whose compressor and decompressor stay for the connection's life.
IDLE_CONNECTION_BOUND = 40_000


async def test_an_idle_connection_holds_no_compressor() -> None:
    assert await idle_bytes_per_connection(WebSocketProtocol, 20) < IDLE_CONNECTION_BOUND


async def test_without_it_an_idle_connection_keeps_its_compressor() -> None:
    """The measurement above can fail: uvicorn's own protocol keeps zlib's state while the socket is open."""
    assert await idle_bytes_per_connection(WebSocketsSansIOProtocol, 20) > IDLE_CONNECTION_BOUND


async def joined_and_idle(port: int) -> asyncio.StreamWriter:
    """A bare client of the stream socket that joined a group of its own and read its (compressed) sync."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HANDSHAKE)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" in head, head
    join = json.dumps({"type": "join", "data": {"streamName": "conversation", "groupId": uuid.uuid4().hex,
                                                "subscriptionId": "s"}}, separators=(",", ":")).encode()
    assert len(join) < 126
    writer.write(bytes([0x81, 0x80 | len(join), 0, 0, 0, 0]) + join)  # masked with a key of zeros
    first = await reader.readexactly(2)
    assert first[0] & 0x40, "the sync was not compressed"
    await reader.readexactly(first[1] & 0x7F)
    return writer


#: Measured ~25.6 KB a joined idle socket here (the bare client's own objects in this process included),
#: ~35.7 KB when the socket went through the HTTP middleware stack (each layer keeps a suspended frame
#: while the socket is open), kept the handshake's headers and an empty outbox.
JOINED_SOCKET_BOUND = 30_000


async def test_an_idle_stream_socket_of_the_app_skips_the_http_stack(in_process: InProcessStarter) -> None:
    server = await in_process()
    assert await idle_bytes_per_connection(WebSocketProtocol, 20, server.app, joined_and_idle) < JOINED_SOCKET_BOUND


@pytest.mark.parametrize(("path", "root", "seen"), [("/", "", "/"), ("/chat/", "/chat", "/"), ("/chat", "/chat", "/"),
                                                   ("/api", "", "/api"), ("/other/", "/chat", "/other/")])
def test_the_socket_lane_matches_paths_as_the_routes_do(path: str, root: str, seen: str) -> None:
    assert route_path({"path": path, "root_path": root}) == seen
