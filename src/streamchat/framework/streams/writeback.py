"""Write-back: streaming text reaches the store in batches, not once per piece.

Every streaming item's text is written in one batched store write every STORE_FLUSH_SECONDS, so
a fast model costs the store a few writes a second however many pieces it sends. Each write
appends only the text added since the last one the store took (`Store.append_texts`), so a reply
costs the store about its own length however long it streams; where the store does not hold what
the writer last stored (a write lost on its way, another instance's), the whole item is put. Whole items a
broadcasting sequencer has announced but the store could not take yet (down or full) are
retried on the same beat, so the store never stays behind the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from streamchat.framework.cancellation import stop_task
from streamchat.framework.leases import Lease
from streamchat.framework.store import Store, StoredItem, TextAppend
from streamchat.framework.streams.group import GroupState, LiveItem

logger = logging.getLogger("streamchat.streams")

STORE_FLUSH_SECONDS = 0.5
#: A streaming item nobody appended to for this long stops being kept in memory by its writer.
WRITER_IDLE_SECONDS = 60.0

Key = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Pending:
    """One streaming item's text as a flush took it: how long it was and the seq of its last piece."""

    stream: str
    group: str
    id: str
    live: LiveItem
    length: int
    seq: int

    def appended(self, stored_length: int) -> TextAppend:
        """The text the store does not hold yet, after what it holds."""
        text = self.live.text()[stored_length:self.length]
        return TextAppend(self.id, self.live.field, text, stored_length, self.live.stored_seq, self.seq)

    def whole(self) -> StoredItem:
        return self.live.snapshot(self.id, self.length, self.seq)

    def stored(self) -> None:
        """The store holds the text up to here now."""
        if self.seq > self.live.stored_seq:
            self.live.stored_seq, self.live.stored_length = self.seq, self.length


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
        by_stream: dict[str, list[Pending]] = {}
        for (stream, group, item_id), live in batch.items():
            live.dirty = False
            if not live.ended and live.seq > live.stored_seq:
                by_stream.setdefault(stream, []).append(Pending(stream, group, item_id, live, live.length, live.seq))
        for stream, rows in by_stream.items():
            await self._write_text(stream, rows)
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

    def _leases(self, rows: list[Pending]) -> dict[tuple[str, str], Lease]:
        return {(row.group, row.id): row.live.lease for row in rows
                if row.live.lease is not None and self.fences_in_store}

    async def _write_text(self, stream: str, rows: list[Pending]) -> None:
        """Append each item's new text; put whole the items whose stored text is unknown or not what
        the store holds. A failed write is retried on the next beat from what is known to be stored."""
        appending = [(row, row.live.stored_length) for row in rows]
        appends = [(row, row.appended(length)) for row, length in appending if length is not None]
        whole = [row for row, length in appending if length is None]
        try:
            refused = await self.store.append_texts(stream, [(row.group, append) for row, append in appends],
                                                    self._leases([row for row, _ in appends])) if appends else {}
        except Exception:
            logger.exception("could not persist streaming text; will retry", extra={"items": len(appends)})
            self._retry([row for row, _ in appends])
            refused = {}
            appends = []
        for row, _ in appends:
            verdict = refused.get((row.group, row.id))
            if verdict == "fenced":
                self._fenced(stream, row)
            elif verdict == "unmatched":
                row.live.stored_length = None
                whole.append(row)
            else:
                row.stored()
        if whole:
            await self._put_whole(stream, whole)

    async def _put_whole(self, stream: str, rows: list[Pending]) -> None:
        try:
            refused = await self.store.put_items(stream, [(row.group, row.whole()) for row in rows], self._leases(rows))
        except Exception:
            logger.exception("could not persist streaming items; will retry", extra={"items": len(rows)})
            self._retry(rows)
            return
        for row in rows:
            if (row.group, row.id) in refused:
                self._fenced(stream, row)
            else:
                row.stored()

    def _retry(self, rows: list[Pending]) -> None:
        for row in rows:
            row.live.dirty = True
            self._dirty[row.stream, row.group, row.id] = row.live

    def _fenced(self, stream: str, row: Pending) -> None:
        logger.warning("a streaming item's lease was taken over; its writer will stop",
                       extra={"stream": stream, "group": row.group, "id": row.id})
        row.live.fenced = True

    def _forget_quiet_writers(self) -> None:
        """A writer that went quiet (its handler was cancelled, or handed the reply back) is forgotten
        once everything it wrote is stored; a later append starts from a fresh read."""
        now = asyncio.get_running_loop().time()
        for state in self.groups:
            for item_id, live in list(state.writing.items()):
                if now - live.grew_at > WRITER_IDLE_SECONDS and live.stored_seq >= live.seq and not live.dirty:
                    state.writing.pop(item_id, None)

    async def close(self) -> None:
        """Write what is pending now (graceful shutdown)."""
        await stop_task(self._flusher)
        await self.flush()
