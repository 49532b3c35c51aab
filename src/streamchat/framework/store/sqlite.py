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
from streamchat.framework.store.appends import chunk_rows, joined, stored_end
from streamchat.framework.store.base import JSON, LEASES, AppendRefusal, Store, StoredItem, TextAppend
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
CREATE TABLE IF NOT EXISTS stream_chunks (
    stream   TEXT NOT NULL,
    group_id TEXT NOT NULL,
    id       TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    start    INTEGER NOT NULL,
    field    TEXT NOT NULL,
    text     TEXT NOT NULL,
    PRIMARY KEY (stream, group_id, id, seq)
);
CREATE TRIGGER IF NOT EXISTS stream_items_behind_chunks BEFORE UPDATE OF seq ON stream_items
WHEN NEW.seq <= (SELECT max(seq) FROM stream_chunks c
                 WHERE c.stream = OLD.stream AND c.group_id = OLD.group_id AND c.id = OLD.id)
BEGIN SELECT RAISE(IGNORE); END;
CREATE TRIGGER IF NOT EXISTS stream_chunks_superseded AFTER UPDATE OF seq ON stream_items
BEGIN DELETE FROM stream_chunks WHERE stream = NEW.stream AND group_id = NEW.group_id AND id = NEW.id; END;
CREATE TRIGGER IF NOT EXISTS stream_chunks_gone AFTER DELETE ON stream_items
BEGIN DELETE FROM stream_chunks WHERE stream = OLD.stream AND group_id = OLD.group_id AND id = OLD.id; END;
"""
# Appended text lives in stream_chunks, one row per append, joined onto its item when read, so an
# append writes only its own text. The triggers keep the seq guard whole: a put or delete whose seq
# is not newer than the item's last append is ignored, and one that is newer drops the appends.


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


#: The newest appended seq of the item in `stream_items` (NULL when nothing is appended).
NEWEST_CHUNK = ("(SELECT max(c.seq) FROM stream_chunks c WHERE c.stream = stream_items.stream "
                "AND c.group_id = stream_items.group_id AND c.id = stream_items.id)")
#: Where each wanted item ends (see `StoredEnd`); `?` 1 is a JSON list of [group, id, field's JSON path].
#: CROSS JOIN keeps the wanted list the outer loop, so each item is found by its key: left to itself,
#: SQLite's planner scanned every item of the stream for every flush.
STORED_ENDS = (
    "SELECT w.g, w.i, s.seq, s.deleted_at IS NOT NULL, c.seq, c.field, c.start + length(c.text), "
    "CASE WHEN c.seq IS NULL THEN coalesce(length(json_extract(s.data, w.path)), 0) END "
    "FROM (SELECT json_extract(value, '$[0]') AS g, json_extract(value, '$[1]') AS i, "
    "json_extract(value, '$[2]') AS path FROM json_each(?)) AS w "
    "CROSS JOIN stream_items s ON s.stream = ? AND s.group_id = w.g AND s.id = w.i "
    "LEFT JOIN stream_chunks c ON c.stream = s.stream AND c.group_id = s.group_id AND c.id = s.id "
    "AND c.seq = (SELECT max(x.seq) FROM stream_chunks x WHERE x.stream = s.stream AND x.group_id = s.group_id "
    "AND x.id = s.id)"
)
INSERT_CHUNK = "INSERT INTO stream_chunks (stream, group_id, id, seq, start, field, text) VALUES (?, ?, ?, ?, ?, ?, ?)"


def json_path(field: str) -> str:
    """The JSON path of a top-level key, quoted (a key SQLite cannot find so reads as absent, and
    the append is unmatched: its writer puts the whole item)."""
    return f'$."{field}"'


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

    async def _read_joined(self, items_sql: str, chunks_sql: str, params: tuple[Any, ...]) -> list[StoredItem]:
        """Item rows and their appended chunks, read together."""
        def work(db: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
            rows = db.execute(items_sql, params).fetchall()
            return rows, db.execute(chunks_sql, params).fetchall() if rows else []

        rows, chunks = await self.connection.call(work)
        return joined(((item_id, orjson.loads(data), seq) for item_id, data, seq in rows), chunks)

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
            "coalesce((SELECT seq FROM stream_groups WHERE stream = ? AND group_id = ?), 0), "
            "coalesce((SELECT max(seq) FROM stream_chunks WHERE stream = ? AND group_id = ?), 0))",
            (stream, group, stream, group, stream, group))
        return int(rows[0][0])

    async def put_item(self, stream: str, group: str, item: StoredItem, lease: Lease | None = None) -> bool:
        # `position` is the seq an item was (re)created with and never changes while it lives, so
        # right after the upsert `position = seq` holds exactly when the row is new.
        row = (stream, group, item.id, self._encode_item(item), item.seq, item.seq)
        if lease is None:
            rows = await self._write(PUT_ITEM + " RETURNING position = seq", row)
        else:
            rows = await self._write(PUT_ITEM_LEASED + " RETURNING position = seq", (*row, lease.key, lease.token))
            if not rows and not await self._holds(lease):
                raise Fenced(lease, f"{stream}/{group}/{item.id}")
        return bool(rows and rows[0][0])

    def _encode_item(self, item: StoredItem) -> str:
        """An item's data as stored, counted in `bytes_written`."""
        encoded = orjson.dumps(item.data)
        self.bytes_written += len(encoded)
        return encoded.decode()

    async def _holds(self, lease: Lease) -> bool:
        rows = await self._read(f"SELECT 1 FROM state WHERE scope = '{LEASES}' AND key = ? "
                                "AND json_extract(value, '$.token') = ?", (lease.key, lease.token))
        return bool(rows)

    async def put_items(self, stream: str, items: list[tuple[str, StoredItem]],
                        leases: Mapping[tuple[str, str], Lease] | None = None) -> set[tuple[str, str]]:
        rows = [(group, item, self._encode_item(item)) for group, item in items]

        def work(db: sqlite3.Connection) -> set[tuple[str, str]]:
            refused: set[tuple[str, str]] = set()
            if leases:
                held: dict[str, str] = {row[0]: row[1] for row in db.execute(
                    f"SELECT key, json_extract(value, '$.token') FROM state WHERE scope = '{LEASES}'")}
                refused = {target for target, lease in leases.items() if held.get(lease.key) != lease.token}
            db.executemany(PUT_ITEM, [(stream, group, item.id, data, item.seq, item.seq)
                                      for group, item, data in rows if (group, item.id) not in refused])
            return refused

        return await self.run(work)

    async def append_texts(self, stream: str, appends: list[tuple[str, TextAppend]],
                           leases: Mapping[tuple[str, str], Lease] | None = None,
                           ) -> dict[tuple[str, str], AppendRefusal]:
        self.bytes_written += sum(len(append.text.encode()) for _, append in appends)

        def work(db: sqlite3.Connection) -> dict[tuple[str, str], AppendRefusal]:
            refused: dict[tuple[str, str], AppendRefusal] = {}
            if leases:
                held: dict[str, str] = {row[0]: row[1] for row in db.execute(
                    f"SELECT key, json_extract(value, '$.token') FROM state WHERE scope = '{LEASES}'")}
                refused = {target: "fenced" for target, lease in leases.items() if held.get(lease.key) != lease.token}
            wanted = [(group, append) for group, append in appends if (group, append.id) not in refused]
            keys = orjson.dumps([[group, append.id, json_path(append.field)] for group, append in wanted]).decode()
            ends = {(row[0], row[1]): stored_end(row[2:]) for row in (db.execute(
                STORED_ENDS, (keys, stream)).fetchall() if wanted else [])}
            chunks = chunk_rows(stream, wanted, ends, refused)
            db.executemany(INSERT_CHUNK, chunks)
            return refused

        return await self.run(work)

    async def lease_drop(self, lease: Lease) -> None:
        await self._write(f"DELETE FROM state WHERE scope = '{LEASES}' AND key = ? "
                          "AND json_extract(value, '$.token') = ?", (lease.key, lease.token))

    async def get_item(self, stream: str, group: str, item_id: str) -> StoredItem | None:
        items = await self._read_joined(
            "SELECT id, data, seq FROM stream_items WHERE stream = ? AND group_id = ? AND id = ? "
            "AND deleted_at IS NULL",
            "SELECT id, field, text, seq FROM stream_chunks WHERE stream = ? AND group_id = ? AND id = ? ORDER BY seq",
            (stream, group, item_id))
        return items[0] if items else None

    async def delete_item(self, stream: str, group: str, item_id: str, seq: int) -> bool:
        try:
            return await self._tombstone(stream, group, item_id, seq)
        except StorageFull:
            # No room for a tombstone: the row goes without one (deleting frees room).
            rows = await self._write("DELETE FROM stream_items WHERE stream = ? AND group_id = ? AND id = ? "
                                     f"AND max(seq, coalesce({NEWEST_CHUNK}, 0)) < ? RETURNING deleted_at IS NULL",
                                     (stream, group, item_id, seq))
            return bool(rows and rows[0][0])

    async def _tombstone(self, stream: str, group: str, item_id: str, seq: int) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            live = db.execute(
                "SELECT 1 FROM stream_items WHERE stream = ? AND group_id = ? AND id = ? "
                f"AND deleted_at IS NULL AND max(seq, coalesce({NEWEST_CHUNK}, 0)) < ?",
                (stream, group, item_id, seq)).fetchall()
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
        return await self._read_joined(
            "SELECT id, data, seq FROM stream_items WHERE stream = ? AND group_id = ? AND deleted_at IS NULL "
            "ORDER BY position",
            "SELECT id, field, text, seq FROM stream_chunks WHERE stream = ? AND group_id = ? ORDER BY id, seq",
            (stream, group))

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
