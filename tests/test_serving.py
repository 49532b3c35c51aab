"""The serving process's memory: a closed WebSocket connection is freed at once, not by a later collection.

A real uvicorn server in this process (so its objects can be counted) and a real WebSocket client
with compression, as browsers connect.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
import websockets
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.server import ServerProtocol

from conftest import free_port
from helpers import until
from streamchat.serving import WebSocketProtocol


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
