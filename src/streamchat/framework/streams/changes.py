"""A change of a stream, serialised lazily and at most once per wire format.

The hub builds one `Change` per event and hands the same object to every subscriber; the
first WebSocket to take the Motia frame pays for `orjson.dumps`, the others reuse the text, and
likewise for the SSE frame. Fan-out to N clients costs one serialisation. The Motia text is let go
once the sockets have it (they queue the text itself), so changes kept for resume do not hold it.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

#: "event" is a custom event that is no change (Motia's `send`: WebSocket only, no seq); "group-event"
#: one that is a change of the group (`send_event`: sequenced, kept for resume, an SSE frame too).
Kind = Literal["sync", "create", "update", "delete", "event", "group-event", "delta"]
#: The field a delta grows unless it says otherwise: a delta into any other string field (a tool
#: call's `arguments`) names it as `field`, so clients that only know text deltas stay as they are.
TEXT_FIELD = "message"


def delta_payload(item_id: str, seq: int, text: str, field: str) -> dict[str, Any]:
    """A delta as subscribers get it: `{"id", "seq", "delta"}`, and `field` when it is not the text."""
    if field == TEXT_FIELD:
        return {"id": item_id, "seq": seq, "delta": text}
    return {"id": item_id, "seq": seq, "delta": text, "field": field}


class Change:
    """One thing that happened to a group (or one item of it)."""

    __slots__ = ("_motia_text", "_sse", "group", "item_id", "kind", "payload", "seq", "stream", "timestamp")

    def __init__(
        self, stream: str, group: str, item_id: str | None, kind: Kind, payload: Any, seq: int | None,
        timestamp: int,
    ) -> None:
        self.stream = stream
        self.group = group
        self.item_id = item_id
        self.kind = kind
        self.payload = payload
        self.seq = seq
        self.timestamp = timestamp
        self._motia_text: str | None = None
        self._sse: bytes | None = None

    def motia_text(self) -> str:
        """The Motia frame as text (WebSocket text frames), serialised once for every socket it is pushed to."""
        if self._motia_text is None:
            self._motia_text = self.motia().decode()
        return self._motia_text

    def pushed(self) -> None:
        """Every socket has taken its frame: the change may stay in a resume buffer (SSE only), without it."""
        self._motia_text = None

    def motia(self) -> bytes:
        """The frame of Motia's stream protocol (built on each call; sockets share `motia_text`)."""
        if self.kind == "delta":
            event: dict[str, Any] = {"type": "event", "event": {"type": "delta", "data": self.payload}}
        elif self.kind in ("event", "group-event"):
            event = {"type": "event", "event": self.payload}
        else:
            event = {"type": self.kind, "data": self.payload}
        frame: dict[str, Any] = {"timestamp": self.timestamp, "streamName": self.stream, "groupId": self.group}
        if self.item_id is not None:
            frame["id"] = self.item_id
        frame["event"] = event
        return orjson.dumps(frame)

    def sse(self) -> bytes | None:
        """The Server-Sent Events frame, or None for changes SSE does not carry (Motia's custom events, syncs).

        A group event is a frame named by its type, with its data.
        """
        if self._sse is None:
            data = self.payload
            if self.kind in ("create", "update"):
                name = "item"
            elif self.kind in ("delta", "delete"):
                name = self.kind
            elif self.kind == "group-event":
                name, data = self.payload["type"], self.payload["data"]
            else:
                return None
            head = b"" if self.seq is None else b"id: %d\n" % self.seq
            self._sse = b"%sevent: %s\ndata: %s\n\n" % (head, name.encode(), orjson.dumps(data))
        return self._sse
