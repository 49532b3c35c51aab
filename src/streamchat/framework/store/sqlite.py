"""SQLite store: the embedded default (`sqlite:///path/to/state.db`), survives restarts."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import orjson

from streamchat.framework.errors import StorageFull, StoreUnavailable
from streamchat.framework.leases import Fenced, Lease
from streamchat.framework.store.base import JSON, LEASES, Store, StoredItem
from streamchat.framework.store.sqlite_batches import BatchedConnection

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS stream_items (
    stream   TEXT NOT NULL,
    group_id TEXT NOT NULL,
    id       TEXT NOT NULL,
    data     TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    position INTEGER NOT NULL,
    deleted_at REAL,
    PRIMARY KEY (stream, group_id, id)
);
CREATE INDEX IF NOT EXISTS stream_items_order ON stream_items (stream, group_id, position);
CREATE TABLE IF NOT EXISTS stream_groups (
    stream   TEXT NOT NULL,
    group_id TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (stream, group_id)
);
CREATE TABLE IF NOT EXISTS state (
    scope TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
"""


#: Files made before tombstones get the column; then the index that finds old tombstones.
TOMBSTONES = """
CREATE INDEX IF NOT EXISTS stream_items_tombstones ON stream_items (deleted_at) WHERE deleted_at IS NOT NULL;
"""

#: A newer write replaces the item or its tombstone; one written over a tombstone takes a new place.
UPSERT_NEWER = (
    "ON CONFLICT (stream, group_id, id) DO UPDATE SET data = excluded.data, seq = excluded.seq, "
    "position = CASE WHEN stream_items.deleted_at IS NULL THEN stream_items.position ELSE excluded.position END, "
    "deleted_at = NULL WHERE excluded.seq > stream_items.seq"
)
PUT_ITEM = (
    "INSERT INTO stream_items (stream, group_id, id, data, seq, position) VALUES (?, ?, ?, ?, ?, ?) " + UPSERT_NEWER
)
#: The same write, made only while the lease's token is held: one statement, so one transaction.
PUT_ITEM_LEASED = (
    "INSERT INTO stream_items (stream, group_id, id, data, seq, position) SELECT ?, ?, ?, ?, ?, ? "
    f"WHERE EXISTS (SELECT 1 FROM state WHERE scope = '{LEASES}' AND key = ? AND json_extract(value, '$.token') = ?) "
    + UPSERT_NEWER
)


@contextlib.contextmanager
def refused_writes() -> Iterator[None]:
    """A write SQLite refuses for lack of room or permission, said as what it is (507 / 503)."""
    try:
        yield
    except sqlite3.OperationalError as error:
        text = str(error)
        if "full" in text:
            raise StorageFull(f"the SQLite database's disk is full ({text})") from error
        if "readonly" in text or "read-only" in text:
            raise StoreUnavailable(f"the SQLite database is read-only ({text})") from error
        if "disk I/O error" in text:
            raise StoreUnavailable(f"the SQLite database cannot be written ({text})") from error
        raise


