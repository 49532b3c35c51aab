"""A stream hub for many instances: changes are sequenced and fanned out through Redis.

Writing and watching are split. A handler's write (`set`, `append`, `delete`) goes to the relay,
which gives it the group's next seq and broadcasts it; whole items are then written through to
the store, streaming text is flushed to it in batches, exactly as on one instance. Nobody is
pushed anything by the writer itself: every instance, the writer's own included, hears the
change from the relay and pushes it to its own WebSocket and SSE subscribers, so all of them see
one order.

An instance follows a group (keeps a view of its items) while it has subscribers to it. The view
starts from the store plus the relay's log of what the store has not caught up with, and is then
advanced by relayed changes, strictly in seq order: a gap (a dropped connection) is filled from
the log, or, if the log no longer has it, the view is rebuilt and subscribers get a fresh snapshot.

Reads (`get`, `list_group`) merge the store with the log too, so any instance answers with the
latest state, whichever instance wrote it.

A handler's writes carry its partition lease, which the relay's script checks as it sequences
the change (see framework/leases.py): a writer that lost its lease gets `Fenced` and nothing reaches the log.
Its store writes cannot land late over a newer run's either: the store keeps the higher seq.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from streamchat.framework.config import StreamConfig
from streamchat.framework.errors import OUTAGES, StorageFull
from streamchat.framework.leases import Fenced, Lease
from streamchat.framework.store import JSON, Store, StoredItem
from streamchat.framework.streams.changes import Change, Kind
from streamchat.framework.streams.group import GroupState, LiveItem, Subscriber
from streamchat.framework.streams.hub import DELTA_WINDOW_SECONDS, IDLE_GROUPS_KEPT, StreamHub, UnknownItemError
from streamchat.framework.streams.relay import ChangeRelay, Relayed
from streamchat.framework.streams.replay import REPLAY_BUDGET_BYTES

logger = logging.getLogger("streamchat.replicated")

#: When Redis has lost a group's counter, seqs restart this far above anything stored, so no
#: seq a client may still hold is handed out again.
RESEED_GAP = 1_000_000
#: A streaming item nobody appended to for this long stops being kept in memory by its writer.
WRITER_IDLE_SECONDS = 60.0


def apply_to_items(items: dict[str, JSON], parts: dict[str, list[str]], change: Relayed) -> None:
    """Lay one logged change over stored items (a newer seq wins); text pieces collect in `parts`."""
    item_id, seq = change.item_id, change.seq
    if item_id is None or seq is None:
        return
    current = items.get(item_id)
    if current is not None and current["seq"] >= seq:
        return
    if change.kind == "put":
        items[item_id] = {**change.payload, "id": item_id, "seq": seq}
        parts.pop(item_id, None)
    elif change.kind == "delta" and current is not None and change.field is not None:
        pieces = parts.setdefault(item_id, [str(current.get(change.field, ""))])
        pieces.append(change.payload)
        current["seq"] = seq
        current[change.field] = pieces  # joined once, at the end
    elif change.kind == "delete":
        items.pop(item_id, None)
        parts.pop(item_id, None)


def join_parts(items: dict[str, JSON], parts: dict[str, list[str]]) -> None:
    for item_id, pieces in parts.items():
        item = items.get(item_id)
        if item is None:
            continue
        for key, value in item.items():
            if value is pieces:
                item[key] = "".join(pieces)


class ReplicatedStreamHub(StreamHub):
    """`StreamHub` with seq, fan-out and reads going through a `ChangeRelay`."""

    fences_in_store = False

    def __init__(self, store: Store, configs: Mapping[str, StreamConfig[Any]], relay: ChangeRelay, *,
                 delta_window: float = DELTA_WINDOW_SECONDS, replay_budget: int = REPLAY_BUDGET_BYTES,
                 idle_groups_kept: int = IDLE_GROUPS_KEPT) -> None:
        super().__init__(store, configs, delta_window=delta_window, replay_budget=replay_budget,
                         idle_groups_kept=idle_groups_kept)
        self.relay = relay
        self._writing: dict[tuple[str, str, str], LiveItem] = {}
        self._unstored: dict[tuple[str, str, str], StoredItem] = {}
        self._catching_up: set[tuple[str, str]] = set()

    async def start(self) -> None:
        await self.relay.start(self._follows, self._receive, self._catch_up_all)

    # -- reads: store + log ----------------------------------------------------------------

    async def read_group(self, stream: str, group: str) -> tuple[list[JSON], int]:
        """The group's items as of its latest change, and that change's seq."""
        self.config(stream)
        stored = await self.store.list_items(stream, group)
        log = await self.relay.read_log(stream, group)
        items = {entry.id: {**entry.data, "id": entry.id, "seq": entry.seq} for entry in stored}
        at = max((entry.seq for entry in stored), default=0)
        parts: dict[str, list[str]] = {}
        for change in log:
            apply_to_items(items, parts, change)
            at = max(at, change.seq or 0)
        join_parts(items, parts)
        return list(items.values()), at

    async def get(self, stream: str, group: str, item_id: str) -> JSON | None:
        items, _ = await self.read_group(stream, group)
        return next((item for item in items if item["id"] == item_id), None)

    async def list_group(self, stream: str, group: str) -> list[JSON]:
        items, _ = await self.read_group(stream, group)
        return items

    # -- writes: through the relay ---------------------------------------------------------

    async def _sequenced(self, stream: str, group: str, kind: Any, item_id: str, payload: Any,
                         field_name: str | None = None, lease: Lease | None = None) -> int:
        seq = await self.relay.publish(stream, group, kind, item_id, payload, field_name, lease=lease)
        if seq is not None:
            return seq
        # Redis has no counter for this group: it is new, it expired, or Redis lost its data.
        # Count on from above every seq that may have been handed out (the store's highest plus
        # a wide gap, unless the store has never seen the group), and re-announce what this
        # instance is streaming into the group so no one builds on text the lost log held.
        resumed = [(live_id, live) for (s, g, live_id), live in self._writing.items() if (s, g) == (stream, group)]
        stored = await self.store.max_seq(stream, group)
        floor = 0 if stored == 0 and not resumed else max([stored, *(live.seq for _, live in resumed)]) + RESEED_GAP
        if floor:
            logger.warning("re-seeding a stream group's sequence", extra={"stream": stream, "group": group,
                                                                         "floor": floor})
        for live_id, live in resumed:
            whole = {**live.data, live.field: live.text()}
            try:
                live.seq = await self._publish_seeded(stream, group, "put", live_id, whole, None, floor, live.lease)
            except Fenced:
                self._end_writing(stream, group, live_id)  # its writer's next append is refused too
        return await self._publish_seeded(stream, group, kind, item_id, payload, field_name, floor, lease)

    async def _publish_seeded(self, stream: str, group: str, kind: Any, item_id: str, payload: Any,
                              field_name: str | None, floor: int, lease: Lease | None) -> int:
        seq = await self.relay.publish(stream, group, kind, item_id, payload, field_name, floor=floor, lease=lease)
        assert seq is not None, "the relay ignored the floor"
        return seq

    async def set(self, stream: str, group: str, item_id: str, data: JSON, lease: Lease | None = None) -> JSON:
        state = self._group(stream, group)
        async with state.lock:
            self._end_writing(stream, group, item_id)
            seq = await self._sequenced(stream, group, "put", item_id, data, lease=lease)
            await self._store(stream, group, StoredItem(item_id, data, seq))
            return {**data, "id": item_id, "seq": seq}

    async def _store(self, stream: str, group: str, item: StoredItem) -> None:
        """Write an item through; if the store is down or full, keep it and let the flusher retry.

        The change is already in the relay's log, so every read sees it meanwhile. A full store is
        still reported to the writer (a request answers 507), but what the log announced is stored
        once there is room, so the store never stays behind the log.
        """
        try:
            await self.store.put_item(stream, group, item)
        except OUTAGES as error:
            logger.warning("store unavailable or full; the item will be written when it can be",
                           extra={"stream": stream, "group": group, "id": item.id, "error": str(error)})
            self._unstored[stream, group, item.id] = item
            self._start_flusher()
            if isinstance(error, StorageFull):
                raise

    def _end_writing(self, stream: str, group: str, item_id: str) -> LiveItem | None:
        live = self._writing.pop((stream, group, item_id), None)
        if live is not None:
            live.end()
            self._dirty.pop((stream, group, item_id), None)
        return live

    async def append(self, stream: str, group: str, item_id: str, field_name: str, text: str,
                     lease: Lease | None = None) -> int:
        state = self._group(stream, group)
        async with state.lock:
            key = (stream, group, item_id)
            live = self._writing.get(key)
            if live is None:
                current = await self.get(stream, group, item_id)
                if current is None:
                    raise UnknownItemError(f"{stream}/{group}/{item_id}: no such item to append to")
                live = self._writing[key] = LiveItem.starting_from(current, field_name, current["seq"])
            elif live.field != field_name:
                raise ValueError(f"{item_id} is already streaming into {live.field!r}, not {field_name!r}")
            live.lease = lease
            try:
                seq = await self._sequenced(stream, group, "delta", item_id, text, field_name, lease)
            except Fenced:
                self._end_writing(stream, group, item_id)  # its text is not the reply's any more
                raise
            live.parts.append(text)
            live.length += len(text)
            live.seq = seq
            live.flushed_at = asyncio.get_running_loop().time()  # writer side: the last append
            self._mark_dirty(key, live)
            return seq

    async def delete(self, stream: str, group: str, item_id: str) -> JSON | None:
        state = self._group(stream, group)
        async with state.lock:
            live = self._end_writing(stream, group, item_id)
            current = await self.get(stream, group, item_id)
            if current is None:
                return None
            data = {key: value for key, value in current.items() if key not in ("id", "seq")}
            if live is not None:
                data[live.field] = live.text()
            seq = await self._sequenced(stream, group, "delete", item_id, data)
            self._unstored.pop((stream, group, item_id), None)
            await self.store.delete_item(stream, group, item_id)
            return {**data, "id": item_id, "seq": seq}

    async def send(self, stream: str, group: str, event: JSON, item_id: str | None = None) -> None:
        self.config(stream)
        await self.relay.publish_event(stream, group, item_id, event)

    def _has_pending_writes(self) -> bool:
        return bool(self._dirty or self._unstored)

    async def _flush_store(self) -> None:
        await super()._flush_store()
        pending, self._unstored = self._unstored, {}
        for (stream, group, _), item in pending.items():
            try:
                await self.store.put_item(stream, group, item)
            except Exception:
                logger.warning("store still unavailable; will retry", extra={"stream": stream, "group": group})
                self._unstored.setdefault((stream, group, item.id), item)
        # A writer that went quiet (its handler was cancelled, or handed the reply back) is
        # forgotten once everything it wrote is stored; a later append starts from a fresh read.
        now = asyncio.get_running_loop().time()
        for key, live in list(self._writing.items()):
            if now - live.flushed_at > WRITER_IDLE_SECONDS and live.stored_seq >= live.seq and not live.dirty:
                self._writing.pop(key, None)

    async def close(self) -> None:
        await super().close()
        await self.relay.stop()

    # -- following: views kept from relayed changes ----------------------------------------

    def _follows(self, stream: str, group: str) -> bool:
        state = self._groups.get((stream, group))
        return state is not None and state.view is not None

    def _receive(self, change: Relayed) -> None:
        state = self._groups.get((change.stream, change.group))
        if state is None or state.view is None:
            return
        if state.syncing:
            state.backlog.append(change)
            return
        if change.seq is None:
            self._publish(state, self._change(state, change.stream, change.group, change.item_id, "event",
                                              change.payload, None))
            return
        if change.seq <= state.seq:
            return
        if change.seq > state.seq + 1 and not change.reseeded:
            state.backlog.append(change)
            self._start_catch_up(change.stream, change.group)
            return
        self._apply(state, change)

    def _apply(self, state: GroupState, change: Relayed) -> None:
        """Advance a view by the next change and push it to this instance's subscribers."""
        assert state.view is not None and change.seq is not None and change.item_id is not None
        stream, group, item_id, seq = change.stream, change.group, change.item_id, change.seq
        state.seq = seq
        if change.kind == "put":
            live = state.live.pop(item_id, None)
            if live is not None:
                live.end()
            item = {**change.payload, "id": item_id, "seq": seq}
            kind: Kind = "update" if item_id in state.view else "create"
            state.view[item_id] = item
            self._record(state, self._change(state, stream, group, item_id, kind, item, seq))
        elif change.kind == "delta" and change.field is not None:
            live = state.live.get(item_id)
            if live is None:
                base = state.view.get(item_id)
                if base is None:
                    return
                live = state.live[item_id] = LiveItem.starting_from(base, change.field, base["seq"])
            live.parts.append(change.payload)
            live.length += len(change.payload)
            live.seq = seq
            delta = {"id": item_id, "seq": seq, "delta": change.payload}
            self._record(state, self._change(state, stream, group, item_id, "delta", delta, seq), "delta")
            if state.plain_members:
                self._schedule_plain(asyncio.get_running_loop(), stream, group, item_id, live)
        elif change.kind == "delete":
            live = state.live.pop(item_id, None)
            if live is not None:
                live.end()
            if state.view.pop(item_id, None) is not None:
                item = {**change.payload, "id": item_id, "seq": seq}
                self._record(state, self._change(state, stream, group, item_id, "delete", item, seq))

    def _view_items(self, state: GroupState) -> list[JSON]:
        assert state.view is not None
        return [state.live[item_id].item(item_id) if item_id in state.live else item
                for item_id, item in state.view.items()]

    def _rebuild(self, state: GroupState, items: list[JSON], at: int) -> None:
        for live in state.live.values():
            live.end()
        state.live.clear()
        self._forget_replay(state)
        state.view = {item["id"]: item for item in items}
        state.seq = max(at, state.seq)

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
        missed = await self.relay.read_log(stream, group, after=state.seq)
        counter = await self.relay.current_seq(stream, group)
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
        self._drop_batches(state)
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
        state = self._group(stream, group)
        async with state.lock:
            await self._follow(state, stream, group)
            # From here to the end nothing awaits, so no relayed change can slip in between.
            self._flush_batches(state)
            if after_seq is not None and not state.syncing and self._can_replay(state, after_seq):
                for change in state.replay:
                    if change.seq is not None and change.seq > after_seq and item_id in (None, change.item_id):
                        subscriber.push(change)
            else:
                self._push_snapshot(subscriber, state, stream, group, item_id, sse)
            self._join_room(state, subscriber, item_id, deltas, sse)

    def _push_snapshot(self, subscriber: Subscriber, state: GroupState, stream: str, group: str,
                       item_id: str | None, sse: bool) -> None:
        items = self._view_items(state)
        if item_id is not None:
            items = [item for item in items if item["id"] == item_id]
        if sse:
            at = max([state.seq, *(item["seq"] for item in items)])
            for index, item in enumerate(items, start=1):
                subscriber.push(Change(stream, group, item["id"], "update", item,
                                       at if index == len(items) else None, state.clock))
        else:
            payload: Any = items if item_id is None else (items[0] if items else None)
            subscriber.push(self._change(state, stream, group, item_id, "sync", payload, state.seq))

    @staticmethod
    def _can_replay(state: GroupState, after_seq: int) -> bool:
        if after_seq > state.seq:
            return False
        if after_seq == state.seq:
            return True
        return bool(state.replay) and state.replay[0].seq is not None and state.replay[0].seq <= after_seq + 1

    def unsubscribe(self, subscriber: Subscriber, stream: str, group: str, item_id: str | None = None) -> None:
        super().unsubscribe(subscriber, stream, group, item_id)
        state = self._groups.get((stream, group))
        if state is None or state.view is None or state.members or state.item_members or state.syncing:
            return
        # Nobody here watches the group any more: stop following it.
        for live in state.live.values():
            live.end()
        state.live.clear()
        self._forget_replay(state)
        state.view = None
        state.backlog.clear()
