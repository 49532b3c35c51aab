"""PostgreSQL store (`postgresql://user@host:port/db`): shared by every instance of a deployment.

The schema is created (and later migrated) at connect, under an advisory lock so instances
starting together do not race. Every call goes through an asyncpg pool with a timeout; a call
that fails because PostgreSQL is restarting or unreachable is retried with backoff for up to
`retry_seconds`, then fails with `StoreUnavailable` (a 503 for HTTP callers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from streamchat.framework.errors import StorageFull, StoreUnavailable
from streamchat.framework.leases import Fenced, Lease
from streamchat.framework.retrying import retry_transient
from streamchat.framework.store.appends import chunk_rows, joined, stored_end
from streamchat.framework.store.base import JSON, LEASES, AppendRefusal, Store, StoredItem, TextAppend
from streamchat.framework.store.postgres_schema import MIGRATIONS

logger = logging.getLogger("streamchat.store")
T = TypeVar("T")

#: Items with their appended text (texts in seq order, the newest append's seq and its field).
ITEMS_JOINED = (
    "SELECT s.id, s.data, s.seq, c.field, c.texts, c.seq FROM stream_items s LEFT JOIN LATERAL "
    "(SELECT min(x.field) AS field, array_agg(x.text ORDER BY x.seq) AS texts, max(x.seq) AS seq "
    "FROM stream_chunks x WHERE x.stream = s.stream AND x.group_id = s.group_id AND x.id = s.id) c ON true "
)
#: Where each wanted item ends (see `StoredEnd`), its row locked so no put or delete passes the append.
STORED_ENDS = (
    "SELECT w.g, w.i, s.seq, s.deleted_at IS NOT NULL, c.seq, c.field, c.start + length(c.text), "
    "CASE WHEN c.seq IS NULL THEN coalesce(length(s.data->>w.f), 0) END "
    "FROM unnest($2::text[], $3::text[], $4::text[]) AS w(g, i, f) "
    "JOIN stream_items s ON s.stream = $1 AND s.group_id = w.g AND s.id = w.i "
    "LEFT JOIN LATERAL (SELECT x.seq, x.field, x.start, x.text FROM stream_chunks x WHERE x.stream = s.stream "
    "AND x.group_id = s.group_id AND x.id = s.id ORDER BY x.seq DESC LIMIT 1) c ON true "
    "ORDER BY w.g, w.i FOR UPDATE OF s"
)
INSERT_CHUNK = ("INSERT INTO stream_chunks (stream, group_id, id, seq, start, field, text) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)")

#: A newer write replaces the item or its tombstone; one written over a tombstone takes a new place.
PUT_ITEM = (
    "INSERT INTO stream_items (stream, group_id, id, data, seq, position) VALUES ($1, $2, $3, $4::text::jsonb, $5, $5) "
    "ON CONFLICT (stream, group_id, id) DO UPDATE SET data = excluded.data, seq = excluded.seq, "
    "position = CASE WHEN stream_items.deleted_at IS NULL THEN stream_items.position ELSE excluded.position END, "
    "deleted_at = NULL WHERE excluded.seq > stream_items.seq"
)
#: The delete as a write of its own seq: it wins over older writes only, in either order of arrival.
DELETE_ITEM = (
    "WITH prior AS (SELECT seq FROM stream_items WHERE stream = $1 AND group_id = $2 AND id = $3 "
    "AND deleted_at IS NULL) "
    "INSERT INTO stream_items (stream, group_id, id, data, seq, position, deleted_at) "
    "VALUES ($1, $2, $3, '{}'::jsonb, $4, $4, extract(epoch FROM clock_timestamp())) "
    "ON CONFLICT (stream, group_id, id) DO UPDATE SET data = '{}'::jsonb, seq = excluded.seq, "
    "deleted_at = excluded.deleted_at WHERE excluded.seq > stream_items.seq "
    "RETURNING (SELECT seq FROM prior) IS NOT NULL"
)
#: With no room left for a tombstone (a full disk), the row goes without one: deleting frees room,
#: and a request taking back what it stored before its 507 has no other writer to guard against.
WITHOUT_TOMBSTONE = (
    "DELETE FROM stream_items s WHERE stream = $1 AND group_id = $2 AND id = $3 AND seq < $4 "
    "AND NOT EXISTS (SELECT 1 FROM stream_chunks c WHERE c.stream = $1 AND c.group_id = $2 AND c.id = $3 "
    "AND c.seq >= $4) RETURNING deleted_at IS NULL"
)

#: Errors that mean "the server is not there right now", worth a retry.
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError, asyncpg.AdminShutdownError, asyncpg.TooManyConnectionsError,
)


def _encode(value: Any) -> str:
    return orjson.dumps(value).decode()


async def lease_tokens(connection: PoolConnectionProxy[Any], keys: list[str]) -> dict[str, str]:
    """The tokens held for these lease keys, read FOR SHARE inside the writing transaction: a lease
    taken meanwhile waits for the write to commit, and a write that waited for a taking sees the new token."""
    rows = await connection.fetch(
        f"SELECT key, value->>'token' FROM state WHERE scope = '{LEASES}' AND key = ANY($1::text[]) FOR SHARE", keys)
    return {row[0]: row[1] for row in rows}


def with_chunks(rows: list[asyncpg.Record]) -> list[StoredItem]:
    """Rows of ITEMS_JOINED as stored items, their appended text joined on."""
    return joined(((row[0], row[1], row[2]) for row in rows),
                  ((row[0], row[3], text, row[5]) for row in rows if row[4] for text in row[4]))


class PostgresStore(Store):
    """Items and state in PostgreSQL tables; JSON values as jsonb."""

    seq_block = 1000

    def __init__(self, url: str, *, retry_seconds: float = 15.0, timeout: float = 5.0, pool_size: int = 10) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self.timeout = timeout
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    async def connect(self) -> None:
        async def open_pool() -> asyncpg.Pool:
            return await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.pool_size, timeout=self.timeout, command_timeout=self.timeout,
                init=self._init_connection,
            )

        self._pool = await self._retrying(open_pool)
        await self._retrying(self._migrate)

    @staticmethod
    async def _init_connection(connection: asyncpg.Connection) -> None:
        await connection.set_type_codec("jsonb", encoder=_encode, decoder=orjson.loads, schema="pg_catalog")

    async def _migrate(self) -> None:
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(7261530)")
            await connection.execute("CREATE TABLE IF NOT EXISTS streamchat_schema (version INTEGER NOT NULL)")
            version = await connection.fetchval("SELECT max(version) FROM streamchat_schema") or 0
            for number in sorted(MIGRATIONS):
                if number > version:
                    await connection.execute(MIGRATIONS[number])
                    await connection.execute("INSERT INTO streamchat_schema (version) VALUES ($1)", number)
                    logger.info("database schema migrated", extra={"version": number})

    async def disconnect(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), self.timeout)
            except TRANSIENT:
                pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("PostgresStore used before connect()")
        return self._pool

    async def ping(self) -> None:
        """Raise unless the database answers now (for /readyz): one try, no retries."""
        await asyncio.wait_for(self.pool.fetchval("SELECT 1"), self.timeout)

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await retry_transient(
                call, transient=TRANSIENT, seconds=self.retry_seconds, what="PostgreSQL",
                unavailable=lambda error: StoreUnavailable(f"PostgreSQL unreachable: {type(error).__name__}"))
        except asyncpg.DiskFullError as error:
            raise StorageFull("PostgreSQL is out of disk space") from error
        except asyncpg.ReadOnlySQLTransactionError as error:
            raise StoreUnavailable("PostgreSQL is read-only (a standby, or default_transaction_read_only)") from error

    async def run(self, work: Callable[[PoolConnectionProxy[Any]], Awaitable[T]]) -> T:
        """Run `work` on a pooled connection, retried like the store's own calls while PostgreSQL is
        away (for tables of the application's own, such as a search index)."""
        async def attempt() -> T:
            async with self.pool.acquire() as connection:
                return await work(connection)

        return await self._retrying(attempt)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self._retrying(lambda: self.pool.fetch(sql, *args))

    async def _write(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.writes += 1
        return await self._fetch(sql, *args)

    async def reserve_seq(self, stream: str, group: str, count: int) -> int:
        rows = await self._write(
            "INSERT INTO stream_groups (stream, group_id, seq) VALUES ($1, $2, $3) "
            "ON CONFLICT (stream, group_id) DO UPDATE SET seq = stream_groups.seq + excluded.seq RETURNING seq",
            stream, group, count,
        )
        return int(rows[0][0])

    async def max_seq(self, stream: str, group: str) -> int:
        rows = await self._fetch(
            "SELECT GREATEST((SELECT max(seq) FROM stream_items WHERE stream = $1 AND group_id = $2), "
            "(SELECT seq FROM stream_groups WHERE stream = $1 AND group_id = $2), "
            "(SELECT max(seq) FROM stream_chunks WHERE stream = $1 AND group_id = $2))", stream, group,
        )
        return int(rows[0][0] or 0)

    def _encode_item(self, item: StoredItem) -> str:
        """An item's data as sent (text, cast to jsonb by the statement), counted in `bytes_written`."""
        encoded = orjson.dumps(item.data)
        self.bytes_written += len(encoded)
        return encoded.decode()

    async def put_item(self, stream: str, group: str, item: StoredItem, lease: Lease | None = None) -> bool:
        # `position` is the seq an item was (re)created with and never changes while it lives: right
        # after the upsert `position = seq` holds exactly when the row is new.
        args = (stream, group, item.id, self._encode_item(item), item.seq)
        if lease is None:
            rows = await self._write(PUT_ITEM + " RETURNING position = seq", *args)
            return bool(rows and rows[0][0])

        async def write() -> bool:
            async with self.pool.acquire() as connection, connection.transaction():
                held = await lease_tokens(connection, [lease.key])
                if held.get(lease.key) != lease.token:
                    raise Fenced(lease, f"{stream}/{group}/{item.id}")
                rows = await connection.fetch(PUT_ITEM + " RETURNING position = seq", *args)
                return bool(rows and rows[0][0])

        self.writes += 1
        return await self._retrying(write)

    async def put_items(self, stream: str, items: list[tuple[str, StoredItem]],
                        leases: Mapping[tuple[str, str], Lease] | None = None) -> set[tuple[str, str]]:
        async def write() -> set[tuple[str, str]]:
            async with self.pool.acquire() as connection, connection.transaction():
                refused: set[tuple[str, str]] = set()
                if leases:
                    held = await lease_tokens(connection, sorted({lease.key for lease in leases.values()}))
                    refused = {target for target, lease in leases.items() if held.get(lease.key) != lease.token}
                await connection.executemany(PUT_ITEM, [(stream, group, item.id, self._encode_item(item), item.seq)
                                                        for group, item in items if (group, item.id) not in refused])
                return refused

        self.writes += 1
        return await self._retrying(write)

    async def append_texts(self, stream: str, appends: list[tuple[str, TextAppend]],
                           leases: Mapping[tuple[str, str], Lease] | None = None,
                           ) -> dict[tuple[str, str], AppendRefusal]:
        async def write() -> dict[tuple[str, str], AppendRefusal]:
            async with self.pool.acquire() as connection, connection.transaction():
                refused: dict[tuple[str, str], AppendRefusal] = {}
                if leases:
                    held = await lease_tokens(connection, sorted({lease.key for lease in leases.values()}))
                    refused = {target: "fenced" for target, lease in leases.items()
                               if held.get(lease.key) != lease.token}
                wanted = [(group, append) for group, append in appends if (group, append.id) not in refused]
                rows = await connection.fetch(STORED_ENDS, stream, [group for group, _ in wanted],
                                              [append.id for _, append in wanted],
                                              [append.field for _, append in wanted]) if wanted else []
                ends = {(row[0], row[1]): stored_end(tuple(row)[2:]) for row in rows}
                chunks = chunk_rows(stream, wanted, ends, refused)
                await connection.executemany(INSERT_CHUNK, chunks)
                return refused

        self.writes += 1
        self.bytes_written += sum(len(append.text.encode()) for _, append in appends)
        return await self._retrying(write)

    async def lease_drop(self, lease: Lease) -> None:
        await self._write(f"DELETE FROM state WHERE scope = '{LEASES}' AND key = $1 AND value->>'token' = $2",
                          lease.key, lease.token)

    async def get_item(self, stream: str, group: str, item_id: str) -> StoredItem | None:
        rows = await self._fetch(ITEMS_JOINED + "WHERE s.stream = $1 AND s.group_id = $2 AND s.id = $3 "
                                 "AND s.deleted_at IS NULL", stream, group, item_id)
        items = with_chunks(rows)
        return items[0] if items else None

    async def delete_item(self, stream: str, group: str, item_id: str, seq: int) -> bool:
        try:
            rows = await self._write(DELETE_ITEM, stream, group, item_id, seq)
        except StorageFull:
            rows = await self._write(WITHOUT_TOMBSTONE, stream, group, item_id, seq)
        return bool(rows and rows[0][0])

    async def prune_tombstones(self, older_than: float) -> int:
        rows = await self._write("DELETE FROM stream_items WHERE deleted_at < $1 RETURNING 1", older_than)
        return len(rows)

    async def list_items(self, stream: str, group: str) -> list[StoredItem]:
        rows = await self._fetch(ITEMS_JOINED + "WHERE s.stream = $1 AND s.group_id = $2 AND s.deleted_at IS NULL "
                                 "ORDER BY s.position, s.created", stream, group)
        return with_chunks(rows)

    async def list_groups(self, stream: str, limit: int = 1000) -> list[str]:
        rows = await self._fetch(
            "SELECT group_id FROM stream_items WHERE stream = $1 AND deleted_at IS NULL GROUP BY group_id "
            "ORDER BY max(created) DESC LIMIT $2", stream, limit,
        )
        return [row[0] for row in rows]

    async def state_get(self, scope: str, key: str) -> JSON | None:
        rows = await self._fetch("SELECT value FROM state WHERE scope = $1 AND key = $2", scope, key)
        return dict(rows[0][0]) if rows else None

    async def state_set(self, scope: str, key: str, value: JSON) -> None:
        await self._write(
            "INSERT INTO state (scope, key, value) VALUES ($1, $2, $3::jsonb) "
            "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value", scope, key, value,
        )

    async def state_delete(self, scope: str, key: str) -> None:
        await self._write("DELETE FROM state WHERE scope = $1 AND key = $2", scope, key)

    async def state_list(self, scope: str) -> dict[str, JSON]:
        rows = await self._fetch("SELECT key, value FROM state WHERE scope = $1", scope)
        return {row[0]: dict(row[1]) for row in rows}

    async def state_claim(self, scope: str, key: str, value: JSON) -> JSON:
        # An upsert that keeps the stored value: PostgreSQL settles the conflict, both callers read the winner.
        rows = await self._write(
            "INSERT INTO state (scope, key, value) VALUES ($1, $2, $3::jsonb) "
            "ON CONFLICT (scope, key) DO UPDATE SET value = state.value RETURNING value", scope, key, value,
        )
        return dict(rows[0][0])

    async def state_reserve(self, scope: str, key: str, value: JSON, limit: int, fresh_since: float) -> bool:
        """Counting and inserting in one statement is not enough under READ COMMITTED (two
        transactions each count the other's row as absent), so callers of one scope take turns
        on a transaction-scoped advisory lock."""

        async def reserve() -> bool:
            async with self.pool.acquire() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"state:{scope}")
                running = await connection.fetchval(
                    "SELECT count(*) FROM state WHERE scope = $1 AND key <> $2 AND (value->>'at')::float8 >= $3",
                    scope, key, fresh_since)
                if running >= limit:
                    return False
                await connection.execute(
                    "INSERT INTO state (scope, key, value) VALUES ($1, $2, $3::jsonb) "
                    "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value", scope, key, value)
                return True

        self.writes += 1
        return await self._retrying(reserve)
