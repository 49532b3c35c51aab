"""The storage interface every state backend implements.

Two kinds of data live here: stream items (grouped, ordered, each change numbered by a
per-group sequence) and plain key/value state. Backends are chosen by URL, so business
code never knows which one runs.

Every item write carries the seq of its change, and the newest seq wins, a delete included: a
deleted item leaves a tombstone (its id and the delete's seq, none of its data), so a write that
was on its way before the delete (a batched write of streaming text, a retried one) lands on the
tombstone and is refused instead of bringing the item back.

Streaming text is persisted by appending (`append_texts`): only the text added since the version the
store holds, so a reply costs the store about its own length, not its length times its duration.
The same rules hold for an append as for a put: an append older than what is stored, or to a
deleted item, is refused; one that does not extend exactly what is stored is refused so that its
writer puts the whole item instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from streamchat.framework.leases import Fenced, Lease

JSON = dict[str, Any]
#: The state scope that holds leases taken in the store: key -> {"token": ...}.
LEASES = "_leases"
#: How long a tombstone is kept: far longer than any write can be on its way to the store.
TOMBSTONE_SECONDS = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class StoredItem:
    """A stream item as stored: its data plus the sequence number of its last change."""

    id: str
    data: JSON
    seq: int


@dataclass(frozen=True, slots=True)
class TextAppend:
    """Text added to the end of a stored item's string field, from the stored version `after_seq`
    (its last whole write or last append), where the field held `offset` characters, up to the change `seq`."""

    id: str
    field: str
    text: str
    offset: int
    after_seq: int
    seq: int


#: Why an append was not written: the writer's lease is not held, or the store does not hold the
#: version it extends (the writer puts the whole item instead).
AppendRefusal = Literal["fenced", "unmatched"]


class Store(ABC):
    """Persistence for stream items and key/value state."""

    #: How many sequence numbers the hub may reserve at once. A store written by one process
    #: (SQLite, memory) hands out blocks, so a token costs no write; shared stores use 1.
    seq_block: int = 1

    #: Writes made so far (items, state, seq reservations): the benchmark reports writes per reply.
    writes: int = 0
    #: Item data handed to the store so far, in bytes (a whole item's JSON, or the text appended to
    #: one): what shows whether persisting a reply costs its length or its length times its duration.
    bytes_written: int = 0

    async def connect(self) -> None:
        """Open connections and create the schema if needed."""

    async def disconnect(self) -> None:
        """Close connections."""

    async def ping(self) -> None:
        """Raise unless the store answers now (readiness checks)."""

    @abstractmethod
    async def max_seq(self, stream: str, group: str) -> int:
        """The highest seq the store has seen for a group (items, tombstones, reservations); 0 if none."""

    @abstractmethod
    async def reserve_seq(self, stream: str, group: str, count: int) -> int:
        """Reserve the group's next `count` sequence numbers; returns the highest one reserved.

        Reservations only ever rise, also across restarts, so a seq is never handed out twice.
        """

    @abstractmethod
    async def put_item(self, stream: str, group: str, item: StoredItem, lease: Lease | None = None) -> bool:
        """Insert an item, or replace it if `item.seq` is newer than the stored one (or its tombstone);
        True if it was new.

        A new item, or one written anew over its tombstone, is ordered after every existing one. The
        seq guard makes writes safe to race: an older snapshot landing late never overwrites a newer
        one, nor revives a deleted one. With a `lease`, the write happens only while the store holds
        that lease's token, checked atomically with it; otherwise it raises `Fenced` and writes nothing.
        """

    async def put_items(self, stream: str, items: list[tuple[str, StoredItem]],
                        leases: Mapping[tuple[str, str], Lease] | None = None) -> set[tuple[str, str]]:
        """Write many (group, item) pairs, e.g. a periodic flush; one transaction where the store can.

        `leases` maps (group, item id) to the lease that item's write needs; the pairs refused
        because their lease is no longer held are returned, the others are written.
        """
        refused: set[tuple[str, str]] = set()
        for group, item in items:
            try:
                await self.put_item(stream, group, item, (leases or {}).get((group, item.id)))
            except Fenced:
                refused.add((group, item.id))
        return refused

    async def append_texts(self, stream: str, appends: list[tuple[str, TextAppend]],
                           leases: Mapping[tuple[str, str], Lease] | None = None,
                           ) -> dict[tuple[str, str], AppendRefusal]:
        """Append to many (group, item) pairs' fields; one transaction where the store can.

        An append is written when the store holds the item exactly at `after_seq` with `offset`
        characters in the field, and the item is then at `seq`. One the store has a newer change of
        (a put, a delete, a later append), or whose item is deleted, is dropped as a late put is.
        Returned: the pairs refused for their lease (`leases` as for `put_items`), and those the
        store does not hold the version of ("unmatched": the writer puts the whole item instead).
        A store without appends of its own answers "unmatched" for all, so writers put whole items.
        """
        return dict.fromkeys(((group, append.id) for group, append in appends), "unmatched")

    async def lease_take(self, lease: Lease) -> None:
        """Hold `lease.key` with `lease.token` from now on: writes under any earlier token are refused."""
        await self.state_set(LEASES, lease.key, {"token": lease.token})

    async def lease_held(self, lease: Lease) -> bool:
        """Whether `lease.key` is held with `lease.token` now (for a write that stores nothing to check it with)."""
        held = await self.state_get(LEASES, lease.key)
        return held is not None and held.get("token") == lease.token

    @abstractmethod
    async def lease_drop(self, lease: Lease) -> None:
        """Forget the lease if it still holds this token (a later holder's stays)."""

    @abstractmethod
    async def get_item(self, stream: str, group: str, item_id: str) -> StoredItem | None:
        """Return one item, or None."""

    @abstractmethod
    async def delete_item(self, stream: str, group: str, item_id: str, seq: int) -> bool:
        """Delete an item by the change numbered `seq`, leaving its tombstone; True if a live item
        went. A delete older than the stored item's seq (it was written anew since) does nothing.
        With no room for a tombstone (a full disk) the item goes without one: a delete never needs room."""

    @abstractmethod
    async def prune_tombstones(self, older_than: float) -> int:
        """Forget tombstones of deletes made before `older_than` (epoch seconds); how many went."""

    @abstractmethod
    async def list_items(self, stream: str, group: str) -> list[StoredItem]:
        """Every item of a group, in insertion order."""

    @abstractmethod
    async def list_groups(self, stream: str, limit: int = 1000) -> list[str]:
        """Ids of the stream's groups that hold items (for browsing), most recently started first."""

    @abstractmethod
    async def state_get(self, scope: str, key: str) -> JSON | None:
        """Read one state value."""

    @abstractmethod
    async def state_set(self, scope: str, key: str, value: JSON) -> None:
        """Write one state value."""

    @abstractmethod
    async def state_delete(self, scope: str, key: str) -> None:
        """Remove one state value."""

    @abstractmethod
    async def state_list(self, scope: str) -> dict[str, JSON]:
        """Every value of a scope, keyed by key."""

    @abstractmethod
    async def state_claim(self, scope: str, key: str, value: JSON) -> JSON:
        """Write `value` unless the key holds one already; return what the key holds afterwards.

        Atomic: of two callers at the same instant, exactly one's value is kept and both see it.
        """

    @abstractmethod
    async def state_reserve(self, scope: str, key: str, value: JSON, limit: int, fresh_since: float) -> bool:
        """Write `value` under `key` only while the scope holds fewer than `limit` other entries whose
        `"at"` is at least `fresh_since` (older ones are stale and do not count); True if written.

        Atomic: callers at the same instant never take the scope past `limit` together.
        """
