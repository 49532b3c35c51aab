"""The lengths of the pieces a reply was written in, so a client can resume it exactly by number.

An OpenAI Responses stream numbers its events, one text delta per piece the model sent, and a
client that resumes "after event N" must get the very pieces that followed N, from any instance,
while the reply runs or long after. The text alone does not say where its pieces began, so the
AI step's own list of pieces is read here while it writes (views in this process), and their
lengths are written to state when the reply ends (everyone afterwards reads that) and, when other
instances serve the conversation too, every FLUSH_SECONDS meanwhile (they read that). Nothing is
added to the per-piece path; a flush costs O(pieces).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from streamchat.framework import OUTAGES, State
from streamchat.settings import get_settings

PIECES = "reply_pieces"
FLUSH_SECONDS = 0.5

_writing: dict[str, list[str]] = {}


@contextlib.asynccontextmanager
async def recording(state: State, reply_id: str, pieces: list[str]) -> AsyncIterator[None]:
    """Journal the pieces the block appends to `pieces`. Kept when the block ends normally (the
    reply ended, stopped or failed); a run that was taken over or cancelled leaves the journal to
    the run that has the reply now."""
    _writing[reply_id] = pieces
    flusher = (asyncio.create_task(_flush_while_writing(state, reply_id, pieces))
               if get_settings().several_instances else None)
    try:
        yield
    except BaseException:
        if flusher is not None:
            flusher.cancel()
        _writing.pop(reply_id, None)
        raise
    if flusher is not None:
        flusher.cancel()
    await state.set(PIECES, reply_id, {"lengths": [len(piece) for piece in pieces]})
    _writing.pop(reply_id, None)


async def _flush_while_writing(state: State, reply_id: str, pieces: list[str]) -> None:
    written = 0
    while True:
        await asyncio.sleep(FLUSH_SECONDS)
        if len(pieces) != written:
            written = len(pieces)
            with contextlib.suppress(*OUTAGES):  # the next flush, or the last one, writes them
                await state.set(PIECES, reply_id, {"lengths": [len(piece) for piece in pieces[:written]]})


async def piece_lengths(state: State, reply_id: str) -> list[int]:
    """The lengths known so far: this process's own while it writes the reply, else the stored ones."""
    local = _writing.get(reply_id)
    if local is not None:
        return [len(piece) for piece in local]
    stored = await state.get(PIECES, reply_id)
    return [] if stored is None else [int(length) for length in stored["lengths"]]


async def forget(state: State, reply_ids: list[str]) -> None:
    for reply_id in reply_ids:
        await state.delete(PIECES, reply_id)
