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
from streamchat.framework.store.base import JSON, LEASES, Store, StoredItem

logger = logging.getLogger("streamchat.store")
T = TypeVar("T")

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE IF NOT EXISTS stream_items (
        stream   TEXT   NOT NULL,
        group_id TEXT   NOT NULL,
        id       TEXT   NOT NULL,
        data     JSONB  NOT NULL,
        seq      BIGINT NOT NULL,
        position BIGINT NOT NULL,
        created  BIGSERIAL,
        PRIMARY KEY (stream, group_id, id)
    );
    CREATE INDEX IF NOT EXISTS stream_items_order ON stream_items (stream, group_id, position);
    CREATE INDEX IF NOT EXISTS stream_items_recent ON stream_items (stream, created DESC);
    CREATE TABLE IF NOT EXISTS stream_groups (
        stream   TEXT   NOT NULL,
        group_id TEXT   NOT NULL,
        seq      BIGINT NOT NULL,
        PRIMARY KEY (stream, group_id)
    );
    CREATE TABLE IF NOT EXISTS state (
        scope TEXT  NOT NULL,
        key   TEXT  NOT NULL,
        value JSONB NOT NULL,
        PRIMARY KEY (scope, key)
    );
    """,
    # Tombstones: a deleted item keeps its row (no data) with the delete's seq, so a write that was
    # on its way before the delete is refused by the seq guard instead of inserting it again.
    2: """
    ALTER TABLE stream_items ADD COLUMN IF NOT EXISTS deleted_at DOUBLE PRECISION;
    CREATE INDEX IF NOT EXISTS stream_items_tombstones ON stream_items (deleted_at) WHERE deleted_at IS NOT NULL;
    """,
}

#: A newer write replaces the item or its tombstone; one written over a tombstone takes a new place.
PUT_ITEM = (
    "INSERT INTO stream_items (stream, group_id, id, data, seq, position) VALUES ($1, $2, $3, $4::jsonb, $5, $5) "
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
    "DELETE FROM stream_items WHERE stream = $1 AND group_id = $2 AND id = $3 AND seq < $4 "
    "RETURNING deleted_at IS NULL"
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
            "(SELECT seq FROM stream_groups WHERE stream = $1 AND group_id = $2))", stream, group,
        )
        return int(rows[0][0] or 0)

    async def put_item(self, stream: str, group: str, item: StoredItem, lease: Lease | None = None) -> bool:
        # `position` is the seq an item was (re)created with and never changes while it lives: right
        # after the upsert `position = seq` holds exactly when the row is new.
        args = (stream, group, item.id, item.data, item.seq)
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
                await connection.executemany(PUT_ITEM, [(stream, group, item.id, item.data, item.seq)
                                                        for group, item in items if (group, item.id) not in refused])
                return refused

        self.writes += 1
        return await self._retrying(write)

    async def lease_drop(self, lease: Lease) -> None:
        await self._write(f"DELETE FROM state WHERE scope = '{LEASES}' AND key = $1 AND value->>'token' = $2",
                          lease.key, lease.token)

    async def get_item(self, stream: str, group: str, item_id: str) -> StoredItem | None:
        rows = await self._fetch(
            "SELECT id, data, seq FROM stream_items WHERE stream = $1 AND group_id = $2 AND id = $3 "
            "AND deleted_at IS NULL", stream, group, item_id,
        )
        return StoredItem(rows[0][0], rows[0][1], int(rows[0][2])) if rows else None

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
        rows = await self._fetch(
            "SELECT id, data, seq FROM stream_items WHERE stream = $1 AND group_id = $2 AND deleted_at IS NULL "
            "ORDER BY position, created", stream, group,
        )
        return [StoredItem(row[0], row[1], int(row[2])) for row in rows]

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
