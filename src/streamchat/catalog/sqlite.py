"""The catalog in the SQLite store's file: a table of records and an FTS5 index of their texts.

FTS5's unicode61 tokenizer keeps diacritics here, as PostgreSQL's `simple` configuration does,
so both backends find the same conversations for a query.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

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
from streamchat.framework.store import SQLiteStore

T = TypeVar("T")

SCHEMA = RECORDS_SCHEMA + USAGE_SCHEMA + """
CREATE TABLE IF NOT EXISTS catalog_texts (
    id              INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    body            TEXT NOT NULL,
    UNIQUE (conversation_id, message_id)
);
CREATE VIRTUAL TABLE IF NOT EXISTS catalog_search USING fts5(
    body, content = 'catalog_texts', content_rowid = 'id', tokenize = "unicode61 remove_diacritics 0"
);
CREATE TRIGGER IF NOT EXISTS catalog_texts_added AFTER INSERT ON catalog_texts BEGIN
    INSERT INTO catalog_search (rowid, body) VALUES (new.id, new.body);
END;
CREATE TRIGGER IF NOT EXISTS catalog_texts_removed AFTER DELETE ON catalog_texts BEGIN
    INSERT INTO catalog_search (catalog_search, rowid, body) VALUES ('delete', old.id, old.body);
END;
CREATE TRIGGER IF NOT EXISTS catalog_texts_changed AFTER UPDATE ON catalog_texts BEGIN
    INSERT INTO catalog_search (catalog_search, rowid, body) VALUES ('delete', old.id, old.body);
    INSERT INTO catalog_search (rowid, body) VALUES (new.id, new.body);
