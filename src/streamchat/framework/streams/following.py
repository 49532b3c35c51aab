"""Following groups on this instance: the view of a watched group's items, kept from the changes
applied here, and the joins that start from it.

Every change, this instance's own or one broadcast by another, is taken in by `apply`: into the
group's resume buffer, its view of the items, its subscribers' sockets. On several instances
changes arrive over the sequencer's broadcast and are applied in seq order; one that comes early
waits in the group's backlog, and a gap is filled from the sequencer's log, or, when the log no
longer has it, the view is rebuilt from the store and every subscriber sent a fresh snapshot.
A join runs under the group's lock and awaits nothing between its snapshot and its place among
the subscribers, so it gets a snapshot and then exactly the changes after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from streamchat.framework.store import JSON
from streamchat.framework.streams.changes import Change, Kind, delta_payload
from streamchat.framework.streams.events import GroupEvents
from streamchat.framework.streams.fanout import FanOut
from streamchat.framework.streams.group import Audience, GroupState, KeptEvent, LiveItem, Subscriber
from streamchat.framework.streams.replay import ReplayBuffers
from streamchat.framework.streams.sequencers.base import Sequenced, Sequencer

logger = logging.getLogger("streamchat.streams")

ReadGroup = Callable[[str, str], Awaitable[tuple[list[JSON], int]]]


class Following:
    """The views, resume buffers and subscribers of the hub's groups on this instance."""

    def __init__(self, groups: OrderedDict[tuple[str, str], GroupState], group: Callable[[str, str], GroupState],
                 sequencer: Sequencer, fanout: FanOut, replay: ReplayBuffers, read_group: ReadGroup,
                 events: GroupEvents) -> None:
        #: The hub's groups (shared), and how the hub finds or makes one.
        self._groups = groups
        self._group = group
        self.sequencer = sequencer
        self.fanout = fanout
        self.replay = replay
        #: The group's items as of its latest change, and that change's seq (the hub's read).
        self._read_group = read_group
        #: Which events are sticky, and the latest of each as stored and logged.
        self.events = events
        self._catching_up: set[tuple[str, str]] = set()

    def record(self, state: GroupState, change: Change, audience: Audience = "all") -> None:
        """Every seq-numbered change is kept for resume, then published."""
        self.replay.keep(state, change)
        self.fanout.publish(state, change, audience)

    def apply(self, state: GroupState, change: Sequenced) -> None:
        """Take the group's next change into its view and resume buffer and push it to subscribers here."""
        assert change.seq is not None
        stream, group, item_id, seq = change.stream, change.group, change.item_id, change.seq
        state.seq = seq
        state.exact = True
        if item_id is None:
            self._apply_group_event(state, change)
            return
        view = state.view
        if change.kind == "put":
            self._end_watching(state, item_id)
            item = {**change.payload, "id": item_id, "seq": seq}
            created = change.created if change.created is not None else view is None or item_id not in view
            if view is not None:
                view[item_id] = item
            self.record(state, state.change(stream, group, item_id, "create" if created else "update", item, seq))
        elif change.kind == "delta" and change.field is not None:
            delta = delta_payload(item_id, seq, change.payload, change.field)
            live = None
            if view is not None:
                live = state.live.get(item_id)
                if live is None:
                    base = view.get(item_id)
                    if base is None:
                        return
                    live = state.live[item_id] = LiveItem.starting_from(base, change.field, base["seq"])
                live.grow(change.payload)
                live.seq = seq
            self.record(state, state.change(stream, group, item_id, "delta", delta, seq), "delta")
            if live is not None and state.plain_members:
                self.fanout.schedule_plain(state, stream, group, item_id, live)
        elif change.kind == "delete":
            self._end_watching(state, item_id)
            if view is not None and view.pop(item_id, None) is None:
                return
            item = {**change.payload, "id": item_id, "seq": seq}
            # Watchers here get the whole item; a client resuming later only its id (see replay.py).
            self.replay.deleted(state, item_id, seq)
            self.replay.keep(state, state.change(stream, group, item_id, "delete", {"id": item_id, "seq": seq}, seq))
            self.fanout.publish(state, state.change(stream, group, item_id, "delete", item, seq))

    def _apply_group_event(self, state: GroupState, change: Sequenced) -> None:
        """A group event (events.py): kept if sticky, then recorded like an item change; or the kept ones cleared."""
        assert change.seq is not None
        if change.kind == "events-cleared":
            state.sticky = {name: kept for name, kept in state.sticky.items() if kept.seq > change.seq}
            self.replay.forget_events(state, change.seq)
            return
        name = change.payload["type"]
        if name in self.events.sticky_names(change.stream):
            current = state.sticky.get(name)
            if current is None or current.seq < change.seq:
                state.sticky[name] = KeptEvent(change.seq, change.payload)
        self.record(state, state.change(change.stream, change.group, None, "group-event", change.payload, change.seq))

    @staticmethod
    def _end_watching(state: GroupState, item_id: str) -> None:
        """Watchers stop seeing an item stream: its next whole update or delete is what they get."""
        live = state.live.pop(item_id, None)
        if live is not None:
            live.end()

    # -- following -----------------------------------------------------------------------

    def follows(self, stream: str, group: str) -> bool:
        """Whether someone here watches the group (the sequencer parses only such groups' changes)."""
        state = self._groups.get((stream, group))
        return state is not None and state.view is not None

    def receive(self, change: Sequenced) -> None:
        """A change broadcast by some instance: apply it in seq order, holding back what comes early."""
        state = self._groups.get((change.stream, change.group))
        if state is None or state.view is None:
            return
        if state.syncing:
            state.backlog.append(change)
            return
        if change.seq is None:
            self.fanout.publish(state, state.change(change.stream, change.group, change.item_id, "event",
                                                    change.payload, None))
            return
        if change.seq <= state.seq:
            return
        if change.seq > state.seq + 1 and not change.reseeded:
            state.backlog.append(change)
            self._start_catch_up(change.stream, change.group)
            return
        self.apply(state, change)

    async def _follow(self, state: GroupState, stream: str, group: str) -> None:
        """Start keeping a view of the group (under its lock); changes meanwhile wait in the backlog."""
        if state.view is not None:
            return
        state.view, state.syncing, state.backlog = {}, True, []
        try:
            sticky, items, at = await self._read(stream, group)
        except BaseException:
            state.view, state.syncing, state.backlog = None, False, []
            raise
        self._rebuild(state, items, at, sticky)
        if self._drain_backlog(state):
            self._start_catch_up(stream, group)

    async def _read(self, stream: str, group: str) -> tuple[dict[str, KeptEvent], list[JSON], int]:
        """The group's sticky events, its items and the seq they are at. The events are read first: the
        items' read then reaches at least as far, so nothing between them is taken as applied."""
        sticky = await self.events.read(stream, group)
        items, at = await self._read_group(stream, group)
        return sticky, items, max([at, *(kept.seq for kept in sticky.values())])

    def _rebuild(self, state: GroupState, items: list[JSON], at: int, sticky: dict[str, KeptEvent]) -> None:
        for live in state.live.values():
            live.end()
        state.live.clear()
        if self.sequencer.broadcasts:
            # What was heard before may have gaps; the store and the log are the whole story.
            self.replay.forget(state)
            state.exact = True
        state.view = {item["id"]: item for item in items}
        state.sticky = dict(sticky)
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
            self.apply(state, change)
        return False

    def _start_catch_up(self, stream: str, group: str) -> None:
        if (stream, group) in self._catching_up:
            return
        self._catching_up.add((stream, group))
        task = asyncio.get_running_loop().create_task(self._catch_up(stream, group))
        task.add_done_callback(lambda _: self._catching_up.discard((stream, group)))

    async def catch_up_all(self) -> None:
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
                self.apply(state, change)
            return
        logger.info("relay gap cannot be filled from the log; re-sending a snapshot",
                    extra={"stream": stream, "group": group, "seq": state.seq})
        sticky, items, at = await self._read(stream, group)
        if state.view is not None:
            self._rebuild(state, items, at, sticky)
            self._resend_snapshot(state, stream, group)

    def _resend_snapshot(self, state: GroupState, stream: str, group: str) -> None:
        """After a gap that could not be filled: every subscriber starts over from the current items."""
        self.fanout.drop_batches(state)
        items = self._view_items(state)
        sync = state.change(stream, group, None, "sync", items, state.seq)
        snapshot = self._snapshot_frames(state, stream, group, items)
        for subscriber in list(state.members):
            subscriber.push(sync)
            for change in snapshot:
                subscriber.push(change)
        for item_id, room in state.item_members.items():
            match = [entry for entry in items if entry["id"] == item_id]
            for subscriber in list(room):
                subscriber.push(state.change(stream, group, item_id, "sync", match[0] if match else None, state.seq))

    # -- subscriptions ---------------------------------------------------------------------

    async def subscribe(
        self, subscriber: Subscriber, stream: str, group: str, item_id: str | None = None, *,
        deltas: bool = False, after_seq: int | None = None, sse: bool = False, compressed: bool = True,
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
                for change in self.replay.after(state, after_seq, item_id):
                    subscriber.push(change)
            else:
                self._push_snapshot(subscriber, state, stream, group, item_id, sse)
            self.fanout.join(state, subscriber, item_id, deltas, sse, compressed)

    def _push_snapshot(self, subscriber: Subscriber, state: GroupState, stream: str, group: str,
                       item_id: str | None, sse: bool) -> None:
        items = self._view_items(state)
        if item_id is not None:
            items = [item for item in items if item["id"] == item_id]
        if sse:
            for change in self._snapshot_frames(state, stream, group, items, sticky=item_id is None):
                subscriber.push(change)
        else:
            payload: Any = items if item_id is None else (items[0] if items else None)
            subscriber.push(state.change(stream, group, item_id, "sync", payload, state.seq))
            if item_id is None:
                # Motia's clients know only items in a sync; the sticky events follow it as custom events.
                for kept in sorted(state.sticky.values(), key=lambda kept: kept.seq):
                    subscriber.push(state.change(stream, group, None, "group-event", kept.event, kept.seq))

    @staticmethod
    def _snapshot_frames(state: GroupState, stream: str, group: str, items: list[JSON],
                         sticky: bool = True) -> list[Change]:
        """A snapshot as single changes: each item, then the sticky events, for SSE (and after a WebSocket sync).

        Only the last one carries a seq, the one the whole snapshot is at: a client cut off half-way
        through it has not seen it all and must get it again on reconnect, and one that resumes from
        it must not be sent what the snapshot holds already (even when the last event is older).
        """
        kept = sorted(state.sticky.values(), key=lambda event: event.seq) if sticky else []
        at = max([state.seq, *(item["seq"] for item in items), *(event.seq for event in kept)])
        frames: list[tuple[str | None, Kind, JSON]] = [(item["id"], "update", item) for item in items]
        frames += [(None, "group-event", event.event) for event in kept]
        return [Change(stream, group, item_id, kind, payload, at if index == len(frames) else None, state.clock)
                for index, (item_id, kind, payload) in enumerate(frames, start=1)]

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
        state.sticky = {}
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
