"""Limits that keep one caller from hurting the others: request size and request rates.

- `BodyLimitMiddleware`: a request body over `max_bytes` (or its path's own limit) is refused
  with 413 before a handler reads it (by Content-Length, or while a chunked body arrives).
- `RateLimiter`: named buckets of requests per minute per caller (an API key, or the client's
  address when the service runs open). Fixed one-minute windows, counted in Redis when the
  deployment has it (so every instance shares the count), else in this process. A refused call
  is told how long to wait (429 with Retry-After).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamchat.framework.errors import ErrorFormats
from streamchat.framework.redis_link import RedisLink

WINDOW_SECONDS = 60


class BodyLimitMiddleware:
    """413 for request bodies larger than `max_bytes`, or than `by_path[path]` for those paths."""

    def __init__(self, app: ASGIApp, max_bytes: int, by_path: Mapping[str, int] | None = None,
                 error_formats: ErrorFormats | None = None) -> None:
        self.app = app
        self.error_formats = error_formats or ErrorFormats()
        self.max_bytes = max_bytes
        self.by_path = dict(by_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.by_path.get(scope["path"], self.max_bytes) if scope["type"] == "http" else 0
        if limit <= 0:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(scope, send, limit)
                return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, send, limit)

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        status, shaped = self.error_formats.body(scope["path"], 413, "payload_too_large",
                                                 f"request body larger than {limit} bytes")
        body = orjson.dumps(shaped)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """Raised inside the app when a streamed body passes the limit."""


class RateLimiter:
    """Requests per minute per caller, by bucket name (e.g. "messages")."""

    def __init__(self, per_minute: Mapping[str, int], link: RedisLink | None = None) -> None:
        self.per_minute = {name: limit for name, limit in per_minute.items() if limit > 0}
        self.link = link
        self._counts: dict[tuple[str, str, int], int] = {}

    async def check(self, bucket: str, caller: str) -> float | None:
        """Count one request; None if allowed, else the seconds to wait before the next one may pass."""
        limit = self.per_minute.get(bucket)
        if limit is None:
            return None
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        count = await self._count(bucket, caller, window)
        if count <= limit:
            return None
        return max(1.0, (window + 1) * WINDOW_SECONDS - now)

    async def _count(self, bucket: str, caller: str, window: int) -> int:
        if self.link is not None:
            key = self.link.key("rate", bucket, caller, str(window))
            client: Any = self.link.client

            async def incr() -> int:
                async with client.pipeline(transaction=True) as pipe:
                    pipe.incr(key)
                    pipe.expire(key, WINDOW_SECONDS * 2)
                    count, _ = await pipe.execute()
                return int(count)

            return await self.link.call(incr, "rate limit")
        for stale in [k for k in self._counts if k[2] < window]:
            del self._counts[stale]
        self._counts[bucket, caller, window] = self._counts.get((bucket, caller, window), 0) + 1
        return self._counts[bucket, caller, window]
