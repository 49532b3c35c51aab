"""Resume buffers: the recent changes of each group, kept so an SSE client can resume exactly.

Memory is bounded twice: per group (REPLAY_LIMIT changes) and in all (a budget in bytes, as
`replay_cost` counts them). Past the budget the least recently active groups lose their buffers,
and a client resuming one of them gets a snapshot instead.

What a deleted item said is not kept: its changes leave the buffer (one pass for a burst of
deletes, such as a whole conversation's) and only that it was deleted stays, so a client resuming
from before the delete, or someone who takes the id up afresh, is never sent its text. The
buffer stays exact for every other item: `replay_from` is where it starts, whatever was removed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import orjson

from streamchat.framework.streams.changes import Change
from streamchat.framework.streams.group import REPLAY_LIMIT, GroupState

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
        return CHANGE_BYTES + _text_bytes(payload["delta"])
    if change.kind == "group-event":
        return CHANGE_BYTES + TEXT_COPIES * len(orjson.dumps(payload["data"]))
    if isinstance(payload, dict):
        return CHANGE_BYTES + sum(STRING_BYTES + _text_bytes(value) for value in payload.values()
                                  if isinstance(value, str))
    return CHANGE_BYTES


def _text_bytes(text: str) -> int:
    """Python keeps a non-ASCII string in up to 4 bytes a character."""
    return TEXT_COPIES * len(text) * (1 if text.isascii() else 4)


class ReplayBuffers:
    """Keeps every seq-numbered change in its group's buffer, within one memory budget for all."""

    def __init__(self, groups: Iterable[GroupState], budget: int = REPLAY_BUDGET_BYTES) -> None:
        #: The hub's groups, least recently active first: the order buffers are given up in.
        self.groups = groups
        self.budget = budget
        self.bytes = 0

    def keep(self, state: GroupState, change: Change) -> None:
        if len(state.replay) == REPLAY_LIMIT:
            self._drop_oldest(state)
        if not state.replay and change.seq is not None:
            state.replay_from = change.seq
        cost = replay_cost(change)
        state.replay.append(change)
        state.replay_bytes += cost
        self.bytes += cost
        if self.bytes > self.budget:
            self._trim(keep=state)

    def forget(self, state: GroupState) -> None:
        self.bytes -= state.replay_bytes
        state.replay_bytes = 0
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
        deleted, removed = state.replay_deleted, 0
        kept: list[Change] = []
        for change in state.replay:
            if change.item_id in deleted and change.seq is not None and change.seq < deleted[change.item_id]:
                removed += replay_cost(change)
            else:
                kept.append(change)
        state.replay.clear()
        state.replay.extend(kept)
        state.replay_deleted = {}
        state.replay_bytes -= removed
        self.bytes -= removed

    def forget_events(self, state: GroupState, before: int) -> None:
        """The group's events before `before` were cleared (its items were deleted): they are not replayed."""
        removed = 0
        kept: list[Change] = []
        for change in state.replay:
            if change.kind == "group-event" and change.seq is not None and change.seq < before:
                removed += replay_cost(change)
            else:
                kept.append(change)
        if removed:
            state.replay.clear()
            state.replay.extend(kept)
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
        oldest = state.replay.popleft()
        if oldest.seq is not None:
            state.replay_from = oldest.seq + 1
        cost = replay_cost(oldest)
        state.replay_bytes -= cost
        self.bytes -= cost
