"""Client helpers the tests share: post a message, watch a conversation over the real WebSocket."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import websockets

FINISHED = ("completed", "error", "stopped")


async def post_chat(base_url: str, message: str, conversation_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if conversation_id is not None:
        body["conversationId"] = conversation_id
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await client.post("/chat", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


@dataclass
class Watch:
    """Frames one WebSocket client received for a conversation, in arrival order."""

    frames: list[dict[str, Any]] = field(default_factory=list)

    def items(self, item_id: str) -> list[dict[str, Any]]:
        """Every version of one item seen, from syncs and item events."""
        seen: list[dict[str, Any]] = []
        for frame in self.frames:
            data = frame["event"].get("data")
            if frame["event"]["type"] == "sync":
                for item in data if isinstance(data, list) else [data]:
                    if item and item["id"] == item_id:
                        seen.append(item)
            elif isinstance(data, dict) and data.get("id") == item_id:
                seen.append(data)
        return seen

    def final(self, item_id: str) -> dict[str, Any]:
        return self.items(item_id)[-1]


class Watcher:
    """A joined WebSocket subscriber: `await watcher.until_finished(message_id)`."""

    def __init__(self, ws_url: str, conversation_id: str, item_id: str | None = None, deltas: bool = False) -> None:
        self.ws_url = ws_url
        self.join: dict[str, Any] = {"streamName": "conversation", "groupId": conversation_id,
                                     "subscriptionId": str(uuid.uuid4())}
        if item_id is not None:
            self.join["id"] = item_id
        if deltas:
            self.join["delta"] = True
        self.watch = Watch()
        self.socket: Any = None

    async def __aenter__(self) -> Watcher:
        self.socket = await websockets.connect(self.ws_url)
        await self.socket.send(orjson.dumps({"type": "join", "data": self.join}))
        first = await self.next_frame()
        assert first["event"]["type"] == "sync", first
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.socket.close()

    async def next_frame(self, timeout: float = 15) -> dict[str, Any]:
        frame = dict(orjson.loads(await asyncio.wait_for(self.socket.recv(), timeout)))
        self.watch.frames.append(frame)
        return frame

    async def until_finished(self, item_id: str, timeout: float = 30) -> dict[str, Any]:
        async def loop() -> dict[str, Any]:
            while True:
                frame = await self.next_frame(timeout)
                data = frame["event"].get("data")
                if isinstance(data, dict) and data.get("id") == item_id and data.get("status") in FINISHED:
                    return data

        return await asyncio.wait_for(loop(), timeout)


async def wait_for_status(base_url: str, conversation_id: str, item_id: str, timeout: float = 30,
                          headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Poll the HTTP API until an item finishes (for tests that watch nothing)."""
    return await _poll(base_url, conversation_id, item_id, lambda m: m["status"] in FINISHED, timeout, "finish",
                       headers)


async def wait_until_streaming(
    base_url: str, conversation_id: str, item_id: str, timeout: float = 10
) -> dict[str, Any]:
    """Poll the HTTP API until a reply is streaming and has some text: a point mid-reply."""
    return await _poll(base_url, conversation_id, item_id, lambda m: m["status"] == "streaming" and bool(m["message"]),
                       timeout, "start streaming")


async def _poll(base_url: str, conversation_id: str, item_id: str, done: Callable[[dict[str, Any]], bool],
                timeout: float, what: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10, headers=headers) as client:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            response = await client.get(f"/api/conversations/{conversation_id}")
            if response.status_code == 200:
                for message in response.json()["messages"]:
                    if message["id"] == item_id and done(message):
                        return dict(message)
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{item_id} did not {what}: {response.text}")
            await asyncio.sleep(0.02)


@dataclass
class SseFrame:
    id: int | None
    event: str
    data: Any


async def read_sse(response: httpx.Response) -> AsyncIterator[SseFrame | str]:
    """Parse a text/event-stream body into frames; comments come out as plain strings."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield line
        elif line == "":
            if "data" in fields:
                yield SseFrame(int(fields["id"]) if "id" in fields else None, fields.get("event", "message"),
                               orjson.loads(fields["data"]))
            fields = {}
        else:
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


@dataclass
class Transcript:
    """What an SSE client knows, rebuilt from item and delta frames alone."""

    texts: dict[str, str] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)
    last_id: int | None = None

    def apply(self, frame: SseFrame) -> None:
        if frame.event == "item":
            self.texts[frame.data["id"]] = frame.data["message"]
            self.status[frame.data["id"]] = frame.data["status"]
        elif frame.event == "delta":
            self.texts[frame.data["id"]] += frame.data["delta"]
        elif frame.event == "delete":
            self.texts.pop(frame.data["id"], None)
        if frame.id is not None:
            self.ids.append(frame.id)
            self.last_id = frame.id
