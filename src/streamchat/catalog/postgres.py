"""The catalog in the PostgreSQL store's database: a table of records and a GIN-indexed tsvector of
their texts, shared by every instance. The `simple` text search configuration (no stemming, no
stop words) finds what SQLite's FTS5 finds for the same query.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streamchat.catalog.base import (
    RECORD_COLUMNS,
    RECORDS_SCHEMA,
    SNIPPET_WORDS,
    TITLE,
    USAGE_SCHEMA,
    Catalog,
    Conversation,
    Hit,
    ModelUsage,
    Page,
    Spent,
    decode_cursor,
    encode_cursor,
    record_from_row,
    search_terms,
    title_from,
)
from streamchat.framework.store import PostgresStore

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection = PoolConnectionProxy[Any]

#: Instances starting together create the tables one after the other.
SCHEMA = "SELECT pg_advisory_xact_lock(7261531);" + RECORDS_SCHEMA + USAGE_SCHEMA + """
CREATE TABLE IF NOT EXISTS catalog_texts (
    conversation_id TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    body            TEXT NOT NULL,
    document        tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED,
    PRIMARY KEY (conversation_id, message_id)
);
CREATE INDEX IF NOT EXISTS catalog_texts_search ON catalog_texts USING GIN (document);
"""

RECORD = RECORD_COLUMNS

#: Of each conversation's matching texts: a message's rather than the title's, the best-ranked one;
#: conversations by their best rank.
SEARCH = f"""
WITH query AS (SELECT to_tsquery('simple', $1) AS q),
ranked AS (
    SELECT t.conversation_id, t.message_id, t.body, ts_rank(t.document, query.q, 1) AS rank,
           row_number() OVER (PARTITION BY t.conversation_id
                              ORDER BY t.message_id = '{TITLE}', ts_rank(t.document, query.q, 1) DESC) AS nth,
           max(ts_rank(t.document, query.q, 1)) OVER (PARTITION BY t.conversation_id) AS best
    FROM catalog_texts t, query WHERE t.document @@ query.q
)
SELECT c.conversation_id, c.title, c.created_at, c.updated_at, c.owner, m.message_id,
       ts_headline('simple', m.body, query.q,
                   'StartSel="", StopSel="", MaxWords={SNIPPET_WORDS}, MinWords={SNIPPET_WORDS // 2}, ShortWord=0')
