"""What keeping a change for exact SSE resume costs, and the bounds on it."""

from __future__ import annotations

from streamchat.framework.streams.changes import Change

#: Changes kept per group for exact resume, and the memory all groups' buffers may take together.
REPLAY_LIMIT = 10_000
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
