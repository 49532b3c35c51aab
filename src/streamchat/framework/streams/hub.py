"""The stream hub: items grouped by a key, stored, and pushed to subscribers on every change.

`StreamHub` owns storage and fan-out for every stream; `Stream[M]` (stream.py) is the typed view a
handler sees as `ctx.streams.<name>`, and group.py holds what the hub keeps for one group.

Every change of a group gets the group's next sequence number (`seq`) from the hub's sequencer
(sequencers/: in-process for one instance, Redis for several). A change has two halves. The
instance whose handler makes it sequences it and stores it (`set`, `append`, `delete`). Then
`_apply` takes it into the group on every instance that serves the group: its resume buffer,
its view of the items, its subscribers' sockets. On one instance that happens right after the
write; on several, when the Redis broadcast reaches each instance, the writer's own included, in
seq order (a gap is filled from the sequencer's log, or the view is rebuilt and every subscriber
sent a fresh snapshot). Writes and subscriptions of one group are serialised by a per-group lock,
so a subscriber that joins gets a snapshot and then exactly the changes after it, never one twice
or out of order.

An instance keeps a view of a group (its items as of the last change applied) while someone
here watches it. The view starts from the store laid over with the sequencer's log and this
instance's unflushed text; reads (`get`, `list_group`) are answered the same way, so any
instance answers with the latest state, whichever instance wrote it.

A growing text field is streamed with `append`: O(1) per piece. How each subscriber gets it is
fanout.py's job (joined delta frames, every seq for SSE, coalesced whole items for plain Motia
clients), what is kept for resume is replay.py's, and the batched store writes of streaming text
are writeback.py's. `set` (e.g. the final `completed`) writes through to the store before it is
applied.
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
from streamchat.framework.streams.changes import Change, Kind
from streamchat.framework.streams.fanout import DELTA_WINDOW_SECONDS, FanOut
from streamchat.framework.streams.group import Audience, GroupState, LiveItem, Subscriber
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
        self._catching_up: set[tuple[str, str]] = set()

    async def start(self) -> None:
        """Begin serving: a broadcasting sequencer starts delivering the other instances' changes."""
        await self.sequencer.start(self._follows, self._receive, self._catch_up_all)

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

    @staticmethod
    def _change(state: GroupState, stream: str, group: str, item_id: str | None, kind: Kind,
                payload: Any, seq: int | None) -> Change:
        return Change(stream, group, item_id, kind, payload, seq, state.tick())

    def _record(self, state: GroupState, change: Change, audience: Audience = "all") -> None:
        """Every seq-numbered change is kept for resume, then published."""
        self.replay.keep(state, change)
        self.fanout.publish(state, change, audience)

    def memory(self) -> dict[str, int]:
        """What the hub keeps, for operators (`/api/admin/stats`) and the soak."""
        return {"groups": len(self._groups), "idleGroupsKept": self.idle_groups_kept,
                "replayChanges": sum(len(state.replay) for state in self._groups.values()),
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
                self._apply(state, Sequenced(stream, group, seq, "put", item_id, data, created=created))
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
            live.parts.append(text)
            live.length += len(text)
            live.seq = seq
            live.flushed_at = asyncio.get_running_loop().time()  # on the writer's side: the last append
            self.writes.mark_dirty((stream, group, item_id), live)
            if not self.sequencer.broadcasts:
                self._apply(state, Sequenced(stream, group, seq, "delta", item_id, text, field_name))
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
                self._apply(state, Sequenced(stream, group, seq, "delete", item_id, data))
            return {**data, "id": item_id, "seq": seq}

    async def delete_group(self, stream: str, group: str) -> list[JSON]:
        """Delete every item of a group, each as `delete` does (subscribers get a delete per item),
        then drop the sequencer's log of it, so nothing of its text stays behind; the deleted items.
        Tombstones old enough to be of no more use go at the same time."""
        deleted = [item for entry in await self.list_group(stream, group)
                   if (item := await self.delete(stream, group, entry["id"])) is not None]
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
            self.fanout.publish(state, self._change(state, stream, group, item_id, "event", event, None))

    def notify(self, stream: str, group: str, event: JSON) -> None:
        """`send` to this instance's subscribers, for callers that cannot await; nothing when nobody listens."""
        state = self._groups.get((stream, group))
        if state is not None and (state.members or state.item_members):
            self.fanout.publish(state, self._change(state, stream, group, None, "event", event, None))

    async def _sequence(self, state: GroupState, stream: str, group: str, kind: SequencedKind, item_id: str,
                        payload: Any, field_name: str | None = None, lease: Lease | None = None) -> int:
        seq = await self.sequencer.sequence(stream, group, kind, item_id, payload, field_name, lease=lease)
        if seq is not None:
            return seq
        # The sequencer has no count for this group: it is new, it expired, or Redis lost its data.
        # Count on from above every seq that may have been handed out (the store's highest plus a
        # wide gap, unless the store has never seen the group), and re-announce what this instance
        # is streaming into the group so no one builds on text the lost log held.
        resumed = list(state.writing.items())
        stored = await self.store.max_seq(stream, group)
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

    async def _sequence_seeded(self, stream: str, group: str, kind: SequencedKind, item_id: str, payload: Any,
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

    # -- applying: one path for every change on every instance -----------------------------

    def _apply(self, state: GroupState, change: Sequenced) -> None:
        """Take the group's next change into its view and resume buffer and push it to subscribers here."""
        assert change.seq is not None and change.item_id is not None
        stream, group, item_id, seq = change.stream, change.group, change.item_id, change.seq
        state.seq = seq
        state.exact = True
        view = state.view
        if change.kind == "put":
            self._end_watching(state, item_id)
            item = {**change.payload, "id": item_id, "seq": seq}
            created = change.created if change.created is not None else view is None or item_id not in view
            if view is not None:
                view[item_id] = item
            self._record(state, self._change(state, stream, group, item_id, "create" if created else "update",
                                             item, seq))
        elif change.kind == "delta" and change.field is not None:
            delta = {"id": item_id, "seq": seq, "delta": change.payload}
            live = None
            if view is not None:
                live = state.live.get(item_id)
                if live is None:
                    base = view.get(item_id)
                    if base is None:
                        return
                    live = state.live[item_id] = LiveItem.starting_from(base, change.field, base["seq"])
                live.parts.append(change.payload)
                live.length += len(change.payload)
                live.seq = seq
            self._record(state, self._change(state, stream, group, item_id, "delta", delta, seq), "delta")
            if live is not None and state.plain_members:
                self.fanout.schedule_plain(state, stream, group, item_id, live)
        elif change.kind == "delete":
            self._end_watching(state, item_id)
            if view is not None and view.pop(item_id, None) is None:
                return
            item = {**change.payload, "id": item_id, "seq": seq}
            # Watchers here get the whole item; a client resuming later only its id (see replay.py).
            self.replay.deleted(state, item_id, seq)
            self.replay.keep(state, self._change(state, stream, group, item_id, "delete", {"id": item_id, "seq": seq},
                                                 seq))
            self.fanout.publish(state, self._change(state, stream, group, item_id, "delete", item, seq))

    @staticmethod
    def _end_watching(state: GroupState, item_id: str) -> None:
        """Watchers stop seeing an item stream: its next whole update or delete is what they get."""
        live = state.live.pop(item_id, None)
        if live is not None:
            live.end()

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

    # -- following: a view of a watched group, kept from the changes applied here ----------

    def _follows(self, stream: str, group: str) -> bool:
        state = self._groups.get((stream, group))
        return state is not None and state.view is not None

    def _receive(self, change: Sequenced) -> None:
        """A change broadcast by some instance: apply it in seq order, holding back what comes early."""
        state = self._groups.get((change.stream, change.group))
        if state is None or state.view is None:
            return
        if state.syncing:
            state.backlog.append(change)
            return
        if change.seq is None:
            self.fanout.publish(state, self._change(state, change.stream, change.group, change.item_id, "event",
                                              change.payload, None))
            return
        if change.seq <= state.seq:
            return
        if change.seq > state.seq + 1 and not change.reseeded:
            state.backlog.append(change)
            self._start_catch_up(change.stream, change.group)
            return
        self._apply(state, change)

    async def _follow(self, state: GroupState, stream: str, group: str) -> None:
        """Start keeping a view of the group (under its lock); changes meanwhile wait in the backlog."""
        if state.view is not None:
            return
        state.view, state.syncing, state.backlog = {}, True, []
        try:
            items, at = await self.read_group(stream, group)
        except BaseException:
            state.view, state.syncing, state.backlog = None, False, []
            raise
        self._rebuild(state, items, at)
        if self._drain_backlog(state):
            self._start_catch_up(stream, group)

    def _rebuild(self, state: GroupState, items: list[JSON], at: int) -> None:
        for live in state.live.values():
            live.end()
        state.live.clear()
        if self.sequencer.broadcasts:
            # What was heard before may have gaps; the store and the log are the whole story.
            self.replay.forget(state)
            state.exact = True
        state.view = {item["id"]: item for item in items}
        state.seq = max(at, state.seq)

    def _view_items(self, state: GroupState) -> list[JSON]:
        assert state.view is not None
        return [state.live[item_id].item(item_id) if item_id in state.live else item
                for item_id, item in state.view.items()]

    def _drain_backlog(self, state: GroupState) -> bool:
        """Apply held-back changes in order; True if a gap remains (a catch-up must fill it)."""
        backlog, state.backlog = sorted(state.backlog, key=lambda c: c.seq or 0), []
        state.syncing = False
        for index, change in enumerate(backlog):
            if change.seq is None or change.seq <= state.seq:
                continue
            if change.seq > state.seq + 1 and not change.reseeded:
                state.backlog = backlog[index:]
                return True
            self._apply(state, change)
        return False

    def _start_catch_up(self, stream: str, group: str) -> None:
        if (stream, group) in self._catching_up:
            return
        self._catching_up.add((stream, group))
        task = asyncio.get_running_loop().create_task(self._catch_up(stream, group))
        task.add_done_callback(lambda _: self._catching_up.discard((stream, group)))

    async def _catch_up_all(self) -> None:
        for stream, group in [key for key, state in self._groups.items() if state.view is not None]:
            self._start_catch_up(stream, group)

    async def _catch_up(self, stream: str, group: str) -> None:
        """Fill a gap in a followed group from the log; if the log cannot, rebuild and re-send."""
        while True:
            state = self._groups.get((stream, group))
            if state is None or state.view is None:
                return
            state.syncing = True
            try:
                await self._fill_gap(state, stream, group)
            except Exception:
                logger.exception("could not catch up a followed group; retrying", extra={"group": group})
                await asyncio.sleep(0.5)
                continue
            if state.view is None or not self._drain_backlog(state):
                return

    async def _fill_gap(self, state: GroupState, stream: str, group: str) -> None:
        missed = await self.sequencer.read_log(stream, group, after=state.seq)
        counter = await self.sequencer.current_seq(stream, group)
        expected, contiguous = state.seq, True
        for change in missed:
            contiguous = contiguous and (change.seq == expected + 1 or change.reseeded)
            expected = change.seq or expected
        if contiguous and (missed or counter == state.seq):
            for change in missed:
                self._apply(state, change)
            return
        logger.info("relay gap cannot be filled from the log; re-sending a snapshot",
                    extra={"stream": stream, "group": group, "seq": state.seq})
        items, at = await self.read_group(stream, group)
        if state.view is not None:
            self._rebuild(state, items, at)
            self._resend_snapshot(state, stream, group)

    def _resend_snapshot(self, state: GroupState, stream: str, group: str) -> None:
        """After a gap that could not be filled: every subscriber starts over from the current items."""
        self.fanout.drop_batches(state)
        items = self._view_items(state)
        sync = self._change(state, stream, group, None, "sync", items, state.seq)
        for subscriber in list(state.members):
            subscriber.push(sync)
            for index, item in enumerate(items, start=1):
                seq = state.seq if index == len(items) else None
                subscriber.push(Change(stream, group, item["id"], "update", item, seq, state.clock))
        for item_id, room in state.item_members.items():
            match = [entry for entry in items if entry["id"] == item_id]
            for subscriber in list(room):
                subscriber.push(self._change(state, stream, group, item_id, "sync", match[0] if match else None,
                                             state.seq))

    # -- subscriptions ---------------------------------------------------------------------

    async def subscribe(
        self, subscriber: Subscriber, stream: str, group: str, item_id: str | None = None, *,
        deltas: bool = False, after_seq: int | None = None, sse: bool = False,
    ) -> None:
        """Join a group (or one item): push a snapshot (or, for `after_seq`, the missed changes), then live.

        Runs under the group's lock, so nothing can change between the snapshot and the join.
        """
        state = self._group(stream, group)
        async with state.lock:
            await self._follow(state, stream, group)
            # From here to the end nothing awaits, so no broadcast change can slip in between.
            self.fanout.flush_batches(state)
            if after_seq is not None and not state.syncing and self._can_replay(state, after_seq):
                self.replay.purge(state)
                for change in state.replay:
                    if change.seq is not None and change.seq > after_seq and item_id in (None, change.item_id):
                        subscriber.push(change)
            else:
                self._push_snapshot(subscriber, state, stream, group, item_id, sse)
            self.fanout.join(state, subscriber, item_id, deltas, sse)

    def _push_snapshot(self, subscriber: Subscriber, state: GroupState, stream: str, group: str,
                       item_id: str | None, sse: bool) -> None:
        items = self._view_items(state)
        if item_id is not None:
            items = [item for item in items if item["id"] == item_id]
        if sse:
            # Only the snapshot's last frame carries an id: a client cut off half-way through it has
            # not seen the whole snapshot, and must get it again on reconnect.
            at = max([state.seq, *(item["seq"] for item in items)])
            for index, item in enumerate(items, start=1):
                subscriber.push(Change(stream, group, item["id"], "update", item,
                                       at if index == len(items) else None, state.clock))
        else:
            payload: Any = items if item_id is None else (items[0] if items else None)
            subscriber.push(self._change(state, stream, group, item_id, "sync", payload, state.seq))

    @staticmethod
    def _can_replay(state: GroupState, after_seq: int) -> bool:
        if not state.exact or after_seq > state.seq:
            return False
        if after_seq == state.seq:
            return True
        return bool(state.replay) and state.replay_from <= after_seq + 1

    def unsubscribe(self, subscriber: Subscriber, stream: str, group: str, item_id: str | None = None) -> None:
        state = self._groups.get((stream, group))
        if state is None:
            return
        self.fanout.leave(state, subscriber, item_id)
        if state.view is None or state.members or state.item_members or state.syncing:
            return
        # Nobody here watches the group any more: stop following it.
        for live in state.live.values():
            live.end()
        state.live.clear()
        state.view = None
        state.backlog.clear()
        if self.sequencer.broadcasts:
            # Its changes stop coming here, so what is kept would have gaps.
            self.replay.forget(state)
            state.exact = False

    def total_subscribers(self) -> int:
        return sum(len(s.members) + sum(map(len, s.item_members.values())) for s in self._groups.values())

    def subscriber_count(self, stream: str, group: str) -> int:
        state = self._groups.get((stream, group))
        return 0 if state is None else len(state.members) + sum(map(len, state.item_members.values()))

    async def close(self) -> None:
        """Persist every streaming item's latest text (graceful shutdown), then stop the sequencer."""
        for state in self._groups.values():
            for live in state.live.values():
                live.cancel_timers()
        await self.writes.close()
        await self.sequencer.stop()
