"""Resume buffers: the recent changes of each group, kept so an SSE client can resume exactly.

Memory is bounded twice: per group (REPLAY_LIMIT changes) and in all (a budget in bytes, as
`replay_cost` counts them). Past the budget the least recently active groups lose their buffers,
and a client resuming one of them gets a snapshot instead.

A streaming text's deltas, one seq after another, are kept as one `DeltaRun` of their pieces, not
as a change object each (with its payload, seq and time): a piece then costs its text and a few
bytes (pieces.py). A client that resumes gets each of them as the change it was.

What a deleted item said is not kept: its changes leave the buffer (one pass for a burst of
deletes, such as a whole conversation's) and only that it was deleted stays, so a client resuming
from before the delete, or someone who takes the id up afresh, is never sent its text. The
buffer stays exact for every other item: `replay_from` is where it starts, whatever was removed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

import orjson

from streamchat.framework.streams.changes import TEXT_FIELD, Change, delta_payload
from streamchat.framework.streams.group import REPLAY_LIMIT, GroupState
from streamchat.framework.streams.pieces import Pieces

REPLAY_BUDGET_BYTES = 64 * 1024 * 1024
#: What a kept change costs besides its text: the object, its payload dict, the frames' JSON around
#: the text, and each string's own object (measured with tracemalloc while running bench/soak.py).
CHANGE_BYTES = 600
STRING_BYTES = 100
#: The text of a kept change is held up to three times: in the payload, the WebSocket frame and the SSE frame.
TEXT_COPIES = 3


def replay_cost(change: Change) -> int:
    """At most about how much memory keeping `change` for resume takes (O(len(piece)) for a delta)."""
    payload = change.payload
    if change.kind == "delta":
        return _delta_cost(payload["delta"])
    if change.kind == "group-event":
        return CHANGE_BYTES + TEXT_COPIES * len(orjson.dumps(payload["data"]))
    if isinstance(payload, dict):
        return CHANGE_BYTES + sum(STRING_BYTES + _text_bytes(value) for value in payload.values()
                                  if isinstance(value, str))
    return CHANGE_BYTES


def _delta_cost(piece: str) -> int:
    """A delta is counted as a change of its own, as it is sent on resume (a run is less in fact)."""
    return CHANGE_BYTES + _text_bytes(piece)


def _text_bytes(text: str) -> int:
    """Python keeps a non-ASCII string in up to 4 bytes a character."""
    return TEXT_COPIES * len(text) * (1 if text.isascii() else 4)


class DeltaRun:
    """Deltas of one item's field with consecutive seqs: `pieces[i]` was appended at seq `first + i`.
    The pieces before `start` were dropped (the buffer's oldest changes); their text is let go a
    chunk at a time (pieces.py), so a run holds at most a chunk's pieces more than it counts."""

    __slots__ = ("field", "first", "group", "item_id", "pieces", "start", "stream", "timestamp")

    def __init__(self, change: Change) -> None:
        assert change.seq is not None and change.item_id is not None
        self.stream, self.group, self.item_id = change.stream, change.group, change.item_id
        self.field: str = change.payload.get("field", TEXT_FIELD)
        self.first: int = change.seq
        self.start = 0
        self.pieces = Pieces([change.payload["delta"]])
        #: The frame time of the latest piece (an SSE frame carries none; kept for the change's shape).
        self.timestamp = change.timestamp

    @property
    def seq(self) -> int:
        """The seq of the run's last delta."""
        return self.first + len(self.pieces) - 1

    def extends(self, change: Change) -> bool:
        return (change.seq == self.seq + 1 and change.item_id == self.item_id
                and change.payload.get("field", TEXT_FIELD) == self.field)

    def changes(self, after_seq: int) -> Iterator[Change]:
        """The run's deltas after `after_seq`, each as the change it was."""
        start = max(self.start, after_seq + 1 - self.first)
        for seq, piece in enumerate(self.pieces.after(start), self.first + start):
            yield Change(self.stream, self.group, self.item_id, "delta",
                         delta_payload(self.item_id, seq, piece, self.field), seq, self.timestamp)


Kept = Change | DeltaRun


class ReplayBuffers:
    """Keeps every seq-numbered change in its group's buffer, within one memory budget for all."""

    def __init__(self, groups: Iterable[GroupState], budget: int = REPLAY_BUDGET_BYTES) -> None:
        #: The hub's groups, least recently active first: the order buffers are given up in.
        self.groups = groups
        self.budget = budget
        self.bytes = 0

    def keep(self, state: GroupState, change: Change) -> None:
        if state.replay_count == REPLAY_LIMIT:
            self._drop_oldest(state)
        if not state.replay and change.seq is not None:
            state.replay_from = change.seq
        cost = replay_cost(change)
        last = state.replay[-1] if state.replay else None
        if change.kind != "delta" or change.seq is None:
            state.replay.append(change)
        elif isinstance(last, DeltaRun) and last.extends(change):
            last.pieces.append(change.payload["delta"])
            last.timestamp = change.timestamp
        else:
            state.replay.append(DeltaRun(change))
        state.replay_count += 1
        state.replay_bytes += cost
        self.bytes += cost
        if self.bytes > self.budget:
            self._trim(keep=state)

    def after(self, state: GroupState, after_seq: int, item_id: str | None) -> Iterator[Change]:
        """The kept changes after `after_seq` (of one item, or all), in order."""
        self.purge(state)
        for kept in state.replay:
            if item_id not in (None, kept.item_id) or kept.seq is None or kept.seq <= after_seq:
                continue
            if isinstance(kept, DeltaRun):
                yield from kept.changes(after_seq)
            else:
                yield kept

    def forget(self, state: GroupState) -> None:
        self.bytes -= state.replay_bytes
        state.replay_bytes = 0
        state.replay_count = 0
        state.replay.clear()
        state.replay_deleted.clear()

    def deleted(self, state: GroupState, item_id: str, seq: int) -> None:
        """Item `item_id` was deleted at `seq`: its earlier changes go, before anyone resumes (`purge`)."""
        if not state.replay_deleted:
            asyncio.get_running_loop().call_soon(self.purge, state)
        state.replay_deleted[item_id] = seq

    def purge(self, state: GroupState) -> None:
        """Remove the changes of the items deleted since the last pass, in one pass."""
        if not state.replay_deleted:
            return
        deleted, removed, count = state.replay_deleted, 0, 0
        kept: list[Kept] = []
        for entry in state.replay:
            if entry.item_id in deleted and entry.seq is not None and entry.seq < deleted[entry.item_id]:
                removed += self._cost(entry)
                count += len(entry.pieces) - entry.start if isinstance(entry, DeltaRun) else 1
            else:
                kept.append(entry)
        state.replay.clear()
        state.replay.extend(kept)
        state.replay_deleted = {}
        state.replay_count -= count
        state.replay_bytes -= removed
        self.bytes -= removed

    def forget_events(self, state: GroupState, before: int) -> None:
        """The group's events before `before` were cleared (its items were deleted): they are not replayed."""
        removed, count = 0, 0
        kept: list[Kept] = []
        for entry in state.replay:
            event = isinstance(entry, Change) and entry.kind == "group-event"
            if event and entry.seq is not None and entry.seq < before:
                removed += self._cost(entry)
                count += 1
            else:
                kept.append(entry)
        if count:
            state.replay.clear()
            state.replay.extend(kept)
            state.replay_count -= count
            state.replay_bytes -= removed
            self.bytes -= removed

    def _trim(self, keep: GroupState) -> None:
        """Down to 80% of the budget, so trimming is rare: empty the least recently active groups'
        buffers, and if the group being written holds more by itself, drop its oldest changes."""
        target = self.budget * 0.8
        for state in self.groups:
            if self.bytes <= target:
                return
            if state is not keep:
                self.forget(state)
        while self.bytes > target and keep.replay:
            self._drop_oldest(keep)

    def _drop_oldest(self, state: GroupState) -> None:
        """Drop the oldest kept change (of a run, its first piece left)."""
        oldest = state.replay[0]
        if isinstance(oldest, DeltaRun):
            cost = _delta_cost(oldest.pieces[oldest.start])
            state.replay_from = oldest.first + oldest.start + 1
            oldest.start += 1
            oldest.pieces.release_before(oldest.start)
            if oldest.start == len(oldest.pieces):
                state.replay.popleft()
        else:
            state.replay.popleft()
            if oldest.seq is not None:
                state.replay_from = oldest.seq + 1
            cost = replay_cost(oldest)
        state.replay_count -= 1
        state.replay_bytes -= cost
        self.bytes -= cost

    @staticmethod
    def _cost(entry: Kept) -> int:
        if isinstance(entry, DeltaRun):
            return sum(_delta_cost(piece) for piece in entry.pieces.after(entry.start))
        return replay_cost(entry)
