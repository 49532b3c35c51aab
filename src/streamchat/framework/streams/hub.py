"""The stream hub: items grouped by a key, stored, and pushed to subscribers on every change.

`StreamHub` owns storage and fan-out for every stream; `Stream[M]` (stream.py) is the typed view a
handler sees as `ctx.streams.<name>`, and group.py holds what the hub keeps for one group.

Every change of a group gets the group's next sequence number (`seq`) from the hub's sequencer
(sequencers/: in-process for one instance, Redis for several). A change has two halves. The
instance whose handler makes it sequences it and stores it (`set`, `append`, `delete`). Then
it is applied on every instance that serves the group (following.py: its resume buffer, its view
of the items, its subscribers' sockets): on one instance right after the write; on several, when
the Redis broadcast reaches each instance, the writer's own included, in seq order. Writes and
subscriptions of one group are serialised by a per-group lock, so a subscriber that joins gets a
snapshot and then exactly the changes after it, never one twice or out of order.

An instance keeps a view of a group (its items as of the last change applied) while someone
here watches it. The view starts from the store laid over with the sequencer's log and this
instance's unflushed text; reads (`get`, `list_group`) are answered the same way, so any
instance answers with the latest state, whichever instance wrote it.

A growing text field is streamed with `append`: O(1) per piece. How each subscriber gets it is
fanout.py's job (joined delta frames, every seq for SSE, coalesced whole items for plain Motia
clients), what is kept for resume is replay.py's, and the batched store writes of streaming text
are writeback.py's. `set` (e.g. the final `completed`) writes through to the store before it is
applied. Custom events that are changes of a group (`send_event`) are events.py's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from streamchat.framework.config import StreamConfig
from streamchat.framework.errors import OUTAGES, StorageFull
from streamchat.framework.leases import Fenced, Lease
from streamchat.framework.store import JSON, Store, StoredItem
from streamchat.framework.store.base import TOMBSTONE_SECONDS
from streamchat.framework.streams.events import GroupEvents
from streamchat.framework.streams.fanout import DELTA_WINDOW_SECONDS, FanOut
from streamchat.framework.streams.following import Following
from streamchat.framework.streams.group import GroupState, LiveItem, Subscriber
from streamchat.framework.streams.replay import REPLAY_BUDGET_BYTES, ReplayBuffers
from streamchat.framework.streams.sequencers.base import (
    Sequenced,
    SequencedKind,
    Sequencer,
    apply_to_items,
    join_parts,
)
from streamchat.framework.streams.sequencers.local import LocalSequencer
from streamchat.framework.streams.writeback import WriteBack

logger = logging.getLogger("streamchat.streams")

#: Groups nobody watches or writes that stay in memory (their resume buffer).
IDLE_GROUPS_KEPT = 2_000
#: When a sequencer has lost a group's count, seqs restart this far above anything stored, so no
#: seq a client may still hold is handed out again.
RESEED_GAP = 1_000_000


class UnknownStreamError(LookupError):
    """A stream name that no StreamConfig declares."""


class UnknownItemError(LookupError):
    """An append to an item that does not exist."""


class StreamHub:
    """Stores items of every declared stream and fans changes out to subscribers.

    Writes made under a lease (see framework/leases.py) are fenced. A broadcasting sequencer checks
    the lease as it sequences the change, so a refused write reaches nobody. Otherwise the store
    checks it: `set` writes through and raises `Fenced` at once; `append` stays in memory, and when
    the batched write finds the lease taken over, the writer's next `append` raises `Fenced`.
    """

    def __init__(self, store: Store, configs: Mapping[str, StreamConfig[Any]], sequencer: Sequencer | None = None,
                 *, delta_window: float = DELTA_WINDOW_SECONDS, replay_budget: int = REPLAY_BUDGET_BYTES,
                 idle_groups_kept: int = IDLE_GROUPS_KEPT) -> None:
        self.store = store
        self.configs = dict(configs)
        self.sequencer = sequencer or LocalSequencer(store)
        self.idle_groups_kept = idle_groups_kept
        self._groups: OrderedDict[tuple[str, str], GroupState] = OrderedDict()
        self.fanout = FanOut(delta_window)
        self.replay = ReplayBuffers(self._groups.values(), replay_budget)
        self.writes = WriteBack(store, self._groups.values(), fences_in_store=not self.sequencer.broadcasts)
        self.events = GroupEvents(store, self.configs, self.sequencer, self.writes, self._group, self._sequence,
                                  self._store, lambda state, change: self.following.apply(state, change))
        self.following = Following(self._groups, self._group, self.sequencer, self.fanout, self.replay,
                                   self.read_group, self.events)

    async def start(self) -> None:
        """Begin serving: a broadcasting sequencer starts delivering the other instances' changes."""
        await self.sequencer.start(self.following.follows, self.following.receive, self.following.catch_up_all)

    # -- bookkeeping -----------------------------------------------------------------------

    def config(self, stream: str) -> StreamConfig[Any]:
        try:
            return self.configs[stream]
        except KeyError:
            raise UnknownStreamError(stream) from None

    def _group(self, stream: str, group: str) -> GroupState:
        self.config(stream)
        key = (stream, group)
        state = self._groups.get(key)
        if state is None:
            state = self._groups[key] = GroupState()
            self._evict_idle()
        else:
            self._groups.move_to_end(key)
        return state

    def _evict_idle(self) -> None:
        """Forget the least recently used idle groups, in batches so the scan is rare.

        A forgotten group costs nothing: it is read from the store again when next used, and a
        client resuming it gets a snapshot.
        """
        if len(self._groups) <= self.idle_groups_kept * 1.1:
            return
        excess = len(self._groups) - self.idle_groups_kept
        for key in [key for key, state in self._groups.items() if state.idle()][:excess]:
            self.replay.forget(self._groups.pop(key))

    def memory(self) -> dict[str, int]:
        """What the hub keeps, for operators (`/api/admin/stats`) and the soak."""
        return {"groups": len(self._groups), "idleGroupsKept": self.idle_groups_kept,
                "replayChanges": sum(state.replay_count for state in self._groups.values()),
                "replayBytes": self.replay.bytes, "replayBudgetBytes": self.replay.budget}

    # -- writes: sequenced, stored, then applied -------------------------------------------

    async def set(self, stream: str, group: str, item_id: str, data: JSON, lease: Lease | None = None) -> JSON:
        """Store a validated item (written through) and publish `create` or `update`."""
        state = self._group(stream, group)
        async with state.lock:
            self._end_writing(state, stream, group, item_id)
            seq = await self._sequence(state, stream, group, "put", item_id, data, lease=lease)
            created = await self._store(stream, group, StoredItem(item_id, data, seq), lease)
            if not self.sequencer.broadcasts:
                self.following.apply(state, Sequenced(stream, group, seq, "put", item_id, data, created=created))
            return {**data, "id": item_id, "seq": seq}

    async def append(self, stream: str, group: str, item_id: str, field_name: str, text: str,
                     lease: Lease | None = None) -> int:
        """Add `text` to the end of an item's string field; returns the change's seq. O(len(text))."""
        state = self._group(stream, group)
        async with state.lock:
            live = state.writing.get(item_id)
            if live is None:
                current = await self.get(stream, group, item_id)
                if current is None:
                    raise UnknownItemError(f"{stream}/{group}/{item_id}: no such item to append to")
                live = state.writing[item_id] = LiveItem.starting_from(current, field_name, current["seq"])
            elif live.field != field_name:
                raise ValueError(f"{item_id} is already streaming into {live.field!r}, not {field_name!r}")
            if live.fenced and live.lease is not None:
                self._end_writing(state, stream, group, item_id)
                raise Fenced(live.lease, f"{stream}/{group}/{item_id}")
            live.lease = lease
            try:
                seq = await self._sequence(state, stream, group, "delta", item_id, text, field_name, lease)
            except Fenced:
                self._end_writing(state, stream, group, item_id)  # its text is not the reply's any more
                raise
            live.grow(text)
            live.seq = seq
            live.grew_at = asyncio.get_running_loop().time()
            self.writes.mark_dirty((stream, group, item_id), live)
            if not self.sequencer.broadcasts:
                self.following.apply(state, Sequenced(stream, group, seq, "delta", item_id, text, field_name))
            return seq

    async def delete(self, stream: str, group: str, item_id: str) -> JSON | None:
        state = self._group(stream, group)
        async with state.lock:
            live = self._end_writing(state, stream, group, item_id)
            current = await self.get(stream, group, item_id)
            if current is None:
                return None
            data = {key: value for key, value in current.items() if key not in ("id", "seq")}
            if live is not None:
                data[live.field] = live.text()
            seq = await self._sequence(state, stream, group, "delete", item_id, data)
            self.writes.drop_item((stream, group, item_id))
            await self.store.delete_item(stream, group, item_id, seq)
            if not self.sequencer.broadcasts:
                self.following.apply(state, Sequenced(stream, group, seq, "delete", item_id, data))
            return {**data, "id": item_id, "seq": seq}

    async def delete_group(self, stream: str, group: str) -> list[JSON]:
        """Delete every item of a group, each as `delete` does (subscribers get a delete per item),
        then its sticky events (events.py), then drop the sequencer's log of it, so nothing of its text
        stays behind; the deleted items.
        Tombstones old enough to be of no more use go at the same time."""
        deleted = [item for entry in await self.list_group(stream, group)
                   if (item := await self.delete(stream, group, entry["id"])) is not None]
        await self.events.clear(stream, group)
        await self.sequencer.forget(stream, group)
        await self.store.prune_tombstones(time.time() - TOMBSTONE_SECONDS)
        return deleted

    async def send(self, stream: str, group: str, event: JSON, item_id: str | None = None) -> None:
        """Push a custom event (not stored, no seq) to the group's subscribers, or one item's."""
        if self.sequencer.broadcasts:
            self.config(stream)
            await self.sequencer.publish_event(stream, group, item_id, event)
            return
        state = self._group(stream, group)
        async with state.lock:
            self.fanout.publish(state, state.change(stream, group, item_id, "event", event, None))

    async def send_event(self, stream: str, group: str, name: str, data: Any, lease: Lease | None = None) -> int:
        """A custom event that is a change of the group: sequenced, kept for resume (see events.py); its seq."""
        self.config(stream)
        return await self.events.send(stream, group, name, data, lease)

    def notify(self, stream: str, group: str, event: JSON) -> None:
        """`send` to this instance's subscribers, for callers that cannot await; nothing when nobody listens."""
        state = self._groups.get((stream, group))
        if state is not None and (state.members or state.item_members):
            self.fanout.publish(state, state.change(stream, group, None, "event", event, None))

    async def _sequence(self, state: GroupState, stream: str, group: str, kind: SequencedKind, item_id: str | None,
                        payload: Any, field_name: str | None = None, lease: Lease | None = None) -> int:
        seq = await self.sequencer.sequence(stream, group, kind, item_id, payload, field_name, lease=lease)
        if seq is not None:
            return seq
        # The sequencer has no count for this group: it is new, it expired, or Redis lost its data.
        # Count on from above every seq that may have been handed out (the store's highest plus a
        # wide gap, unless the store has never seen the group), and re-announce what this instance
        # is streaming into the group so no one builds on text the lost log held.
        resumed = list(state.writing.items())
        stored = max(await self.store.max_seq(stream, group), await self.events.max_seq(stream, group))
        floor = 0 if stored == 0 and not resumed else max([stored, *(live.seq for _, live in resumed)]) + RESEED_GAP
        if floor:
            logger.warning("re-seeding a stream group's sequence", extra={"stream": stream, "group": group,
                                                                         "floor": floor})
        for live_id, live in resumed:
            whole = {**live.data, live.field: live.text()}
            try:
                live.seq = await self._sequence_seeded(stream, group, "put", live_id, whole, None, floor, live.lease)
            except Fenced:
                self._end_writing(state, stream, group, live_id)  # its writer's next append is refused too
        return await self._sequence_seeded(stream, group, kind, item_id, payload, field_name, floor, lease)

    async def _sequence_seeded(self, stream: str, group: str, kind: SequencedKind, item_id: str | None, payload: Any,
                              field_name: str | None, floor: int, lease: Lease | None) -> int:
        seq = await self.sequencer.sequence(stream, group, kind, item_id, payload, field_name, floor=floor, lease=lease)
        assert seq is not None, "the sequencer ignored the floor"
        return seq

    async def _store(self, stream: str, group: str, item: StoredItem, lease: Lease | None) -> bool:
        """Write an item through; True if the store had no such item.

        Not broadcast yet (one instance): the store checks the lease, and a failure is the writer's,
        with nothing announced. Already broadcast: the change is in the sequencer's log, so every
        read sees it meanwhile; if the store is down or full the item is kept and the flusher
        retries. A full store is still reported to the writer (a request answers 507), but what the
        log announced is stored once there is room, so the store never stays behind the log.
        """
        if not self.sequencer.broadcasts:
            return await self.store.put_item(stream, group, item, lease)
        try:
            return await self.store.put_item(stream, group, item)
        except OUTAGES as error:
            logger.warning("store unavailable or full; the item will be written when it can be",
                           extra={"stream": stream, "group": group, "id": item.id, "error": str(error)})
            self.writes.keep_unstored((stream, group, item.id), item)
            if isinstance(error, StorageFull):
                raise
            return False

    def _end_writing(self, state: GroupState, stream: str, group: str, item_id: str) -> LiveItem | None:
        """The writer is done with a streaming item: a write-through or delete supersedes its pending text."""
        live = state.writing.pop(item_id, None)
        if live is not None:
            live.end()
            self.writes.drop_text((stream, group, item_id))
        return live

    # -- reads: the store, laid over with the sequencer's log and this instance's unflushed text --

    async def get(self, stream: str, group: str, item_id: str) -> JSON | None:
        self.config(stream)
        stored = await self.store.get_item(stream, group, item_id)
        items = {} if stored is None else {item_id: {**stored.data, "id": item_id, "seq": stored.seq}}
        await self._bring_up_to_date(stream, group, items, item_id)
        return items.get(item_id)

    async def list_group(self, stream: str, group: str) -> list[JSON]:
        items, _ = await self.read_group(stream, group)
        return items

    async def read_group(self, stream: str, group: str) -> tuple[list[JSON], int]:
        """The group's items as of its latest change, and that change's seq."""
        self.config(stream)
        stored = await self.store.list_items(stream, group)
        items = {entry.id: {**entry.data, "id": entry.id, "seq": entry.seq} for entry in stored}
        at = max(max((entry.seq for entry in stored), default=0), await self._bring_up_to_date(stream, group, items))
        return list(items.values()), at

    async def _bring_up_to_date(self, stream: str, group: str, items: dict[str, JSON], only: str | None = None) -> int:
        """Lay what the store has not caught up with over `items`; returns the highest seq laid on."""
        at = 0
        parts: dict[str, list[str]] = {}
        for change in await self.sequencer.read_log(stream, group):
            if only is None or change.item_id == only:
                apply_to_items(items, parts, change)
                at = max(at, change.seq or 0)
        join_parts(items, parts)
        state = self._groups.get((stream, group))
        writing = {} if state is None else state.writing
        for item_id, live in writing.items() if only is None else [(only, writing.get(only))]:
            current = items.get(item_id)
            if live is not None and current is not None and live.seq > current["seq"]:
                items[item_id] = live.item(item_id)
                at = max(at, live.seq)
        return at

    # -- subscriptions: see following.py ----------------------------------------------------

    async def subscribe(
        self, subscriber: Subscriber, stream: str, group: str, item_id: str | None = None, *,
        deltas: bool = False, after_seq: int | None = None, sse: bool = False, compressed: bool = True,
    ) -> None:
        """Join a group (or one item): a snapshot (or, for `after_seq`, the missed changes), then live.

        `compressed`: whether the subscriber's frames are compressed on their way (fanout.py paces
        whole items by it).
        """
        await self.following.subscribe(subscriber, stream, group, item_id, deltas=deltas, after_seq=after_seq,
                                       sse=sse, compressed=compressed)

    def unsubscribe(self, subscriber: Subscriber, stream: str, group: str, item_id: str | None = None) -> None:
        self.following.unsubscribe(subscriber, stream, group, item_id)

    def total_subscribers(self) -> int:
        return self.following.total_subscribers()

    def subscriber_count(self, stream: str, group: str) -> int:
        return self.following.subscriber_count(stream, group)

    async def close(self) -> None:
        """Persist every streaming item's latest text (graceful shutdown), then stop the sequencer."""
        for state in self._groups.values():
            for live in state.live.values():
                live.cancel_timers()
        await self.writes.close()
        await self.sequencer.stop()
