"""The in-process sequencer: one instance counts its groups' seqs itself.

Seqs come from the store in blocks (`Store.reserve_seq`), so a restart, or a count forgotten
here, continues above every seq ever handed out, and a change costs a store round trip only once
per block. There is nothing to send: the hub applies its own changes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from streamchat.framework.leases import Lease
from streamchat.framework.store import Store
from streamchat.framework.streams.sequencers.base import SequencedKind, Sequencer

#: Groups whose count is kept; forgetting one costs the rest of its block and one store round trip.
COUNTS_KEPT = 10_000


@dataclass(slots=True)
class _Count:
    seq: int = 0
    reserved: int = 0


class LocalSequencer(Sequencer):
    """Counts each group's changes from blocks the store reserves."""

    broadcasts = False

    def __init__(self, store: Store, counts_kept: int = COUNTS_KEPT) -> None:
        self.store = store
        self.counts_kept = counts_kept
        self._counts: OrderedDict[tuple[str, str], _Count] = OrderedDict()

    async def sequence(
        self, stream: str, group: str, kind: SequencedKind, item_id: str | None, payload: Any,
        field: str | None = None, floor: int | None = None, lease: Lease | None = None,
    ) -> int:
        """The group's next seq. The hub calls this under the group's lock, one change at a time."""
        key = (stream, group)
        count = self._counts.get(key)
        if count is None:
            count = self._counts[key] = _Count()
            if len(self._counts) > self.counts_kept:
                self._counts.popitem(last=False)
        else:
            self._counts.move_to_end(key)
        if count.seq >= count.reserved:
            block = self.store.seq_block
            count.reserved = await self.store.reserve_seq(stream, group, block)
            count.seq = max(count.seq, count.reserved - block)
        count.seq += 1
        return count.seq

    async def current_seq(self, stream: str, group: str) -> int | None:
        count = self._counts.get((stream, group))
        return None if count is None else count.seq
