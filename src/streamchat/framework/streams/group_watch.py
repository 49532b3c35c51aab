"""Following a whole group from inside the server: every item's state now, then each change, typed.

What a protocol view reads when what it shows spans several items (a reply and the tool calls it
makes, which appear while it streams). It joins the group as an SSE client does: the snapshot comes
first, as one `ItemState` per item in the group's order (`snapshot()` hands it over at once, so a
view can lay it out before anything live), then every write, appended piece and delete of any item,
each naming its item. Past `QUEUE_LIMIT` waiting changes a slow reader gets the whole group again.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from streamchat.framework.store import JSON
from streamchat.framework.streams.changes import TEXT_FIELD, Change
from streamchat.framework.streams.hub import StreamHub
from streamchat.framework.streams.watch import END, QUIET, RESYNC, ChangeQueue, ItemGone, ItemState, Quiet, TextDelta

M = TypeVar("M", bound=BaseModel)

GroupEvent = ItemState[M] | TextDelta | ItemGone | Quiet


class GroupWatch(ChangeQueue, Generic[M]):
    """`async with stream.watch_group(group) as watch: first = watch.snapshot(); async for event in watch: ...`"""

    def __init__(self, hub: StreamHub, stream: str, group: str, load: Callable[[JSON], M],
                 keepalive: float | None = None) -> None:
        super().__init__(keepalive)
        self._hub = hub
        self._stream = stream
        self._group = group
        self._load = load
        self._pending: list[GroupEvent[M]] = []
        #: Per item, pieces at or below this seq are in an ItemState already read.
        self._after: dict[str, int] = {}

    async def __aenter__(self) -> GroupWatch[M]:
        await self._hub.subscribe(self, self._stream, self._group, deltas=True, sse=True)
        self._start_ticking()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        self._stop_ticking()
        self._hub.unsubscribe(self, self._stream, self._group)

    def snapshot(self) -> list[ItemState[M]]:
        """The group as it was when the watch began (call it first, before iterating): the items the
        join pushed, in the group's order. Nothing can come between the join and this call."""
        states: list[ItemState[M]] = []
        while not self._queue.empty():
            entry = self._queue.get_nowait()
            event = self._event(entry) if isinstance(entry, Change) else None
            if isinstance(event, ItemState):
                states.append(event)
        return states

    def __aiter__(self) -> GroupWatch[M]:
        return self

    async def __anext__(self) -> GroupEvent[M]:
        while True:
            if self._pending:
                return self._pending.pop(0)
            entry = await self._queue.get()
            if entry is END:
                raise StopAsyncIteration
            if entry is QUIET:
                return Quiet()
            if entry is RESYNC:
                self._pending = [self._state(item) for item in await self._hub.list_group(self._stream, self._group)]
                continue
            assert isinstance(entry, Change)
            event = self._event(entry)
            if event is not None:
                return event

    def _state(self, item: JSON) -> ItemState[M]:
        item_id = str(item["id"])
        self._after[item_id] = int(item["seq"])
        return ItemState(int(item["seq"]), self._load(item), item_id)

    def _event(self, change: Change) -> GroupEvent[M] | None:
        item_id = change.item_id
        if item_id is None:
            return None  # a group event: not an item's
        if change.kind == "delta":
            payload: dict[str, Any] = change.payload
            if change.seq is not None and change.seq <= self._after.get(item_id, -1):
                return None
            return TextDelta(payload["delta"], change.seq or 0, item_id, payload.get("field", TEXT_FIELD))
        if change.kind == "delete":
            self._after.pop(item_id, None)
            return ItemGone(item_id)
        if change.kind in ("create", "update", "sync") and isinstance(change.payload, dict):
            return self._state(change.payload)
        return None
