"""Group events: custom events that are changes of a group, not messages beside it.

`Stream.send` pushes a custom event to whoever listens now (Motia's `send`): no seq, not kept.
`Stream.send_event` makes the event a change of the group like an item write: it takes the group's
next seq from the sequencer (so every instance orders it among the item changes), it is applied
like one (following.py: the resume buffer, then every subscriber of the group; WebSocket clients get
Motia's custom-event frame, SSE clients a frame named by the event's type with `id: <seq>`), and it
is written under the handler's lease, so a fenced writer's event reaches nobody.

A stream's config may name sticky events (`StreamConfig.sticky_events`): the latest event of each
such name is stored, as an item of a companion stream in the store (`sticky_stream`; item id = the
event's name), so the store's newest-seq-wins guard orders racing writers, it survives a restart
and every instance reads it. A new watcher's snapshot ends with them. When a group is deleted its
sticky events go too, by an `events-cleared` change (every instance drops what it keeps) and
tombstones in the store (an event sequenced before the delete cannot land after it).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from streamchat.framework.config import StreamConfig
from streamchat.framework.leases import Fenced, Lease
from streamchat.framework.store import JSON, Store, StoredItem
from streamchat.framework.streams.group import GroupState, KeptEvent
from streamchat.framework.streams.sequencers.base import Sequenced, SequencedKind, Sequencer
from streamchat.framework.streams.writeback import WriteBack

#: A name is one SSE `event:` field and one Motia custom event type: no spaces or line breaks.
EVENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
#: What SSE and delta subscribers already use for item changes.
RESERVED_NAMES = frozenset({"item", "delta", "delete"})

SequenceChange = Callable[[GroupState, str, str, SequencedKind, "str | None", Any, "str | None", "Lease | None"],
                          Awaitable[int]]
StoreItem = Callable[[str, str, StoredItem, "Lease | None"], Awaitable[bool]]
ApplyChange = Callable[[GroupState, Sequenced], None]


def sticky_stream(stream: str) -> str:
    """The store's companion stream that holds a stream's sticky events (no declared stream has a `#`)."""
    return f"{stream}#events"


def check_event_name(name: str) -> None:
    if not isinstance(name, str) or not EVENT_NAME.fullmatch(name):
        raise ValueError(f"event name {name!r}: 1-64 letters, digits, '.', '_', ':' or '-', starting with one "
                         "of the first two")
    if name in RESERVED_NAMES:
        raise ValueError(f"event name {name!r} is taken by item changes ({', '.join(sorted(RESERVED_NAMES))})")


class GroupEvents:
    """The hub's part for group events: sends them, reads the sticky ones, clears them with the group.

    It sequences and stores through the hub's own steps (`sequence`, `store_item`), as `set` does,
    and `apply` is how the hub takes a change in on this instance (following.py).
    """

    def __init__(self, store: Store, configs: Mapping[str, StreamConfig[Any]], sequencer: Sequencer,
                 writes: WriteBack, group: Callable[[str, str], GroupState], sequence: SequenceChange,
                 store_item: StoreItem, apply: ApplyChange) -> None:
        self.store = store
        self.configs = configs
        self.sequencer = sequencer
        self.writes = writes
        self._group = group
        self._sequence = sequence
        self._store_item = store_item
        self._apply = apply

    def sticky_names(self, stream: str) -> tuple[str, ...]:
        config = self.configs.get(stream)
        return () if config is None else config.sticky_events

    async def send(self, stream: str, group: str, name: str, data: Any, lease: Lease | None = None) -> int:
        """Sequence the event, store it if sticky, apply it (see the module docstring); its seq."""
        check_event_name(name)
        state = self._group(stream, group)
        event: JSON = {"type": name, "data": data}
        async with state.lock:
            seq = await self._sequence(state, stream, group, "event", None, event, None, lease)
            if name in self.sticky_names(stream):
                await self._store_item(sticky_stream(stream), group, StoredItem(name, event, seq), lease)
            elif lease is not None and not self.sequencer.broadcasts and not await self.store.lease_held(lease):
                # Nothing is stored to check the lease with (a broadcasting sequencer checked it already).
                raise Fenced(lease, f"{stream}/{group}: event {name!r}")
            if not self.sequencer.broadcasts:
                self._apply(state, Sequenced(stream, group, seq, "event", None, event))
            return seq

    async def read(self, stream: str, group: str) -> dict[str, KeptEvent]:
        """The latest event of each sticky name: the store's, laid over with the sequencer's log."""
        names = self.sticky_names(stream)
        if not names:
            return {}
        kept = {entry.id: KeptEvent(entry.seq, entry.data)
                for entry in await self.store.list_items(sticky_stream(stream), group) if entry.id in names}
        for change in await self.sequencer.read_log(stream, group):
            if change.seq is None:
                continue
            if change.kind == "events-cleared":
                kept = {name: event for name, event in kept.items() if event.seq > change.seq}
            elif change.kind == "event" and change.payload["type"] in names:
                current = kept.get(change.payload["type"])
                if current is None or current.seq < change.seq:
                    kept[change.payload["type"]] = KeptEvent(change.seq, change.payload)
        return kept

    async def max_seq(self, stream: str, group: str) -> int:
        """The highest seq the store holds of the group's sticky events (a lost count restarts above it)."""
        return await self.store.max_seq(sticky_stream(stream), group) if self.sticky_names(stream) else 0

    async def clear(self, stream: str, group: str) -> None:
        """The group is deleted: its sticky events go, on every instance and in the store."""
        names = self.sticky_names(stream)
        if not names or not await self.read(stream, group):
            return
        state = self._group(stream, group)
        async with state.lock:
            seq = await self._sequence(state, stream, group, "events-cleared", None, None, None, None)
            for name in names:
                self.writes.drop_item((sticky_stream(stream), group, name))
                await self.store.delete_item(sticky_stream(stream), group, name, seq)
            if not self.sequencer.broadcasts:
                self._apply(state, Sequenced(stream, group, seq, "events-cleared", None, None))
