"""The stream socket's own way in: past the HTTP middleware stack, through the key check alone.

Why: every layer of an ASGI stack keeps a suspended frame (and often a wrapped `send`) for as long
as a WebSocket stays open. FastAPI's stack is about a dozen layers (its telemetry, error, body-limit,
exit-stack and exception layers, the router, the route's wrappers, the app's own middlewares), which
an idle socket paid for in memory its whole life (bench/memory.py), while the stream socket needs
only the key check: the metrics and body limits apply to HTTP requests only.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send


def route_path(scope: Scope) -> str:
    """The path the app's routes see: the request's path without the prefix it is served under."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root):] or "/"
    return path


class AppWithSocketLane(FastAPI):
    """A FastAPI app whose WebSocket at `socket_path` goes straight to `socket` (set once built)."""

    socket_path = "/"
    socket: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.socket is not None and scope["type"] == "websocket" and route_path(scope) == self.socket_path:
            scope["app"] = self
            await self.socket(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
