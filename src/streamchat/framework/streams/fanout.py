"""Fan-out: which subscribers of a group get a change, and when.

WebSocket subscribers that asked for deltas get a streaming item's first piece at once and then at
most one delta frame per `delta_window`: pieces that arrive faster are joined into one frame
carrying the last seq. SSE subscribers get every seq as its own frame (their `id:` must resume
exactly).

Plain Motia subscribers get the whole item again, so what an update costs depends on compression.
With permessage-deflate and context takeover (serving's compressor keeps a window that holds the
previous message), an item sent again compresses to back-references to its previous copy, about a
byte per hundred of text, plus its new text. So over such a connection a plain subscriber gets the
item at most every CLIENT_FLUSH_SECONDS once the text has grown by PLAIN_COMPRESSED_GROWTH (the
references then cost no more than the new text), and in any case PLAIN_MAX_GAP_SECONDS after the
last, whatever the length. Past DEFLATE_REACH_BYTES the last copy is out of reach and an update
costs the item compressed: then one comes every PLAIN_MAX_GAP_SECONDS. Over a connection without
compression (or without its context) every update costs the whole item, so one comes only once the
text has grown by PLAIN_GROWTH since the last (at most one per CLIENT_FLUSH_SECONDS), or
PLAIN_QUIET_SECONDS after the text stopped growing: its bytes stay linear in the reply's length,
not its square. Either way a piece costs O(1): one timer per item and mode, never work in
proportion to the text.
"""

from __future__ import annotations

import asyncio

from streamchat.framework.streams.changes import TEXT_FIELD, Change, delta_payload
from streamchat.framework.streams.group import (
    PLAIN_MODES,
    Audience,
    DeltaBatch,
    GroupState,
    LiveItem,
    Mode,
    PlainMode,
    PlainPace,
    Subscriber,
)

CLIENT_FLUSH_SECONDS = 0.025
DELTA_WINDOW_SECONDS = 0.025
#: How far back the server's compressor refers: the largest window serving's deflate makes (32 KiB,
#: server_max_window_bits 15), less the 262 bytes zlib keeps for lookahead. A frame sent again
#: reaches its last copy only if that copy was no longer than this.
DEFLATE_REACH_BYTES = (1 << 15) - 262
PLAIN_MAX_GAP_SECONDS = 0.25
PLAIN_COMPRESSED_GROWTH = 0.01
PLAIN_GROWTH = 0.05
PLAIN_QUIET_SECONDS = 1.0