END;
"""

RECORD = RECORD_COLUMNS
ACTIVE = "UPDATE catalog_conversations SET updated_at = max(updated_at, ?) WHERE conversation_id = ?"

#: Of each conversation's matching texts: a message's rather than the title's, the best-ranked one;
#: conversations by their best rank (bm25: lower is better).
SEARCH = f"""
WITH matches AS MATERIALIZED (
    SELECT t.conversation_id, t.message_id, bm25(catalog_search) AS rank,
           snippet(catalog_search, 0, '', '', '…', {SNIPPET_WORDS}) AS excerpt
    FROM catalog_search JOIN catalog_texts t ON t.id = catalog_search.rowid
    WHERE catalog_search MATCH ?
), ranked AS (
    SELECT *, row_number() OVER (PARTITION BY conversation_id ORDER BY message_id = '{TITLE}', rank) AS nth,
           min(rank) OVER (PARTITION BY conversation_id) AS best
    FROM matches
)
SELECT c.conversation_id, c.title, c.created_at, c.updated_at, c.owner, m.message_id, m.excerpt
FROM ranked m JOIN catalog_conversations c ON c.conversation_id = m.conversation_id
WHERE m.nth = 1 AND (? IS NULL OR c.owner = ?)
ORDER BY m.best, c.updated_at DESC, c.conversation_id DESC
LIMIT ? OFFSET ?
"""


class SQLiteCatalog(Catalog):
    """Each call is one statement or one IMMEDIATE transaction on the store's connection."""

    def __init__(self, store: SQLiteStore) -> None:
        super().__init__()
        self.store = store

    async def _create(self) -> None:
        await self.store.connection.script(SCHEMA)

    async def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` atomically, in the store's next batch."""
        await self.prepared()
        return await self.store.run(work)

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        await self.prepared()
        return await self.store.run(lambda db: db.execute(sql, params).fetchall())

    async def touch(self, conversation_id: str, owner: str | None, message_id: str, message: str,
                    at: str) -> Conversation:
        title = title_from(message)

        def work(db: sqlite3.Connection) -> Conversation:
            created = (db.execute(
                f"INSERT INTO catalog_conversations ({RECORD}) VALUES (?, ?, ?, ?, ?) "
                f"ON CONFLICT (conversation_id) DO NOTHING RETURNING {RECORD}",
                (conversation_id, title, at, at, owner)).fetchall())
            _set_text(db, conversation_id, message_id, message)
            if created:
                _set_text(db, conversation_id, TITLE, title)
                return record_from_row(created[0])
            rows = db.execute(ACTIVE + f" RETURNING {RECORD}", (at, conversation_id))
            return record_from_row(next(iter(rows)))

        result: Conversation = await self._transaction(work)
        return result

    async def restore(self, conversation: Conversation, texts: Mapping[str, str] | None = None) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            added = (db.execute(
                f"INSERT INTO catalog_conversations ({RECORD}) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (conversation_id) DO NOTHING RETURNING 1",
                (conversation.conversation_id, conversation.title, conversation.created_at,
                 conversation.updated_at, conversation.owner)).fetchall())
            if added:
                for key, text in {**(texts or {}), TITLE: conversation.title}.items():
                    _set_text(db, conversation.conversation_id, key, text)
            return bool(added)

        result: bool = await self._transaction(work)
        return result

    async def get(self, conversation_id: str) -> Conversation | None:
        rows = await self._rows(f"SELECT {RECORD} FROM catalog_conversations WHERE conversation_id = ?",
                                (conversation_id,))
        return record_from_row(rows[0]) if rows else None

    async def rename(self, conversation_id: str, title: str) -> Conversation | None:
        def work(db: sqlite3.Connection) -> Conversation | None:
            rows = (db.execute(
                f"UPDATE catalog_conversations SET title = ? WHERE conversation_id = ? RETURNING {RECORD}",
                (title, conversation_id)).fetchall())
            if not rows:
                return None
            _set_text(db, conversation_id, TITLE, title)
            return record_from_row(rows[0])

        result: Conversation | None = await self._transaction(work)
        return result

    async def recent(self, owner: str | None, limit: int, cursor: str | None) -> Page[Conversation]:
        after = decode_cursor("recent", cursor, 2) if cursor is not None else None
        keyset = "AND (updated_at < ? OR (updated_at = ? AND conversation_id < ?))" if after else ""
        params: tuple[Any, ...] = (owner, owner, *((after[0], after[0], after[1]) if after else ()), limit + 1)
        rows = await self._rows(
            f"SELECT {RECORD} FROM catalog_conversations WHERE (? IS NULL OR owner = ?) {keyset} "
            "ORDER BY updated_at DESC, conversation_id DESC LIMIT ?", params)
        records = [record_from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(records, encode_cursor("recent", [records[-1].updated_at, records[-1].conversation_id])
                    if more else None)

    async def index(self, conversation_id: str, message_id: str, text: str, active_at: str | None = None,
                    spent: Spent | None = None) -> None:
        def work(db: sqlite3.Connection) -> None:
            _set_text(db, conversation_id, message_id, text)
            if active_at is not None:
                db.execute(ACTIVE, (active_at, conversation_id))
                if spent is not None:
                    db.execute("INSERT INTO catalog_usage (reply_id, owner, model, prompt_tokens, "
                                     "completion_tokens, ended_at) VALUES (?, ?, ?, ?, ?, ?)",
                                     (spent.reply_id, spent.owner, spent.model, spent.prompt_tokens,
                                      spent.completion_tokens, active_at))

        await self._transaction(work)

    async def search(self, owner: str | None, query: str, limit: int, cursor: str | None) -> Page[Hit]:
        offset = int(decode_cursor("search", cursor, 1)[0]) if cursor is not None else 0
        terms = search_terms(query)
        if not terms:
            return Page([], None)
        match = " ".join(f'"{term}"' for term in terms)
        rows = await self._rows(SEARCH, (match, owner, owner, limit + 1, offset))
        hits = [Hit(record_from_row(row), row[6], row[5] or None) for row in rows[:limit]]
        return Page(hits, encode_cursor("search", [offset + limit]) if len(rows) > limit else None)

    async def remove(self, conversation_id: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM catalog_texts WHERE conversation_id = ?", (conversation_id,))
            db.execute("DELETE FROM catalog_conversations WHERE conversation_id = ?", (conversation_id,))

        await self._transaction(work)

    async def usage(self, owner: str | None, since: str | None, until: str | None) -> list[ModelUsage]:
        rows = await self._rows(
            "SELECT model, count(*), sum(prompt_tokens), sum(completion_tokens) FROM catalog_usage "
            "WHERE (?1 IS NULL OR owner = ?1) AND (?2 IS NULL OR ended_at >= ?2) AND (?3 IS NULL OR ended_at < ?3) "
            "GROUP BY model ORDER BY model", (owner, since, until))
        return [ModelUsage(row[0], row[1], row[2], row[3]) for row in rows]


def _set_text(db: sqlite3.Connection, conversation_id: str, key: str, text: str) -> None:
    db.execute("INSERT INTO catalog_texts (conversation_id, message_id, body) VALUES (?, ?, ?) "
                     "ON CONFLICT (conversation_id, message_id) DO UPDATE SET body = excluded.body",
                     (conversation_id, key, text))
