"""Blocking code driving async code: an event loop on a private thread, its calls and its iterators.

The sync client is the async one run here, so there is one implementation of the protocol. The
loop is anyio's blocking portal (anyio comes with httpx). An iterator read from blocking code
takes one step at a time on the loop; a step that a KeyboardInterrupt stopped waiting for goes on
running, and the next `next()` waits for that same step: no piece is lost, and the async
iterator is never asked for two at once (which an async generator refuses).

The loop's thread (and every thread it starts) blocks SIGINT: a Ctrl-C the kernel handed to it would
set Python's flag without waking the main thread from its wait, so the KeyboardInterrupt would come
only with the next piece (never, for a reply that is held up).
"""

from __future__ import annotations

import contextlib
import signal
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import CancelledError, Future
from types import TracebackType
from typing import Any, Generic, TypeVar, TypeVarTuple

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class LoopThread:
    """An event loop on a thread of its own, started at once, for blocking callers; `close()` ends it."""

    def __init__(self, name: str = "streamchat-client") -> None:
        self._stack = contextlib.ExitStack()
        with _interrupts_blocked():  # the new thread keeps the mask it starts with
            self.portal: BlockingPortal = self._stack.enter_context(start_blocking_portal(name=name))
        self._iterators: weakref.WeakSet[BlockingIterator[Any]] = weakref.WeakSet()
        self.closed = False

    def call(self, function: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
        """Run a coroutine function on the loop and wait for its result (or its exception)."""
        return self.portal.call(function, *args)

    def iterate(self, source: AsyncIterator[T], close: Callable[[], Awaitable[None]] | None = None
                ) -> BlockingIterator[T]:
        """`source` read from blocking code; `close` (else the source's own `aclose`, if any) ends it early."""
        iterator = BlockingIterator(self, source, close)
        self._iterators.add(iterator)
        return iterator

    def close(self, last: Callable[[], Awaitable[None]] | None = None) -> None:
        """Close the iterators still open, then run `last` (what they read from, say), then stop the loop."""
        if self.closed:
            return
        self.closed = True
        try:
            for iterator in list(self._iterators):
                iterator.close()
            if last is not None:
                self.portal.call(last)
        finally:
            self._stack.close()


@contextlib.contextmanager
def _interrupts_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread for the block (where the platform has signal masks)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


class BlockingIterator(Generic[T]):
    """An async iterator as a blocking one (see the module); a context manager that closes it on leaving."""

    def __init__(self, loop: LoopThread, source: AsyncIterator[T],
                 close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.loop = loop
        self.source = source
        self._close = close if close is not None else getattr(source, "aclose", None)
        self._pending: Future[list[T]] | None = None
        self._stepping: anyio.Event | None = None
        self._ended = False
        self._closed = False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._ended:
            raise StopIteration
        if self._pending is None:
            self._pending = self.loop.portal.start_task_soon(self._step)
        future = self._pending
        try:
            got = future.result()
        except BaseException as error:
            # The step's own failure ends it; anything else (KeyboardInterrupt) only stopped the waiting.
            if future.done() and (future.cancelled() or future.exception() is error):
                self._pending = None
                self._ended = True
            raise
        self._pending = None
        if not got:
            self._ended = True
            raise StopIteration
        return got[0]

    async def _step(self) -> list[T]:
        """The next item, or nothing at the end."""
        self._stepping = anyio.Event()
        try:
            return [await anext(self.source)]
        except StopAsyncIteration:
            return []
        finally:
            self._stepping.set()

    def close(self) -> None:
        """Stop reading: a step still running is cancelled, then the source is closed."""
        if self._closed:
            return
        self._closed = self._ended = True
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
        with contextlib.suppress(CancelledError, RuntimeError):
            self.loop.call(self._aclose)

    async def _aclose(self) -> None:
        if self._stepping is not None:
            await self._stepping.wait()
        if self._close is not None:
            await self._close()

    def __enter__(self) -> BlockingIterator[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
