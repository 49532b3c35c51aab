"""Stopping a running piece of work by key, e.g. one reply, from any request.

A handler wraps an async iterator (a provider stream) in `ctx.stoppable(key)`; another handler
calls `ctx.request_stop(key)`. A stop interrupts only a wait inside that iterator — the provider's
connection closes at once, even mid-wait — never the handler's own writes half-way. Winding a
scope up ignores the source's errors but never the handler's own cancellation (a shutdown's).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from streamchat.framework.cancellation import settle

T = TypeVar("T")


class StopRoute(Protocol):
    """Reaches scopes running in other instances (see router.py)."""

    async def announce(self, key: str) -> None: ...

    async def withdraw(self, key: str) -> None: ...

    async def stop_elsewhere(self, key: str, wait: float) -> bool: ...


class StopRegistry:
    """Running stoppable scopes of this process, by key; with a `route`, of every instance."""

    def __init__(self) -> None:
        self._running: dict[str, Stoppable[Any]] = {}
        self.route: StopRoute | None = None

    def register(self, key: str, scope: Stoppable[Any]) -> None:
        self._running[key] = scope

    def unregister(self, key: str, scope: Stoppable[Any]) -> None:
        if self._running.get(key) is scope:
            del self._running[key]

    async def stop(self, key: str, wait: float = 0.0) -> bool:
        """Stop the scope running under `key`, here or (with a route) in another instance; True if one
        was. Waits up to `wait` s for it to wind up.
        """
        if key not in self._running and self.route is not None:
            return await self.route.stop_elsewhere(key, wait)
        return await self.stop_here(key, wait)

    async def stop_here(self, key: str, wait: float = 0.0) -> bool:
        scope = self._running.get(key)
        if scope is None:
            return False
        scope.stop()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(scope.finished(), wait)
        return True


class Stoppable(Generic[T]):
    """`async with ctx.stoppable(key) as scope: async for x in scope.iterate(source): ...`

    The handler pulls from `source` itself (no extra task per item). A stop that arrives while it
    waits inside `source` cancels that wait, so the provider's connection closes at once; a stop
    that arrives while the handler does its own work (a store write) only ends the loop after it.
    """

    def __init__(self, registry: StopRegistry, key: str) -> None:
        self.registry = registry
        self.key = key
        self.stopped = False
        #: Set once the scope is left; made only when someone waits for that (an asyncio.Event holds a
        #: deque, most of a running reply's own objects here).
        self._left = False
        self._finished: asyncio.Future[None] | None = None
        self._first: asyncio.Task[T] | None = None
        self._source: AsyncIterator[T] | None = None
        self._pulling: AsyncGenerator[T, None] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._waiting = False
        self._cancelled_by_stop = False

    async def __aenter__(self) -> Stoppable[T]:
        self.registry.register(self.key, self)
        if self.registry.route is not None:
            await self.registry.route.announce(self.key)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        self.registry.unregister(self.key, self)
        try:
            if self._first is not None and not self._first.done():
                self._first.cancel()
                await settle(self._first)
            if self._pulling is not None:
                # The handler left early (a refused write, an error): close the source now, not whenever
                # the generators are collected. Closing a finished one does nothing.
                await settle(self._pulling.aclose())
                await _close(self._source)
        finally:
            self._left = True
            if self._finished is not None and not self._finished.done():
                self._finished.set_result(None)
            if self.registry.route is not None:
                await self.registry.route.withdraw(self.key)

    async def finished(self) -> None:
        """Once the scope has been left (its run wrote what it had to)."""
        if self._left:
            return
        if self._finished is None:
            self._finished = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._finished)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self._first is not None and not self._first.done():
            self._first.cancel()
        elif self._waiting and self._task is not None:
            self._cancelled_by_stop = True
            self._task.cancel()

    def iterate(self, source: AsyncIterator[T]) -> AsyncIterator[T]:
        """Yield from `source` until it ends, raises (re-raised here), or the scope is stopped.

        The first item is requested at once, in a task of its own, so the caller can do other
        work (a status write) while it is on its way; the rest are pulled directly.
        """
        if not self.stopped:
            self._first = asyncio.ensure_future(anext(source))
        self._source, self._pulling = source, self._pull(source)
        return self._pulling

    async def _pull(self, source: AsyncIterator[T]) -> AsyncGenerator[T, None]:
        if self._first is None:
            return
        self._task = asyncio.current_task()
        try:
            try:
                value = await self._first
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if self.stopped and self._first.cancelled() and not self._own_cancel_pending():
                    return
                raise
            yield value
            while not self.stopped:
                self._waiting = True
                try:
                    value = await anext(source)
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if self._cancelled_by_stop and self._task is not None and self._task.uncancel() == 0:
                        return
                    raise
                finally:
                    self._waiting = False
                yield value
        finally:
            await _close(source)

    def _own_cancel_pending(self) -> bool:
        return self._task is not None and self._task.cancelling() > 0


async def _close(source: AsyncIterator[Any] | None) -> None:
    close = getattr(source, "aclose", None)
    if close is not None:
        await settle(close())
