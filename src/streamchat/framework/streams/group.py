"""What the hub keeps for one group: its subscribers, its streaming items, its resume buffer.

A streaming item's text lives in a `LiveItem` twice over: on the writer's side until the batched
store write, and on the watchers' side for snapshots and plain subscribers (on several instances
these are different processes). `DeltaBatch` holds the pieces a `joined-deltas` subscriber gets
in its next frame.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from streamchat.framework.leases import Lease
from streamchat.framework.store import JSON, StoredItem
from streamchat.framework.streams.changes import TEXT_FIELD, Change, Kind
from streamchat.framework.streams.pieces import CHUNK

if TYPE_CHECKING:
    from streamchat.framework.streams.replay import DeltaRun

#: Changes kept per group for exact resume (all groups' buffers share a budget: replay.py).
REPLAY_LIMIT = 10_000

#: What a subscriber receives of a streaming text: whole items (over a compressed connection, or
#: one without compression), every delta, or joined deltas.
Mode = Literal["plain", "plain-uncompressed", "every-delta", "joined-deltas"]
Audience = Literal["all", "delta", "plain", "plain-uncompressed", "every-delta", "joined-deltas"]
PlainMode = Literal["plain", "plain-uncompressed"]
PLAIN_MODES: tuple[PlainMode, ...] = ("plain", "plain-uncompressed")


class Subscriber(Protocol):
    """Anything that can take a change without blocking (a WebSocket connection, an SSE response)."""

    def push(self, change: Change) -> None: ...


@dataclass(eq=False)
class PlainPace:
    """When one kind of plain subscriber last got a streaming item whole, and its next send if set."""

    sent_at: float = float("-inf")
    sent_length: int = 0
    #: The size of the last frame sent (UTF-8 bytes; counted for compressed sockets only).
    sent_bytes: int = 0
    due: float = 0.0
    timer: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


@dataclass(eq=False)
class LiveItem:
    """An item whose text field is growing: the pieces live here until flushed."""

    data: JSON
    field: str
    parts: list[str]
    seq: int
    #: The newest change of the item the store holds (as far as its writer knows), and how long the
    #: text is there (None: unknown, so the next write puts the whole item rather than appending).
    stored_seq: int
    length: int = 0
    stored_length: int | None = None
    #: The text's length when the item started streaming here (what its last whole copy had).
    started_length: int = 0
    #: When a piece last came (loop time): on the writer's side for the idle check, on the watchers'
    #: side for plain subscribers without compression.
    grew_at: float = 0.0
    #: The whole-item sends of each plain mode (fanout.py), made when the first piece for it comes.
    paces: dict[PlainMode, PlainPace] = dataclasses.field(default_factory=dict)  # `field` is taken here
    #: Pieces appended since the parts were last joined.
    loose: int = 0
    dirty: bool = False
    ended: bool = False
    #: The lease the writer appends under, and whether the store has refused it since.
    lease: Lease | None = None
    fenced: bool = False

    def grow(self, piece: str) -> None:
        """Add a piece of text. Every CHUNK pieces are joined into one string (pieces.py says why), so
        a subscriber that never reads the whole text does not keep a string object a piece."""
        self.parts.append(piece)
        self.length += len(piece)
        self.loose += 1
        if self.loose == CHUNK:
            self.parts[-CHUNK:] = ["".join(self.parts[-CHUNK:])]
            self.loose = 0

    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts[:] = ["".join(self.parts)]
            self.loose = 0
        return self.parts[0] if self.parts else ""

    def item(self, item_id: str) -> JSON:
        return {**self.data, self.field: self.text(), "id": item_id, "seq": self.seq}

    def cancel_timers(self) -> None:
        for pace in self.paces.values():
            pace.cancel()

    def pace(self, mode: PlainMode) -> PlainPace:
        """The item's sends to `mode` subscribers; the first counts from the text it started with."""
        pace = self.paces.get(mode)
        if pace is None:
            pace = self.paces[mode] = PlainPace(sent_length=self.started_length)
        return pace

    def snapshot(self, item_id: str, length: int, seq: int) -> StoredItem:
        """The whole item as it was when its text was `length` long, at the change `seq`."""
        return StoredItem(item_id, {**self.data, self.field: self.text()[:length]}, seq)

    def end(self) -> None:
        """The item stopped streaming (a whole-item write or a delete superseded it)."""
        self.ended = True
        self.cancel_timers()

    @classmethod
    def starting_from(cls, item: JSON, field_name: str, seq: int) -> LiveItem:
        """A live item whose text starts as `item[field_name]` (an item dict with `id` and `seq`)."""
        text = str(item.get(field_name, ""))
        data = {key: value for key, value in item.items() if key not in ("id", "seq")}
        return cls(data, field_name, [text], seq, seq, len(text), len(text), len(text))


@dataclass(eq=False)
class DeltaBatch:
    """Pieces of one streaming item held back for `joined-deltas` subscribers until the window ends."""

    stream: str
    group: str
    #: The item's field the pieces grow.
    grows: str = TEXT_FIELD
    parts: list[str] = field(default_factory=list)
    seq: int = 0
    sent_at: float = float("-inf")
    timer: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


@dataclass(frozen=True, slots=True)
class KeptEvent:
    """The latest group event of a sticky name (see events.py): its seq and the event, `{"type", "data"}`."""

    seq: int
    event: JSON


@dataclass(eq=False)
class GroupState:
    """Everything the hub keeps in memory for one group."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The seq of the last change applied here, and whether every change up to it was (so a
    #: client that has seen up to some seq can be sent exactly what it missed).
    seq: int = 0
    exact: bool = False
    clock: int = 0
    #: Items this instance's handlers are streaming into, and items its watchers see streaming.
    writing: dict[str, LiveItem] = field(default_factory=dict)
    live: dict[str, LiveItem] = field(default_factory=dict)
    #: Kept for resume (replay.py): changes, and runs of deltas; `replay_count` changes in all.
    replay: deque[Change | DeltaRun] = field(default_factory=deque)
    replay_count: int = 0
    #: The seq the resume buffer is exact from, and the items deleted since its last purge (-> the delete's seq).
    replay_from: int = 0
    replay_deleted: dict[str, int] = field(default_factory=dict)
    members: dict[Subscriber, Mode] = field(default_factory=dict)
    item_members: dict[str, dict[Subscriber, Mode]] = field(default_factory=dict)
    replay_bytes: int = 0
    #: Subscribers of each mode that needs more than the deltas (plain counts both plain modes).
    plain_members: int = 0
    uncompressed_plain_members: int = 0
    every_delta_members: int = 0
    batches: dict[str, DeltaBatch] = field(default_factory=dict)
    #: The group's items as this instance last applied them (None: nobody here watches the group),
    #: and the changes held back while the view is being (re)built.
    view: dict[str, JSON] | None = None
    #: The latest event of each sticky name, kept with the view: what a new watcher's snapshot ends with.
    sticky: dict[str, KeptEvent] = field(default_factory=dict)
    syncing: bool = False
    backlog: list[Any] = field(default_factory=list)

    def tick(self) -> int:
        """Frame timestamp in ms, strictly rising per group (Motia clients drop ties)."""
        self.clock = max(int(time.time() * 1000), self.clock + 1)
        return self.clock

    def change(self, stream: str, group: str, item_id: str | None, kind: Kind, payload: Any,
               seq: int | None) -> Change:
        """A change of this group, stamped with its next frame time."""
        return Change(stream, group, item_id, kind, payload, seq, self.tick())

    def idle(self) -> bool:
        return not (self.writing or self.live or self.members or self.item_members or self.lock.locked())
