"""The lengths of the pieces a reply was written in, so a client can resume it exactly by number.

An OpenAI Responses stream numbers its events, one text delta per piece the model sent, and a
client that resumes "after event N" must get the very pieces that followed N, from any instance,
while the reply runs or long after. The text alone does not say where its pieces began, so the
AI step's own list of pieces is read here while it writes (views in this process), and their
lengths are written to state when the reply ends (everyone afterwards reads that) and, when other
instances serve the conversation too, every FLUSH_SECONDS meanwhile (they read that). One
`ReplyJournals` per process (a service the app gives the runtime) knows the replies it writes.

Every journal write is made by the run's own task right after a reply write its lease allowed (see
framework/leases.py), never from a timer of its own: a run paused past its lease wakes up to a
refused write and stops, so it cannot write its stale pieces over the journal of the run that took
the reply over. The per-piece cost is one clock read; a flush costs O(pieces).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from streamchat.conversations.records import REPLY_PIECES
from streamchat.framework import OUTAGES, Pieces, State

FLUSH_SECONDS = 0.5


class ReplyJournal:
    """One run's pieces of a reply, in the order it wrote them."""

    def __init__(self, state: State, reply_id: str, flush_seconds: float | None) -> None:
        self.pieces = Pieces()
        self._state = state
        self._reply_id = reply_id
        self._flush_seconds = flush_seconds
        self._flushed_at = time.monotonic()

    def text(self) -> str:
        return self.pieces.text()

    def flush_due(self) -> bool:
        """After a piece was written: whether to share the lengths so far (other instances read them)."""
        return self._flush_seconds is not None and time.monotonic() - self._flushed_at >= self._flush_seconds

    async def flush(self) -> None:
        self._flushed_at = time.monotonic()
        with contextlib.suppress(*OUTAGES):  # the next flush, or the last one, writes them
            await self._write()

    async def keep(self) -> None:
        """After the reply's last state was written: the lengths for good."""
        await self._write()

    async def _write(self) -> None:
        await self._state.set(REPLY_PIECES, self._reply_id, {"lengths": self.pieces.lengths()})


class ReplyJournals:
    """This process's journals: the pieces of the replies it is writing, read by its views."""

    def __init__(self, several_instances: bool) -> None:
        self._flush_seconds = FLUSH_SECONDS if several_instances else None
        self._writing: dict[str, Pieces] = {}

    @contextlib.asynccontextmanager
    async def recording(self, state: State, reply_id: str) -> AsyncIterator[ReplyJournal]:
        """A journal for one run of the reply, read by this process's views while the block runs."""
        journal = ReplyJournal(state, reply_id, self._flush_seconds)
        self._writing[reply_id] = journal.pieces
        try:
            yield journal
        finally:
            if self._writing.get(reply_id) is journal.pieces:
                del self._writing[reply_id]

    async def piece_lengths(self, state: State, reply_id: str) -> list[int]:
        """The lengths known so far: this process's own while it writes the reply, else the stored ones."""
        local = self._writing.get(reply_id)
        if local is not None:
            return local.lengths()
        stored = await state.get(REPLY_PIECES, reply_id)
        return [] if stored is None else [int(length) for length in stored["lengths"]]
