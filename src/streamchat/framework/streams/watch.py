"""Following one item from inside the server: its state now, then every change, as typed events.

What a protocol view (a response that streams one reply in another wire format) reads from. It
subscribes like an SSE client does, so it gets every appended piece as its own `TextDelta`, in
order, whichever instance writes the item. A view that stops reading is not buffered without end:
past `QUEUE_LIMIT` waiting changes they are dropped and the next read is the whole item again
(`ItemState`), after which only pieces newer than it come. With `keepalive`, a `Quiet` comes after
each such span without a change, so a view can keep its connection alive (one flag set per change).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel

from streamchat.framework.store import JSON
from streamchat.framework.streams.changes import TEXT_FIELD, Change
from streamchat.framework.streams.hub import StreamHub

M = TypeVar("M", bound=BaseModel)

QUEUE_LIMIT = 20_000


@dataclass(frozen=True, slots=True)
class ItemState(Generic[M]):
    """The whole item: the state it was in when the watch began, or a write of the whole item."""

    seq: int
    data: M
    #: Which item (a group watch follows several).
    item_id: str = ""


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece appended to one of the item's string fields (its text unless `field` says otherwise)."""

    text: str
    seq: int
    item_id: str = ""
    field: str = TEXT_FIELD


@dataclass(frozen=True, slots=True)
class ItemGone:
    """The item was deleted (or is not there)."""

    item_id: str = ""


@dataclass(frozen=True, slots=True)
class Quiet:
    """Nothing changed for the watch's `keepalive` seconds."""


WatchEvent = ItemState[M] | TextDelta | ItemGone | Quiet
#: What a watch's queue holds beside changes: read the whole again, a quiet span, the server stops.
RESYNC = object()
QUIET = object()
END = object()


class ChangeQueue:
    """The hub's side of a watch: each change queued for the watch's reader, QUIET after each
    `keepalive` seconds without one, RESYNC instead of the backlog once past QUEUE_LIMIT, END when
    the server stops. ItemWatch and GroupWatch read it, each in its own terms."""

    def __init__(self, keepalive: float | None) -> None:
        self._queue: asyncio.Queue[Change | object] = asyncio.Queue()
        self._keepalive = keepalive
        self._changed = False
        self._timer: asyncio.TimerHandle | None = None
        track(self)

    def _start_ticking(self) -> None:
        if self._keepalive is not None:
            self._timer = asyncio.get_running_loop().call_later(self._keepalive, self._tick)

    def _stop_ticking(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        _open_watches.discard(self)

    def _tick(self) -> None:
        if not self._changed:
            self._queue.put_nowait(QUIET)
        self._changed = False
        assert self._keepalive is not None
        self._timer = asyncio.get_running_loop().call_later(self._keepalive, self._tick)

    def push(self, change: Change) -> None:
        self._changed = True
        if self._queue.qsize() >= QUEUE_LIMIT:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(RESYNC)
        self._queue.put_nowait(change)

    def end(self) -> None:
        """Stop the iteration after what is already queued is dropped (the server is stopping)."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(END)


class ItemWatch(ChangeQueue, Generic[M]):
    """`async with stream.watch(group, item) as watch: async for event in watch: ...`"""

    def __init__(self, hub: StreamHub, stream: str, group: str, item_id: str,
                 load: Callable[[JSON], M], keepalive: float | None = None) -> None:
        super().__init__(keepalive)
        self._hub = hub
        self._stream = stream
        self._group = group
        self._item_id = item_id
        self._load = load
        self._after = -1  # pieces at or below this seq are in an ItemState already read

    async def __aenter__(self) -> ItemWatch[M]:
        await self._hub.subscribe(self, self._stream, self._group, self._item_id, deltas=True, sse=True)
        self._start_ticking()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        self._stop_ticking()
        self._hub.unsubscribe(self, self._stream, self._group, self._item_id)

    def __aiter__(self) -> ItemWatch[M]:
        return self

    async def __anext__(self) -> WatchEvent[M]:
        while True:
            entry = await self._queue.get()
            if entry is END:
                raise StopAsyncIteration
            if entry is QUIET:
                return Quiet()
            if entry is RESYNC:
                current = await self._hub.get(self._stream, self._group, self._item_id)
                if current is None:
                    return ItemGone()
                self._after = int(current["seq"])
                return ItemState(self._after, self._load(current))
            assert isinstance(entry, Change)
            if entry.kind == "delta":
                if entry.seq is not None and entry.seq <= self._after:
                    continue
                return TextDelta(entry.payload["delta"], entry.seq or 0)
            if entry.kind == "delete" or (entry.kind == "sync" and entry.payload is None):
                return ItemGone()
            if entry.kind in ("create", "update", "sync"):
                self._after = int(entry.payload["seq"])
                return ItemState(self._after, self._load(entry.payload))


class Endable(Protocol):
    def end(self) -> None: ...


_open_watches: weakref.WeakSet[Endable] = weakref.WeakSet()


def track(watch: Endable) -> None:
    """A watch the server ends when it stops (so a view's response ends and its client resumes elsewhere)."""
    _open_watches.add(watch)


def end_watches() -> None:
    """The server is stopping: every view following an item ends now."""
    for watch in list(_open_watches):
        watch.end()
