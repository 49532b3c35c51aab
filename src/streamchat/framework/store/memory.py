"""In-memory store for tests and throw-away runs (`memory://`)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping

import orjson

from streamchat.framework.leases import Fenced, Lease
from streamchat.framework.store.appends import StoredEnd, judge_append, with_appended
from streamchat.framework.store.base import JSON, LEASES, AppendRefusal, Store, StoredItem, TextAppend


class MemoryStore(Store):
    """Keeps everything in dicts; nothing survives the process."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], dict[str, StoredItem]] = defaultdict(dict)
        #: Deleted items: (stream, group) -> item id -> (the delete's seq, when it was made).
        self._tombstones: dict[tuple[str, str], dict[str, tuple[int, float]]] = defaultdict(dict)
        self._seqs: dict[tuple[str, str], int] = defaultdict(int)
        self._state: dict[str, dict[str, JSON]] = defaultdict(dict)

    seq_block = 1000

    async def reserve_seq(self, stream: str, group: str, count: int) -> int:
        self.writes += 1
        self._seqs[stream, group] += count
        return self._seqs[stream, group]

    def _holds(self, lease: Lease) -> bool:
        return self._state[LEASES].get(lease.key, {}).get("token") == lease.token

    async def lease_drop(self, lease: Lease) -> None:
        if self._holds(lease):
            del self._state[LEASES][lease.key]

    async def max_seq(self, stream: str, group: str) -> int:
        seqs = [item.seq for item in self._items[stream, group].values()]
        seqs += [seq for seq, _ in self._tombstones[stream, group].values()]
        return max([self._seqs[stream, group], *seqs])

    # No await between the lease check and the write: atomic on the event loop.
    async def put_item(self, stream: str, group: str, item: StoredItem, lease: Lease | None = None) -> bool:
        if lease is not None and not self._holds(lease):
            raise Fenced(lease, f"{stream}/{group}/{item.id}")
        self.writes += 1
        self.bytes_written += len(orjson.dumps(item.data))
        tombstones = self._tombstones[stream, group]
        if item.id in tombstones:
            if item.seq <= tombstones[item.id][0]:
                return False
            del tombstones[item.id]
        current = self._items[stream, group].get(item.id)
        if current is None or item.seq > current.seq:
            self._items[stream, group][item.id] = item
        return current is None

    # No await in the loop: atomic on the event loop.
    async def append_texts(self, stream: str, appends: list[tuple[str, TextAppend]],
                           leases: Mapping[tuple[str, str], Lease] | None = None,
                           ) -> dict[tuple[str, str], AppendRefusal]:
        refused: dict[tuple[str, str], AppendRefusal] = {}
        for group, append in appends:
            lease = (leases or {}).get((group, append.id))
            if lease is not None and not self._holds(lease):
                refused[group, append.id] = "fenced"
                continue
            self.writes += 1
            self.bytes_written += len(append.text.encode())
            current = self._items[stream, group].get(append.id)
            stored = None if current is None else StoredEnd(
                current.seq, False, None, len(str(current.data.get(append.field, ""))))
            if append.id in self._tombstones[stream, group]:
                stored = StoredEnd(self._tombstones[stream, group][append.id][0], True, None, 0)
            verdict = judge_append(append, stored)
            if verdict == "unmatched":
                refused[group, append.id] = "unmatched"
            if verdict != "write" or current is None:
                continue
            self._items[stream, group][append.id] = with_appended(current, append.field, [append.text], append.seq)
        return refused

    async def get_item(self, stream: str, group: str, item_id: str) -> StoredItem | None:
        return self._items[stream, group].get(item_id)

    async def delete_item(self, stream: str, group: str, item_id: str, seq: int) -> bool:
        current = self._items[stream, group].get(item_id)
        tombstone = self._tombstones[stream, group].get(item_id)
        if (current is not None and current.seq >= seq) or (tombstone is not None and tombstone[0] >= seq):
            return False
        self.writes += 1
        self._tombstones[stream, group][item_id] = (seq, time.time())
        return self._items[stream, group].pop(item_id, None) is not None

    async def prune_tombstones(self, older_than: float) -> int:
        pruned = 0
        for key, tombstones in list(self._tombstones.items()):
            for item_id, (_, at) in list(tombstones.items()):
                if at < older_than:
                    del tombstones[item_id]
                    pruned += 1
            if not tombstones:
                del self._tombstones[key]
        return pruned

    async def list_items(self, stream: str, group: str) -> list[StoredItem]:
        return list(self._items[stream, group].values())

    async def list_groups(self, stream: str, limit: int = 1000) -> list[str]:
        # Groups are keyed in the order they were started.
        started = [group for (name, group), items in self._items.items() if name == stream and items]
        return started[::-1][:limit]

    async def state_get(self, scope: str, key: str) -> JSON | None:
        return self._state[scope].get(key)

    async def state_set(self, scope: str, key: str, value: JSON) -> None:
        self.writes += 1
        self._state[scope][key] = value

    async def state_delete(self, scope: str, key: str) -> None:
        self._state[scope].pop(key, None)

    async def state_list(self, scope: str) -> dict[str, JSON]:
        return dict(self._state[scope])

    # No await between the check and the write: atomic on the event loop.
    async def state_claim(self, scope: str, key: str, value: JSON) -> JSON:
        if key not in self._state[scope]:
            self.writes += 1
        return self._state[scope].setdefault(key, value)

    async def state_reserve(self, scope: str, key: str, value: JSON, limit: int, fresh_since: float) -> bool:
        entries = self._state[scope]
        if sum(1 for other, entry in entries.items() if other != key and entry.get("at", 0) >= fresh_since) >= limit:
            return False
        self.writes += 1
        entries[key] = value
        return True
