"""Stopping a running piece of work by key, e.g. one reply, from any request.

A handler wraps an async iterator (a provider stream) in `ctx.stoppable(key)`; another handler
calls `ctx.request_stop(key)`. The wrapped iterator runs in its own pump task, so a stop cancels
only that task — the provider's connection closes at once, even mid-wait — while the handler's
own writes are never interrupted half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")
_END = object()


class StopRegistry:
    """Running stoppable scopes of this process, by key."""

    def __init__(self) -> None:
        self._running: dict[str, Stoppable[Any]] = {}

    def register(self, key: str, scope: Stoppable[Any]) -> None:
        self._running[key] = scope

    def unregister(self, key: str, scope: Stoppable[Any]) -> None:
        if self._running.get(key) is scope:
            del self._running[key]

    def running(self, key: str) -> bool:
        return key in self._running

    async def stop(self, key: str, wait: float = 0.0) -> bool:
        """Stop the scope running under `key`; True if one was. Waits up to `wait` s for it to wind up."""
        scope = self._running.get(key)
        if scope is None:
            return False
        scope.stop()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(scope.finished.wait(), wait)
        return True


class Stoppable(Generic[T]):
    """`async with ctx.stoppable(key) as scope: async for x in scope.iterate(source): ...`"""

    def __init__(self, registry: StopRegistry, key: str) -> None:
        self.registry = registry
        self.key = key
        self.stopped = False
        self.finished = asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[object] = asyncio.Queue()

    async def __aenter__(self) -> Stoppable[T]:
        self.registry.register(self.key, self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        self.registry.unregister(self.key, self)
        await self._cancel_pump()
        self.finished.set()

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self._queue.put_nowait(_END)
            if self._pump is not None:
                self._pump.cancel()

    async def _cancel_pump(self) -> None:
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    def iterate(self, source: AsyncIterator[T]) -> AsyncIterator[T]:
        """Start pulling from `source` at once (in the pump task) and yield what it gives, until it
        ends, raises (re-raised here), or the scope is stopped. Starting early lets a caller do other
        work, such as a status write, while the first item is on its way."""
        if not self.stopped:
            self._pump = asyncio.create_task(self._pull(source))
        return self._drain()

    async def _pull(self, source: AsyncIterator[T]) -> None:
        try:
            async for value in source:
                self._queue.put_nowait(value)
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            self._queue.put_nowait(error)
        finally:
            self._queue.put_nowait(_END)
            close = getattr(source, "aclose", None)
            if close is not None:
                with contextlib.suppress(BaseException):
                    await close()

    async def _drain(self) -> AsyncIterator[T]:
        if self._pump is None:
            return
        try:
            while (value := await self._queue.get()) is not _END:
                if isinstance(value, BaseException):
                    raise value
                yield cast(T, value)
        finally:
            await self._cancel_pump()