class FanOut:
    """Pushes a group's changes to its subscribers, each in the form its mode asks for."""

    def __init__(self, delta_window: float = DELTA_WINDOW_SECONDS) -> None:
        self.delta_window = delta_window

    def publish(self, state: GroupState, change: Change, audience: Audience = "all") -> None:
        if change.kind == "delta" and self.delta_window > 0:
            if state.every_delta_members:  # one pass over the subscribers per piece when nobody needs two
                self._push(state, change, "every-delta")
            self._join_delta(state, change)
            return
        if change.item_id is not None and audience not in PLAIN_MODES and change.item_id in state.batches:
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
                    or (audience == "delta" and mode not in PLAIN_MODES)):
                subscriber.push(change)
        change.pushed()

    # -- joined deltas ---------------------------------------------------------------------

    def _join_delta(self, state: GroupState, change: Change) -> None:
        """Send a delta to `joined-deltas` subscribers now, or fold it into the item's next frame."""
        item_id = change.item_id
        assert item_id is not None
        batch = state.batches.get(item_id)
        if batch is None:
            batch = state.batches[item_id] = DeltaBatch(change.stream, change.group,
                                                        change.payload.get("field", TEXT_FIELD))
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
            delta = delta_payload(item_id, batch.seq, "".join(batch.parts), batch.grows)
            batch.parts.clear()
            batch.sent_at = asyncio.get_running_loop().time()
            self._push(state, Change(batch.stream, batch.group, item_id, "delta", delta, batch.seq, state.tick()),
                       "joined-deltas")

    def flush_batches(self, state: GroupState) -> None:
        """Before a subscriber joins: what is held back goes to the others, the joiner's snapshot has it."""
        for item_id in list(state.batches):
            self._flush_batch(state, item_id)

    @staticmethod
    def drop_batches(state: GroupState) -> None:
        """Every subscriber is being sent the current items again: held-back pieces are in them."""
        for batch in state.batches.values():
            batch.cancel()
        state.batches.clear()

    # -- whole items for plain subscribers -------------------------------------------------

    def schedule_plain(self, state: GroupState, stream: str, group: str, item_id: str, live: LiveItem) -> None:
        """A piece came: decide when each kind of plain subscriber next gets the whole item (module docstring)."""
        now = asyncio.get_running_loop().time()
        live.grew_at = now
        if state.plain_members > state.uncompressed_plain_members:
            pace = live.pace("plain")
            soon = pace.sent_bytes <= DEFLATE_REACH_BYTES and self._grown(live, pace, PLAIN_COMPRESSED_GROWTH)
            due = max(now, pace.sent_at + (CLIENT_FLUSH_SECONDS if soon else PLAIN_MAX_GAP_SECONDS))
            if pace.timer is None or due < pace.due:
                self._send_plain_at(state, stream, group, item_id, "plain", due)
        if state.uncompressed_plain_members:
            pace = live.pace("plain-uncompressed")
            due = (max(now, pace.sent_at + CLIENT_FLUSH_SECONDS) if self._grown(live, pace, PLAIN_GROWTH)
                   else now + PLAIN_QUIET_SECONDS)
            if pace.timer is None or due < pace.due:
                self._send_plain_at(state, stream, group, item_id, "plain-uncompressed", due)

    @staticmethod
    def _grown(live: LiveItem, pace: PlainPace, growth: float) -> bool:
        return live.length - pace.sent_length >= max(1.0, pace.sent_length * growth)

    def _send_plain_at(self, state: GroupState, stream: str, group: str, item_id: str, mode: PlainMode,
                       due: float) -> None:
        live = state.live[item_id]
        pace = live.pace(mode)
        pace.cancel()
        loop = asyncio.get_running_loop()
        if due <= loop.time():
            self._flush_plain(state, stream, group, item_id, mode)
        else:
            pace.due = due
            pace.timer = loop.call_at(due, self._flush_plain, state, stream, group, item_id, mode)

    def _flush_plain(self, state: GroupState, stream: str, group: str, item_id: str, mode: PlainMode) -> None:
        """Send `mode` subscribers the whole item as it is now (without compression: once grown, or quiet)."""
        live = state.live.get(item_id)
        if live is None:
            return
        pace = live.pace(mode)
        pace.timer = None
        now = asyncio.get_running_loop().time()
        quiet_at = live.grew_at + PLAIN_QUIET_SECONDS
        if mode == "plain-uncompressed" and not self._grown(live, pace, PLAIN_GROWTH) and now < quiet_at:
            self._send_plain_at(state, stream, group, item_id, mode, quiet_at)
            return
        if live.length == pace.sent_length:
            return
        pace.sent_at, pace.sent_length = now, live.length
        change = Change(stream, group, item_id, "update", live.item(item_id), live.seq, state.tick())
        if mode == "plain":  # its sockets serialise it anyway; the size says when the next may come
            frame = change.motia_text()
            pace.sent_bytes = len(frame) if frame.isascii() else len(frame.encode())
        self.publish(state, change, mode)

    # -- rooms -----------------------------------------------------------------------------

    @staticmethod
    def join(state: GroupState, subscriber: Subscriber, item_id: str | None, deltas: bool, sse: bool,
             compressed: bool = True) -> None:
        room = state.members if item_id is None else state.item_members.setdefault(item_id, {})
        FanOut._count(state, room.get(subscriber), -1)
        mode: Mode = ("every-delta" if sse else "joined-deltas") if deltas else (
            "plain" if compressed else "plain-uncompressed")
        room[subscriber] = mode
        FanOut._count(state, mode, 1)

    @staticmethod
    def leave(state: GroupState, subscriber: Subscriber, item_id: str | None) -> None:
        room = state.members if item_id is None else state.item_members.get(item_id, {})
        FanOut._count(state, room.pop(subscriber, None), -1)
        if item_id is not None and not room:
            state.item_members.pop(item_id, None)

    @staticmethod
    def _count(state: GroupState, mode: Mode | None, change: int) -> None:
        if mode in PLAIN_MODES:
            state.plain_members += change
            if mode == "plain-uncompressed":
                state.uncompressed_plain_members += change
        elif mode == "every-delta":
            state.every_delta_members += change
