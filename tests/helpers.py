"""Client helpers the tests share, thin over streamchat.client: post a message, watch a conversation, read SSE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from streamchat.client import FINISHED, SseFrame, StreamchatClient, StreamchatError, Watch, parse_sse

__all__ = ["FINISHED", "Frames", "InProcessServer", "SseFrame", "Target", "Transcript", "Watcher", "post_chat",
           "read_sse", "until", "wait_for_status", "wait_until_streaming"]


@dataclass
class InProcessServer:
    """The whole server as an ASGI app in the test's own event loop, for HTTP contract tests: no
    process to start. The providers, databases and everything behind the app are the real ones."""

    app: Any
    url: str = "http://in-process"
    #: End the app's lifespan now, as a SIGTERM would (running handlers get the shutdown's time, then
    #: are handed back); later calls do nothing.
    shutdown: Callable[[], Awaitable[None]] | None = None

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.app)

    def client(self, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport, base_url=self.url, timeout=30, **options)


#: What the helpers talk to: a server process's base URL, or the app served in this process.
Target = str | InProcessServer


def api_client(target: Target, api_key: str | None = None) -> StreamchatClient:
    if isinstance(target, InProcessServer):
        return StreamchatClient(target.url, api_key, timeout=10, transport=target.transport)
    return StreamchatClient(target, api_key, timeout=10)


async def post_chat(target: Target, message: str, conversation_id: str | None = None) -> dict[str, Any]:
    """POST /chat; the answer's body as the API sent it (a refusal raises StreamchatError)."""
    async with api_client(target) as client:
        return (await client.send(message, conversation_id)).body


@dataclass
class Frames:
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


class Watcher(Watch):
    """The client's WebSocket subscription, recording every frame in `watcher.watch.frames` for assertions."""

    def __init__(self, ws_url: str, conversation_id: str, item_id: str | None = None, deltas: bool = False) -> None:
        super().__init__(ws_url, conversation_id, item_id, deltas=deltas, keep_frames=True)
        assert self.frames is not None
        self.watch = Frames(self.frames)

    async def __aenter__(self) -> Watcher:
        await super().__aenter__()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def next_frame(self, timeout: float = 15) -> dict[str, Any]:
        return await self.next(timeout)

    async def until_finished(self, item_id: str, timeout: float | None = 30) -> dict[str, Any]:
        return await super().until_finished(item_id, timeout)

    async def until_text(self, item_id: str, text: str, timeout: float = 30) -> None:
        """Read frames until the item shows exactly `text` (all that a held reply has sent, say)."""
        async def shown() -> None:
            while self.text(item_id) != text:
                await self.next()

        await asyncio.wait_for(shown(), timeout)


async def wait_for_status(target: Target, conversation_id: str, item_id: str, timeout: float = 30,
                          headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Poll the HTTP API until an item finishes (for tests that watch nothing)."""
    return await _poll(target, conversation_id, item_id, lambda m: m["status"] in FINISHED, timeout, "finish",
                       headers)


async def wait_until_streaming(
    target: Target, conversation_id: str, item_id: str, timeout: float = 10
) -> dict[str, Any]:
    """Poll the HTTP API until a reply is streaming and has some text: a point mid-reply."""
    return await _poll(target, conversation_id, item_id, lambda m: m["status"] == "streaming" and bool(m["message"]),
                       timeout, "start streaming")


async def _poll(target: Target, conversation_id: str, item_id: str, done: Callable[[dict[str, Any]], bool],
                timeout: float, what: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Refusals (404 before the conversation exists, 503 while a backend restarts) are polled through."""
    key = (headers or {}).get("Authorization", "").removeprefix("Bearer ") or None
    async with api_client(target, key) as client:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            last: object
            try:
                messages = last = await client.conversation(conversation_id)
            except StreamchatError as refused:
                messages, last = [], refused
            for message in messages:
                if message["id"] == item_id and done(message):
                    return message
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{item_id} did not {what}: {last}")
            await asyncio.sleep(0.02)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    """Wait for something that must happen (polled), failing with `what` if it has not within `timeout`.

    The timeout is a bound on a hang, never a measure of speed: a pass takes as long as it takes.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(0.02)


def read_sse(response: httpx.Response) -> AsyncIterator[SseFrame | str]:
    """The frames of a text/event-stream response, by the client's parser; comments come out as plain strings."""
    return parse_sse(response.aiter_lines(), comments=True)


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
