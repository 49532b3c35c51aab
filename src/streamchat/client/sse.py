"""Server-Sent Events: one parser of `text/event-stream`, and a conversation's events that survive a drop.

streamchat sends `item`, `delta` and `delete` frames, each with `id: <seq>` and one `data:` line
of JSON. A client that reconnects with the last id it saw (`Last-Event-ID`) gets exactly the
frames after it, so `Events` reconnects on its own and the caller sees one unbroken sequence.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import orjson

from streamchat.client.errors import StreamchatError


@dataclass(frozen=True, slots=True)
class SseFrame:
    """One event: its `id` (the conversation's seq; None for a frame without one), name and JSON data."""

    id: int | None
    event: str
    data: Any


class SseParser:
    """Feed it the lines of a stream, one at a time; it gives a frame at each blank line that ends one.

    Fields follow the SSE format: `data:` lines join with newlines, a frame without data is not an
    event, `retry:` sets the reconnection delay (kept in `retry_ms`), a line starting with `:` is
    a comment. Only streamchat's needs are kept: `data` is parsed as JSON and `id` as an integer.
    """

    __slots__ = ("_data", "_event", "_id", "retry_ms")

    def __init__(self) -> None:
        self.retry_ms: int | None = None
        self.reset()

    def reset(self) -> None:
        """Forget a half-received frame (its connection was cut before the blank line that ends it)."""
        self._id: str | None = None
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> SseFrame | str | None:
        """The frame this line completes, the line itself if it is a comment, else None."""
        if not line:
            if not self._data:
                self.reset()
                return None
            frame = SseFrame(None if self._id is None else int(self._id), self._event or "message",
                             orjson.loads("\n".join(self._data)))
            self.reset()
            return frame
        if line[0] == ":":
            return line
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None


async def parse_sse(lines: AsyncIterable[str], *, comments: bool = False) -> AsyncIterator[SseFrame | str]:
    """The frames of a stream of lines (e.g. `response.aiter_lines()`); comments too if asked."""
    parser = SseParser()
    async for line in lines:
        parsed = parser.feed(line)
        if parsed is not None and (comments or not isinstance(parsed, str)):
            yield parsed


class Events:
    """A conversation's SSE frames, reconnecting after a dropped connection and resuming exactly.

    Iterate it (`async for frame in events`); it never ends by itself, as the stream does not. A
    connection that ends or breaks is opened again with `Last-Event-ID` set to the last id seen,
    after the delay the server asks for (`retry:`, doubled after each failed attempt), so the
    frames go on with no gap and no repeat. A first connection that fails raises at once; a
    reconnection gives up after `retries` failed attempts. A 4xx is the API's answer and is raised
    at once as StreamchatError. `async with` connects on entering (the subscription is live from
    then on) and closes on leaving. `bytes_received` (characters of the lines, newlines counted)
    and `wire_bytes` (as downloaded) add up every connection.
    """

    def __init__(self, http: httpx.AsyncClient, path: str, last_event_id: int | None = None, *,
                 retries: int = 5, read_timeout: float | None = 60.0) -> None:
        self.http = http
        self.path = path
        self.last_event_id = last_event_id
        self.retries = retries
        self.read_timeout = read_timeout
        self.connections = 0
        self.bytes_received = 0
        self._parser = SseParser()
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self._downloaded_before = 0

    @property
    def reconnects(self) -> int:
        return max(0, self.connections - 1)

    @property
    def wire_bytes(self) -> int:
        current = self._response.num_bytes_downloaded if self._response is not None else 0
        return self._downloaded_before + current

    async def __aenter__(self) -> Events:
        await self._connect()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()

    def __aiter__(self) -> Events:
        return self

    async def __anext__(self) -> SseFrame:
        while True:
            if self._lines is None:
                await self._connect()
                assert self._lines is not None
            try:
                line = await anext(self._lines)
            except (StopAsyncIteration, httpx.TransportError):
                await self._drop()
                continue
            self.bytes_received += len(line) + 1
            parsed = self._parser.feed(line)
            if parsed is None or isinstance(parsed, str):
                continue
            if parsed.id is not None:
                self.last_event_id = parsed.id
            return parsed

    async def aclose(self) -> None:
        await self._drop()

    async def _connect(self) -> None:
        reconnecting = self.connections > 0
        failures = 0
        while True:
            if reconnecting:
                await asyncio.sleep(min(30.0, (self._parser.retry_ms or 1000) / 1000 * 2**failures))
            try:
                response = await self.http.send(self._request(), stream=True)
            except httpx.TransportError:
                if not reconnecting or failures >= self.retries:
                    raise
                failures += 1
                continue
            if response.status_code != 200:
                await response.aread()
                await response.aclose()
                error = StreamchatError.from_response(response)
                if response.status_code < 500 or not reconnecting or failures >= self.retries:
                    raise error
                failures += 1
                continue
            self.connections += 1
            self._response, self._lines = response, response.aiter_lines()
            self._parser.reset()
            return

    def _request(self) -> httpx.Request:
        headers = {} if self.last_event_id is None else {"Last-Event-ID": str(self.last_event_id)}
        base = self.http.timeout
        timeout = httpx.Timeout(connect=base.connect, read=self.read_timeout, write=base.write, pool=base.pool)
        return self.http.build_request("GET", self.path, headers=headers, timeout=timeout)

    async def _drop(self) -> None:
        """Close the current connection, if any; the next frame asked for opens a new one."""
        lines, response, self._lines, self._response = self._lines, self._response, None, None
        if isinstance(lines, AsyncGenerator):
            await lines.aclose()
        if response is not None:
            self._downloaded_before += response.num_bytes_downloaded
            await response.aclose()
