"""Resume buffers: the recent changes of each group, kept so an SSE client can resume exactly.

Memory is bounded twice: per group (REPLAY_LIMIT changes) and in all (a budget in bytes, as
`replay_cost` counts them). Past the budget the least recently active groups lose their buffers,
and a client resuming one of them gets a snapshot instead.
"""

from __future__ import annotations

from collections.abc import Iterable

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
        cost = replay_cost(state.replay.popleft())
        state.replay_bytes -= cost
        self.bytes -= cost