class SQLiteStore(Store):
    """One SQLite file in WAL mode, one connection on a thread of its own (sqlite_batches.py): what
    the application asks of it meanwhile goes in one trip and one transaction, each call atomic.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._connection: BatchedConnection | None = None

    @property
    def connection(self) -> BatchedConnection:
        if self._connection is None:
            raise RuntimeError("SQLiteStore used before connect()")
        return self._connection

    async def connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        connection = BatchedConnection(self.path)
        await connection.open()
        await connection.script("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
        await connection.script(SCHEMA)
        columns = await connection.call_outside(
            lambda db: {row[1] for row in db.execute("PRAGMA table_info(stream_items)")})
        if "deleted_at" not in columns:
            await connection.call_outside(lambda db: db.execute("ALTER TABLE stream_items ADD COLUMN deleted_at REAL"))
        await connection.script(TOMBSTONES)
        self._connection = connection

    async def disconnect(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()

    async def _read(self, sql: str, params: Iterable[Any]) -> list[Any]:
        values = tuple(params)
        return await self.connection.call(lambda db: db.execute(sql, values).fetchall())

    async def _write(self, sql: str, params: Iterable[Any]) -> list[Any]:
        """Run one statement, atomically (rows from RETURNING are fetched)."""
        values = tuple(params)
        return await self.run(lambda db: db.execute(sql, values).fetchall())

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the store's connection, atomically, in the next batch (also for tables of the
        application's own, such as a search index); a write SQLite refuses is said as what it is."""
        self.writes += 1
        with refused_writes():
            return await self.connection.call(work)

    seq_block = 1000

    async def reserve_seq(self, stream: str, group: str, count: int) -> int:
        rows = await self._write(
            "INSERT INTO stream_groups (stream, group_id, seq) VALUES (?, ?, ?) "
            "ON CONFLICT (stream, group_id) DO UPDATE SET seq = seq + excluded.seq RETURNING seq",
            (stream, group, count),
        )
        return int(rows[0][0])

    async def max_seq(self, stream: str, group: str) -> int:
        rows = await self._read(
            "SELECT max(coalesce((SELECT max(seq) FROM stream_items WHERE stream = ? AND group_id = ?), 0), "
            "coalesce((SELECT seq FROM stream_groups WHERE stream = ? AND group_id = ?), 0))",
            (stream, group, stream, group))
        return int(rows[0][0])

    async def put_item(self, stream: str, group: str, item: StoredItem, lease: Lease | None = None) -> bool:
        # `position` is the seq an item was (re)created with and never changes while it lives, so
        # right after the upsert `position = seq` holds exactly when the row is new.
        row = (stream, group, item.id, orjson.dumps(item.data).decode(), item.seq, item.seq)
        if lease is None:
            rows = await self._write(PUT_ITEM + " RETURNING position = seq", row)
        else:
            rows = await self._write(PUT_ITEM_LEASED + " RETURNING position = seq", (*row, lease.key, lease.token))
            if not rows and not await self._holds(lease):
                raise Fenced(lease, f"{stream}/{group}/{item.id}")
        return bool(rows and rows[0][0])

    async def _holds(self, lease: Lease) -> bool:
        rows = await self._read(f"SELECT 1 FROM state WHERE scope = '{LEASES}' AND key = ? "
                                "AND json_extract(value, '$.token') = ?", (lease.key, lease.token))
        return bool(rows)

    async def put_items(self, stream: str, items: list[tuple[str, StoredItem]],
                        leases: Mapping[tuple[str, str], Lease] | None = None) -> set[tuple[str, str]]:
        def work(db: sqlite3.Connection) -> set[tuple[str, str]]:
            refused: set[tuple[str, str]] = set()
            if leases:
                held: dict[str, str] = {row[0]: row[1] for row in db.execute(
                    f"SELECT key, json_extract(value, '$.token') FROM state WHERE scope = '{LEASES}'")}
                refused = {target for target, lease in leases.items() if held.get(lease.key) != lease.token}
            db.executemany(PUT_ITEM, [
                (stream, group, item.id, orjson.dumps(item.data).decode(), item.seq, item.seq)
                for group, item in items if (group, item.id) not in refused])
            return refused

        return await self.run(work)

    async def lease_drop(self, lease: Lease) -> None:
        await self._write(f"DELETE FROM state WHERE scope = '{LEASES}' AND key = ? "
                          "AND json_extract(value, '$.token') = ?", (lease.key, lease.token))

    async def get_item(self, stream: str, group: str, item_id: str) -> StoredItem | None:
        rows = await self._read(
            "SELECT id, data, seq FROM stream_items WHERE stream = ? AND group_id = ? AND id = ? "
            "AND deleted_at IS NULL", (stream, group, item_id),
        )
        return StoredItem(rows[0][0], orjson.loads(rows[0][1]), int(rows[0][2])) if rows else None

    async def delete_item(self, stream: str, group: str, item_id: str, seq: int) -> bool:
        try:
            return await self._tombstone(stream, group, item_id, seq)
        except StorageFull:
            # No room for a tombstone: the row goes without one (deleting frees room).
            rows = await self._write("DELETE FROM stream_items WHERE stream = ? AND group_id = ? AND id = ? "
                                     "AND seq < ? RETURNING deleted_at IS NULL", (stream, group, item_id, seq))
            return bool(rows and rows[0][0])

    async def _tombstone(self, stream: str, group: str, item_id: str, seq: int) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            live = db.execute(
                "SELECT 1 FROM stream_items WHERE stream = ? AND group_id = ? AND id = ? "
                "AND deleted_at IS NULL AND seq < ?", (stream, group, item_id, seq)).fetchall()
            db.execute(
                "INSERT INTO stream_items (stream, group_id, id, data, seq, position, deleted_at) "
                "VALUES (?, ?, ?, '{}', ?, ?, ?) ON CONFLICT (stream, group_id, id) DO UPDATE SET "
                "data = '{}', seq = excluded.seq, deleted_at = excluded.deleted_at "
                "WHERE excluded.seq > stream_items.seq", (stream, group, item_id, seq, seq, time.time()))
            return bool(live)

        return await self.run(work)

    async def prune_tombstones(self, older_than: float) -> int:
        rows = await self._write("DELETE FROM stream_items WHERE deleted_at < ? RETURNING 1", (older_than,))
        return len(rows)

    async def list_items(self, stream: str, group: str) -> list[StoredItem]:
        rows = await self._read(
            "SELECT id, data, seq FROM stream_items WHERE stream = ? AND group_id = ? AND deleted_at IS NULL "
            "ORDER BY position", (stream, group),
        )
        return [StoredItem(row[0], orjson.loads(row[1]), int(row[2])) for row in rows]

    async def list_groups(self, stream: str, limit: int = 1000) -> list[str]:
        rows = await self._read(
            "SELECT group_id FROM stream_items WHERE stream = ? AND deleted_at IS NULL GROUP BY group_id "
            "ORDER BY MAX(rowid) DESC LIMIT ?", (stream, limit),
        )
        return [row[0] for row in rows]

    async def state_get(self, scope: str, key: str) -> JSON | None:
        rows = await self._read("SELECT value FROM state WHERE scope = ? AND key = ?", (scope, key))
        return dict(orjson.loads(rows[0][0])) if rows else None

    async def state_set(self, scope: str, key: str, value: JSON) -> None:
        await self._write(
            "INSERT INTO state (scope, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value",
            (scope, key, orjson.dumps(value).decode()),
        )

    async def state_delete(self, scope: str, key: str) -> None:
        await self._write("DELETE FROM state WHERE scope = ? AND key = ?", (scope, key))

    async def state_list(self, scope: str) -> dict[str, JSON]:
        rows = await self._read("SELECT key, value FROM state WHERE scope = ?", (scope,))
        return {row[0]: dict(orjson.loads(row[1])) for row in rows}

    # Each is one statement, and SQLite runs a statement's read and write as one transaction (also
    # against other processes on the same file).
    async def state_claim(self, scope: str, key: str, value: JSON) -> JSON:
        rows = await self._write(
            "INSERT INTO state (scope, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (scope, key) DO UPDATE SET value = state.value RETURNING value",
            (scope, key, orjson.dumps(value).decode()),
        )
        return dict(orjson.loads(rows[0][0]))

    async def state_reserve(self, scope: str, key: str, value: JSON, limit: int, fresh_since: float) -> bool:
        rows = await self._write(
            "INSERT INTO state (scope, key, value) SELECT ?, ?, ? WHERE (SELECT count(*) FROM state "
            "WHERE scope = ? AND key <> ? AND json_extract(value, '$.at') >= ?) < ? "
            "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value RETURNING 1",
            (scope, key, orjson.dumps(value).decode(), scope, key, fresh_since, limit),
        )
        return bool(rows)
