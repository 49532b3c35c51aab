"""What a tool's handler receives beside its arguments: who is calling, from which conversation, the
app's services, and a way to report progress while it runs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from streamchat.framework.services import Services

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a running call is; the loop shows it on the call's item."""

    progress: float
    total: float | None = None
    message: str | None = None


ProgressSink = Callable[[Progress], Awaitable[None]]


async def _nowhere(progress: Progress) -> None:
    """Progress of a call nobody watches (a test calling a handler directly)."""


@dataclass(frozen=True)
class ToolContext:
    """One call's handle on the app. `key_id` is the key that owns the conversation, the caller's
    (None on a server without keys): a tool reading user data reads only what this key owns."""

    conversation_id: str
    call_id: str
    services: Services
    key_id: str | None = None
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = field(
        default_factory=lambda: logging.getLogger("streamchat.tools"))
    on_progress: ProgressSink = _nowhere

    def service(self, kind: type[T]) -> T:
        """A service the app gave the runtime (the catalog, the models), as `ctx.service` in a step."""
        return self.services.get(kind)

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Report how far the call is (shown live on its item)."""
        await self.on_progress(Progress(progress, total, message))