FROM ranked m JOIN catalog_conversations c ON c.conversation_id = m.conversation_id, query
WHERE m.nth = 1 AND ($2::text IS NULL OR c.owner = $2)
ORDER BY m.best DESC, c.updated_at DESC, c.conversation_id DESC
LIMIT $3 OFFSET $4
"""

ACTIVE = "UPDATE catalog_conversations SET updated_at = GREATEST(updated_at, $2) WHERE conversation_id = $1"
SET_TEXT = ("INSERT INTO catalog_texts (conversation_id, message_id, body) VALUES ($1, $2, $3) "
            "ON CONFLICT (conversation_id, message_id) DO UPDATE SET body = excluded.body")


class PostgresCatalog(Catalog):
    """Each call is one statement or one transaction on a connection of the store's pool."""

    def __init__(self, store: PostgresStore) -> None:
        super().__init__()
        self.store = store

    async def _create(self) -> None:
        async def create(connection: Connection) -> None:
            async with connection.transaction():
                await connection.execute(SCHEMA)

        await self.store.run(create)

    async def _run(self, work: Any) -> Any:
        await self.prepared()
        return await self.store.run(work)

    async def _rows(self, sql: str, *args: Any) -> list[Any]:
        async def fetch(connection: Connection) -> list[Any]:
            return list(await connection.fetch(sql, *args))

        result: list[Any] = await self._run(fetch)
        return result

    async def touch(self, conversation_id: str, owner: str | None, message_id: str, message: str,
                    at: str) -> Conversation:
        title = title_from(message)

        async def work(connection: Connection) -> Conversation:
            async with connection.transaction():
                await connection.execute(SET_TEXT, conversation_id, message_id, message)
                while True:
                    created = await connection.fetchrow(
                        f"INSERT INTO catalog_conversations ({RECORD}) VALUES ($1, $2, $3, $3, $4) "
                        f"ON CONFLICT (conversation_id) DO NOTHING RETURNING {RECORD}",
                        conversation_id, title, at, owner)
                    if created is not None:
                        await connection.execute(SET_TEXT, conversation_id, TITLE, title)
                        return record_from_row(created)
                    active = await connection.fetchrow(ACTIVE + f" RETURNING {RECORD}", conversation_id, at)
                    if active is not None:
                        return record_from_row(active)
                    # Removed by a delete that committed between the two statements: it is new again.

        result: Conversation = await self._run(work)
        return result

    async def restore(self, conversation: Conversation, texts: Mapping[str, str] | None = None) -> bool:
        async def work(connection: Connection) -> bool:
            async with connection.transaction():
                added = await connection.fetchval(
                    f"INSERT INTO catalog_conversations ({RECORD}) VALUES ($1, $2, $3, $4, $5) "
                    "ON CONFLICT (conversation_id) DO NOTHING RETURNING true",
                    conversation.conversation_id, conversation.title, conversation.created_at,
                    conversation.updated_at, conversation.owner)
                if added:
                    await connection.executemany(SET_TEXT, [
                        (conversation.conversation_id, key, text)
                        for key, text in {**(texts or {}), TITLE: conversation.title}.items()])
                return bool(added)

        result: bool = await self._run(work)
        return result

    async def get(self, conversation_id: str) -> Conversation | None:
        rows = await self._rows(f"SELECT {RECORD} FROM catalog_conversations WHERE conversation_id = $1",
                                conversation_id)
        return record_from_row(rows[0]) if rows else None

    async def rename(self, conversation_id: str, title: str) -> Conversation | None:
        async def work(connection: Connection) -> Conversation | None:
            async with connection.transaction():
                row = await connection.fetchrow(
                    f"UPDATE catalog_conversations SET title = $2 WHERE conversation_id = $1 RETURNING {RECORD}",
                    conversation_id, title)
                if row is None:
                    return None
                await connection.execute(SET_TEXT, conversation_id, TITLE, title)
                return record_from_row(row)

        result: Conversation | None = await self._run(work)
        return result

    async def recent(self, owner: str | None, limit: int, cursor: str | None) -> Page[Conversation]:
        after = decode_cursor("recent", cursor, 2) if cursor is not None else None
        keyset = "AND (updated_at, conversation_id) < ($3, $4)" if after else ""
        rows = await self._rows(
            f"SELECT {RECORD} FROM catalog_conversations WHERE ($1::text IS NULL OR owner = $1) {keyset} "
            f"ORDER BY updated_at DESC, conversation_id DESC LIMIT $2",
            owner, limit + 1, *((str(after[0]), str(after[1])) if after else ()))
        records = [record_from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(records, encode_cursor("recent", [records[-1].updated_at, records[-1].conversation_id])
                    if more else None)

    async def index(self, conversation_id: str, message_id: str, text: str, active_at: str | None = None,
                    spent: Spent | None = None) -> None:
        async def work(connection: Connection) -> None:
            async with connection.transaction():
                await connection.execute(SET_TEXT, conversation_id, message_id, text)
                if active_at is not None:
                    await connection.execute(ACTIVE, conversation_id, active_at)
                    if spent is not None:
                        await connection.execute(
                            "INSERT INTO catalog_usage (reply_id, owner, model, prompt_tokens, completion_tokens, "
                            "ended_at) VALUES ($1, $2, $3, $4, $5, $6)", spent.reply_id, spent.owner, spent.model,
                            spent.prompt_tokens, spent.completion_tokens, active_at)

        await self._run(work)

    async def search(self, owner: str | None, query: str, limit: int, cursor: str | None) -> Page[Hit]:
        offset = int(decode_cursor("search", cursor, 1)[0]) if cursor is not None else 0
        terms = search_terms(query)
        if not terms:
            return Page([], None)
        rows = await self._rows(SEARCH, " & ".join(terms), owner, limit + 1, offset)
        hits = [Hit(record_from_row(row), row[6], row[5] or None) for row in rows[:limit]]
        return Page(hits, encode_cursor("search", [offset + limit]) if len(rows) > limit else None)

    async def remove(self, conversation_id: str) -> None:
        async def work(connection: Connection) -> None:
            async with connection.transaction():
                await connection.execute("DELETE FROM catalog_texts WHERE conversation_id = $1", conversation_id)
                await connection.execute("DELETE FROM catalog_conversations WHERE conversation_id = $1",
                                         conversation_id)

        await self._run(work)

    async def usage(self, owner: str | None, since: str | None, until: str | None) -> list[ModelUsage]:
        rows = await self._rows(
            "SELECT model, count(*), sum(prompt_tokens), sum(completion_tokens) FROM catalog_usage "
            "WHERE ($1::text IS NULL OR owner = $1) AND ($2::text IS NULL OR ended_at >= $2) "
            "AND ($3::text IS NULL OR ended_at < $3) GROUP BY model ORDER BY model", owner, since, until)
        return [ModelUsage(row[0], row[1], int(row[2]), int(row[3])) for row in rows]
