"""Write-back: streaming text reaches the store in batches, not once per piece.

Every streaming item's text is written in one batched store write every STORE_FLUSH_SECONDS, so
a fast model costs the store a few writes a second however many pieces it sends. Whole items a
broadcasting sequencer has announced but the store could not take yet (down or full) are
retried on the same beat, so the store never stays behind the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from streamchat.framework.cancellation import stop_task
from streamchat.framework.store import Store, StoredItem
from streamchat.framework.streams.group import GroupState, LiveItem

logger = logging.getLogger("streamchat.streams")

STORE_FLUSH_SECONDS = 0.5
#: A streaming item nobody appended to for this long stops being kept in memory by its writer.
WRITER_IDLE_SECONDS = 60.0

Key = tuple[str, str, str]


class WriteBack:
    """Queues streaming items' text and unstored whole items, and writes them on one beat."""

    def __init__(self, store: Store, groups: Iterable[GroupState], *, fences_in_store: bool) -> None:
        self.store = store
        #: The hub's groups, whose quiet writers are forgotten once everything they wrote is stored.
        self.groups = groups
        #: Whether the store checks each writer's lease (one instance) or the sequencer did already.
        self.fences_in_store = fences_in_store
        self._dirty: dict[Key, LiveItem] = {}
        self._unstored: dict[Key, StoredItem] = {}
        self._flusher: asyncio.Task[None] | None = None

    def mark_dirty(self, key: Key, live: LiveItem) -> None:
        """Queue a streaming item's text for the next batched write."""
        if not live.dirty:
            live.dirty = True
            self._dirty[key] = live
            self._start()

    def keep_unstored(self, key: Key, item: StoredItem) -> None:
        """Retry a whole item the store could not take, on the next beat and until it can."""
        self._unstored[key] = item
        self._start()

    def drop_text(self, key: Key) -> None:
        self._dirty.pop(key, None)

    def drop_item(self, key: Key) -> None:
        self._unstored.pop(key, None)

    def _start(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically())

    async def _flush_periodically(self) -> None:
        while self._dirty or self._unstored:
            await asyncio.sleep(STORE_FLUSH_SECONDS)
            await self.flush()

    async def flush(self) -> None:
        batch, self._dirty = self._dirty, {}
        by_stream: dict[str, list[tuple[str, StoredItem, LiveItem]]] = {}
        for (stream, group, item_id), live in batch.items():
            live.dirty = False
            if not live.ended and live.seq > live.stored_seq:
                by_stream.setdefault(stream, []).append((group, live.snapshot(item_id), live))
        for stream, rows in by_stream.items():
            leases = {(group, snapshot.id): live.lease for group, snapshot, live in rows
                      if live.lease is not None and self.fences_in_store}
            try:
                refused = await self.store.put_items(stream, [(group, snapshot) for group, snapshot, _ in rows], leases)
            except Exception:
                logger.exception("could not persist streaming items; will retry", extra={"items": len(rows)})
                for group, snapshot, live in rows:
                    live.dirty = True
                    self._dirty[stream, group, snapshot.id] = live
                continue
            for group, snapshot, live in rows:
                if (group, snapshot.id) in refused:
                    logger.warning("a streaming item's lease was taken over; its writer will stop",
                                   extra={"stream": stream, "group": group, "id": snapshot.id})
                    live.fenced = True
                else:
                    live.stored_seq = max(live.stored_seq, snapshot.seq)
        for key, item in list(self._unstored.items()):
            # Each entry is looked up again after every await: a delete meanwhile drops it.
            if self._unstored.get(key) is not item:
                continue
            stream, group, _ = key
            try:
                await self.store.put_item(stream, group, item)
            except Exception:
                logger.warning("store still unavailable; will retry", extra={"stream": stream, "group": group})
                continue
            if self._unstored.get(key) is item:
                del self._unstored[key]
        self._forget_quiet_writers()

    def _forget_quiet_writers(self) -> None:
        """A writer that went quiet (its handler was cancelled, or handed the reply back) is forgotten
        once everything it wrote is stored; a later append starts from a fresh read."""
        now = asyncio.get_running_loop().time()
        for state in self.groups:
            for item_id, live in list(state.writing.items()):
                if now - live.flushed_at > WRITER_IDLE_SECONDS and live.stored_seq >= live.seq and not live.dirty:
                    state.writing.pop(item_id, None)

    async def close(self) -> None:
        """Write what is pending now (graceful shutdown)."""
        await stop_task(self._flusher)
        await self.flush()
