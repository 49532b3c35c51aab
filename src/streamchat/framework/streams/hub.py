"""The stream hub: items grouped by a key, stored, and pushed to subscribers on every change.

`StreamHub` owns storage and fan-out for every stream; `Stream[M]` (stream.py) is the typed view a
handler sees as `ctx.streams.<name>`, and group.py holds what the hub keeps for one group.

Every change of a group gets the group's next sequence number (`seq`). Writes of one group are
serialised by a per-group lock, so a subscriber that joins gets a snapshot and then exactly the
changes after it, never one twice or out of order.

A growing text field is streamed with `append`: O(1) per piece. WebSocket subscribers that asked
for deltas get the first piece at once and then at most one delta frame per `delta_window`
(25 ms): pieces that arrive faster are joined into one frame carrying the last seq, so a fast
model costs a few frames per second instead of one per token. SSE subscribers get every seq as
its own frame (their `id:` must resume exactly). Plain Motia subscribers get the whole item,
coalesced: at most one update every 25 ms, and only once the text has grown by 5% since the last
one they got (or after a second of quiet) — so the first token goes out at once, and the bytes
they receive stay linear in the reply's length instead of growing with its square. The store gets
every streaming item's text in one batched write every 0.5 s. `set` (e.g. the final `completed`)
writes through to the store before it is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from streamchat.framework.config import StreamConfig
from streamchat.framework.leases import Fenced, Lease
from streamchat.framework.store import JSON, Store, StoredItem
from streamchat.framework.streams.changes import Change, Kind
from streamchat.framework.streams.group import Audience, DeltaBatch, GroupState, LiveItem, Mode, Subscriber
from streamchat.framework.streams.replay import REPLAY_BUDGET_BYTES, REPLAY_LIMIT, replay_cost

logger = logging.getLogger("streamchat.streams")

CLIENT_FLUSH_SECONDS = 0.025
DELTA_WINDOW_SECONDS = 0.025
PLAIN_GROWTH = 0.05
PLAIN_QUIET_SECONDS = 1.0
STORE_FLUSH_SECONDS = 0.5
#: Groups nobody watches or writes that stay in memory (their seq block, their resume buffer).
IDLE_GROUPS_KEPT = 2_000


class UnknownStreamError(LookupError):
    """A stream name that no StreamConfig declares."""


class UnknownItemError(LookupError):
    """An append to an item that does not exist."""


class StreamHub:
    """Stores items of every declared stream and fans changes out to subscribers.

    Writes made under a lease (see framework/leases.py) are fenced by the store: `set` writes through and
    raises `Fenced` at once; `append` stays in memory, and when the batched write finds the lease
    taken over, the writer's next `append` raises `Fenced`.
    """

    #: Whether the store checks writers' leases (a replicated hub checks them in Redis instead).
    fences_in_store = True

    def __init__(self, store: Store, configs: Mapping[str, StreamConfig[Any]], *,
                 delta_window: float = DELTA_WINDOW_SECONDS, replay_budget: int = REPLAY_BUDGET_BYTES,
                 idle_groups_kept: int = IDLE_GROUPS_KEPT) -> None:
        self.store = store
        self.configs = dict(configs)
        self.delta_window = delta_window
        self.replay_budget = replay_budget
        self.idle_groups_kept = idle_groups_kept
        self._groups: OrderedDict[tuple[str, str], GroupState] = OrderedDict()
        self._dirty: dict[tuple[str, str, str], LiveItem] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._replay_bytes = 0

    async def start(self) -> None:
        """Begin serving (a replicated hub starts listening to the other instances here)."""

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
            self._forget_replay(self._groups.pop(key))

    async def _next_seq(self, state: GroupState, stream: str, group: str) -> int:
        if state.seq >= state.reserved:
            block = self.store.seq_block
            state.reserved = await self.store.reserve_seq(stream, group, block)
            state.seq = max(state.seq, state.reserved - block)
        state.seq += 1
        return state.seq

    @staticmethod
    def _tick(state: GroupState) -> int:
        """Frame timestamp in ms, strictly rising per group (Motia clients drop ties)."""
        state.clock = max(int(time.time() * 1000), state.clock + 1)
        return state.clock

    def _change(self, state: GroupState, stream: str, group: str, item_id: str | None, kind: Kind,
                payload: Any, seq: int | None) -> Change:
        return Change(stream, group, item_id, kind, payload, seq, self._tick(state))

    def _publish(self, state: GroupState, change: Change, audience: Audience = "all") -> None:
        if change.kind == "delta" and self.delta_window > 0:
            if state.every_delta_members:  # one pass over the subscribers per piece when nobody needs two
                self._push(state, change, "every-delta")
            self._join_delta(state, change)
            return
        if change.item_id is not None and audience != "plain" and change.item_id in state.batches:
            # The item's held-back pieces go out before whatever comes next for it (its final update).
            self._flush_batch(state, change.item_id, ended=change.kind != "event")
        self._push(state, change, audience)

    @staticmethod
    def _push(state: GroupState, change: Change, audience: Audience) -> None:
        targets = state.members
        if change.item_id is not None and change.item_id in state.item_members:
            targets = {**state.item_members[change.item_id], **state.members}
        for subscriber, mode in targets.items():
            if (audience == "all" or audience == mode
                    or (audience == "delta" and mode != "plain")):
                subscriber.push(change)

    def _join_delta(self, state: GroupState, change: Change) -> None:
        """Send a delta to `joined-deltas` subscribers now, or fold it into the item's next frame."""
        item_id = change.item_id
        assert item_id is not None
        batch = state.batches.get(item_id)
        if batch is None:
            batch = state.batches[item_id] = DeltaBatch(change.stream, change.group)
        loop = asyncio.get_running_loop()
        now = loop.time()
        if batch.timer is None and now - batch.sent_at >= self.delta_window:
            batch.sent_at = now
            self._push(state, change, "joined-deltas")
            return
        batch.parts.append(change.payload["delta"])
        batch.seq = change.seq or batch.seq
        if batch.timer is None:
            batch.timer = loop.call_at(batch.sent_at + self.delta_window, self._flush_batch, state, item_id)

    def _flush_batch(self, state: GroupState, item_id: str, ended: bool = False) -> None:
        """Send an item's held-back pieces as one delta (its seq is the last one folded in)."""
        batch = state.batches.pop(item_id, None) if ended else state.batches.get(item_id)
        if batch is None:
            return
        batch.cancel()
        if batch.parts:
            delta = {"id": item_id, "seq": batch.seq, "delta": "".join(batch.parts)}
            batch.parts.clear()
            batch.sent_at = asyncio.get_running_loop().time()
            self._push(state, self._change(state, batch.stream, batch.group, item_id, "delta", delta, batch.seq),
                       "joined-deltas")

    def _flush_batches(self, state: GroupState) -> None:
        """Before a subscriber joins: what is held back goes to the others, the joiner's snapshot has it."""
        for item_id in list(state.batches):
            self._flush_batch(state, item_id)

    @staticmethod
    def _drop_batches(state: GroupState) -> None:
        """Every subscriber is being sent the current items again: held-back pieces are in them."""
        for batch in state.batches.values():
            batch.cancel()
        state.batches.clear()

    @staticmethod
    def _join_room(state: GroupState, subscriber: Subscriber, item_id: str | None, deltas: bool, sse: bool) -> None:
        room = state.members if item_id is None else state.item_members.setdefault(item_id, {})
        StreamHub._count(state, room.get(subscriber), -1)
        mode: Mode = "plain" if not deltas else "every-delta" if sse else "joined-deltas"
        room[subscriber] = mode
        StreamHub._count(state, mode, 1)

    @staticmethod
    def _count(state: GroupState, mode: Mode | None, change: int) -> None:
        if mode == "plain":
            state.plain_members += change
        elif mode == "every-delta":
            state.every_delta_members += change

    def _record(self, state: GroupState, change: Change, audience: Audience = "all") -> None:
        """Every seq-numbered change is kept for SSE resume, then published.

        Memory is bounded twice: per group (REPLAY_LIMIT changes) and in all (`replay_budget`
        bytes, as `replay_cost` counts them); past the budget the least recently active groups
        lose their buffers, and a client resuming one of them gets a snapshot instead.
        """
        if len(state.replay) == REPLAY_LIMIT:
            self._drop_oldest(state)
        cost = replay_cost(change)
        state.replay.append(change)
        state.replay_bytes += cost
        self._replay_bytes += cost
        if self._replay_bytes > self.replay_budget:
            self._trim_replays(keep=state)
        self._publish(state, change, audience)

    def _trim_replays(self, keep: GroupState) -> None:
        """Down to 80% of the budget, so trimming is rare: empty the least recently active groups'
        buffers, and if the group being written holds more by itself, drop its oldest changes."""
        target = self.replay_budget * 0.8
        for state in self._groups.values():
            if self._replay_bytes <= target:
                return
            if state is not keep:
                self._forget_replay(state)
        while self._replay_bytes > target and keep.replay:
            self._drop_oldest(keep)

    def _drop_oldest(self, state: GroupState) -> None:
        cost = replay_cost(state.replay.popleft())
        state.replay_bytes -= cost
        self._replay_bytes -= cost

    def _forget_replay(self, state: GroupState) -> None:
        self._replay_bytes -= state.replay_bytes
        state.replay_bytes = 0
        state.replay.clear()

    def memory(self) -> dict[str, int]:
        """What the hub keeps, for operators (`/api/admin/stats`) and the soak."""
        return {"groups": len(self._groups), "idleGroupsKept": self.idle_groups_kept,
                "replayChanges": sum(len(state.replay) for state in self._groups.values()),
                "replayBytes": self._replay_bytes, "replayBudgetBytes": self.replay_budget}

    # -- writes ----------------------------------------------------------------------------

    async def set(self, stream: str, group: str, item_id: str, data: JSON, lease: Lease | None = None) -> JSON:
        """Store a validated item (written through) and publish `create` or `update`."""
        state = self._group(stream, group)
        async with state.lock:
            self._end_live(state, stream, group, item_id)
            seq = await self._next_seq(state, stream, group)
            created = await self.store.put_item(stream, group, StoredItem(item_id, data, seq), lease)
            item = {**data, "id": item_id, "seq": seq}
            self._record(state, self._change(state, stream, group, item_id, "create" if created else "update",
                                             item, seq))
            return item

    def _end_live(self, state: GroupState, stream: str, group: str, item_id: str) -> LiveItem | None:
        """Stop streaming an item: a write-through or delete supersedes its pending updates."""
        live = state.live.pop(item_id, None)
        if live is not None:
            live.end()
            self._dirty.pop((stream, group, item_id), None)
        return live

    async def append(self, stream: str, group: str, item_id: str, field_name: str, text: str,
                     lease: Lease | None = None) -> int:
        """Add `text` to the end of an item's string field; returns the change's seq. O(len(text))."""
        state = self._group(stream, group)
        async with state.lock:
            live = state.live.get(item_id)
            if live is None:
                stored = await self.store.get_item(stream, group, item_id)
                if stored is None:
                    raise UnknownItemError(f"{stream}/{group}/{item_id}: no such item to append to")
                current = str(stored.data.get(field_name, ""))
                live = LiveItem(stored.data, field_name, [current], stored.seq, stored.seq, len(current), len(current))
                state.live[item_id] = live
            elif live.field != field_name:
                raise ValueError(f"{item_id} is already streaming into {live.field!r}, not {field_name!r}")
            if live.fenced and live.lease is not None:
                self._end_live(state, stream, group, item_id)
                raise Fenced(live.lease, f"{stream}/{group}/{item_id}")
            live.lease = lease
            seq = await self._next_seq(state, stream, group)
            live.parts.append(text)
            live.length += len(text)
            live.seq = seq
            delta = {"id": item_id, "seq": seq, "delta": text}
            self._record(state, self._change(state, stream, group, item_id, "delta", delta, seq), "delta")
            loop = asyncio.get_running_loop()
            if state.plain_members:
                self._schedule_plain(loop, stream, group, item_id, live)
            self._mark_dirty((stream, group, item_id), live)
            return seq

    def _schedule_plain(
        self, loop: asyncio.AbstractEventLoop, stream: str, group: str, item_id: str, live: LiveItem
    ) -> None:
        """Decide when plain subscribers next get the whole item (see the module docstring)."""
        now = loop.time()
        grown = live.length - live.sent_length >= max(1.0, live.sent_length * PLAIN_GROWTH)
        due = max(now, live.flushed_at + CLIENT_FLUSH_SECONDS) if grown else now + PLAIN_QUIET_SECONDS
        if live.client_timer is not None:
            if live.client_due <= due:
                return
            live.client_timer.cancel()
            live.client_timer = None
        if due <= now:
            self._flush_clients(stream, group, item_id)
        else:
            live.client_due = due
            live.client_timer = loop.call_at(due, self._flush_clients, stream, group, item_id)

    def _flush_clients(self, stream: str, group: str, item_id: str) -> None:
        """Send plain (non-delta) subscribers the whole item as it is now."""
        state = self._groups.get((stream, group))
        live = state.live.get(item_id) if state else None
        if state is None or live is None:
            return
        live.client_timer = None
        live.flushed_at = asyncio.get_running_loop().time()
        live.sent_length = live.length
        item = live.item(item_id)
        self._publish(state, self._change(state, stream, group, item_id, "update", item, live.seq), "plain")

    async def _flush_store_periodically(self) -> None:
        """Persist streaming items' text every STORE_FLUSH_SECONDS, all of them in one batch."""
        while self._has_pending_writes():
            await asyncio.sleep(STORE_FLUSH_SECONDS)
            await self._flush_store()

    def _mark_dirty(self, key: tuple[str, str, str], live: LiveItem) -> None:
        """Queue a streaming item's text for the next batched store write."""
        if not live.dirty:
            live.dirty = True
            self._dirty[key] = live
            self._start_flusher()

    def _has_pending_writes(self) -> bool:
        return bool(self._dirty)

    def _start_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_store_periodically())

    async def _flush_store(self) -> None:
        batch, self._dirty = self._dirty, {}
        by_stream: dict[str, list[tuple[str, StoredItem, LiveItem]]] = {}
        for (stream, group, item_id), live in batch.items():
            live.dirty = False
            if not live.ended and live.seq > live.stored_seq:
                by_stream.setdefault(stream, []).append((group, live.snapshot(item_id), live))
        for stream, rows in by_stream.items():
            leases = {(group, snapshot.id): live.lease for group, snapshot, live in rows
                      if live.lease is not None and self.fences_in_store}
            try:
                refused = await self.store.put_items(stream, [(group, snapshot) for group, snapshot, _ in rows], leases)
            except Exception:
                logger.exception("could not persist streaming items; will retry", extra={"items": len(rows)})
                for group, snapshot, live in rows:
                    live.dirty = True
                    self._dirty[stream, group, snapshot.id] = live
                continue
            for group, snapshot, live in rows:
                if (group, snapshot.id) in refused:
                    logger.warning("a streaming item's lease was taken over; its writer will stop",
                                   extra={"stream": stream, "group": group, "id": snapshot.id})
                    live.fenced = True
                else:
                    live.stored_seq = max(live.stored_seq, snapshot.seq)

    async def delete(self, stream: str, group: str, item_id: str) -> JSON | None:
        state = self._group(stream, group)
        async with state.lock:
            live = self._end_live(state, stream, group, item_id)
            stored = await self.store.get_item(stream, group, item_id)
            if stored is None:
                return None
            await self.store.delete_item(stream, group, item_id)
            seq = await self._next_seq(state, stream, group)
            item = {**(live.item(item_id) if live else stored.data), "id": item_id, "seq": seq}
            self._record(state, self._change(state, stream, group, item_id, "delete", item, seq))
            return item

    async def send(self, stream: str, group: str, event: JSON, item_id: str | None = None) -> None:
        """Push a custom event (not stored, no seq) to the group's subscribers, or one item's."""
        state = self._group(stream, group)
        async with state.lock:
            self._publish(state, self._change(state, stream, group, item_id, "event", event, None))

    def notify(self, stream: str, group: str, event: JSON) -> None:
        """`send` for callers that cannot await; does nothing when nobody listens."""
        state = self._groups.get((stream, group))
        if state is not None and (state.members or state.item_members):
            self._publish(state, self._change(state, stream, group, None, "event", event, None))

    # -- reads -----------------------------------------------------------------------------

    async def get(self, stream: str, group: str, item_id: str) -> JSON | None:
        state = self._group(stream, group)
        live = state.live.get(item_id)
        if live is not None:
            return live.item(item_id)
        stored = await self.store.get_item(stream, group, item_id)
        return None if stored is None else {**stored.data, "id": stored.id, "seq": stored.seq}

    async def list_group(self, stream: str, group: str) -> list[JSON]:
        state = self._group(stream, group)
        return self._overlay(state, await self.store.list_items(stream, group))

    @staticmethod
    def _overlay(state: GroupState, stored: list[StoredItem]) -> list[JSON]:
        """Stored items with the in-memory text of streaming ones laid over them."""
        items = []
        for entry in stored:
            live = state.live.get(entry.id)
            items.append(live.item(entry.id) if live else {**entry.data, "id": entry.id, "seq": entry.seq})
        return items

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
            self._flush_batches(state)
            if after_seq is not None and self._can_replay(state, after_seq):
                for change in state.replay:
                    if change.seq is not None and change.seq > after_seq and item_id in (None, change.item_id):
                        subscriber.push(change)
            else:
                items = self._overlay(state, await self.store.list_items(stream, group))
                if item_id is not None:
                    items = [item for item in items if item["id"] == item_id]
                if sse:
                    # Only the snapshot's last frame carries an id: a client cut off half-way through
                    # it has not seen the whole snapshot, and must get it again on reconnect.
                    at = max([state.seq, *(item["seq"] for item in items)])
                    for index, item in enumerate(items, start=1):
                        seq = at if index == len(items) else None
                        subscriber.push(Change(stream, group, item["id"], "update", item, seq, state.clock))
                else:
                    payload: Any = items if item_id is None else (items[0] if items else None)
                    subscriber.push(self._change(state, stream, group, item_id, "sync", payload, state.seq))
            self._join_room(state, subscriber, item_id, deltas, sse)

    @staticmethod
    def _can_replay(state: GroupState, after_seq: int) -> bool:
        if state.reserved == 0 or after_seq > state.seq:
            return False
        if after_seq == state.seq:
            return True
        return bool(state.replay) and state.replay[0].seq is not None and state.replay[0].seq <= after_seq + 1

    def unsubscribe(self, subscriber: Subscriber, stream: str, group: str, item_id: str | None = None) -> None:
        state = self._groups.get((stream, group))
        if state is None:
            return
        room = state.members if item_id is None else state.item_members.get(item_id, {})
        self._count(state, room.pop(subscriber, None), -1)
        if item_id is not None and not room:
            state.item_members.pop(item_id, None)

    def total_subscribers(self) -> int:
        return sum(len(s.members) + sum(map(len, s.item_members.values())) for s in self._groups.values())

    def subscriber_count(self, stream: str, group: str) -> int:
        state = self._groups.get((stream, group))
        return 0 if state is None else len(state.members) + sum(map(len, state.item_members.values()))

    async def close(self) -> None:
        """Persist every streaming item's latest text (graceful shutdown)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        for state in self._groups.values():
            for live in state.live.values():
                live.cancel_timers()
        await self._flush_store()


