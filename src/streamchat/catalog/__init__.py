"""The catalog of conversations (records, titles, full-text search), kept beside the state store."""

from __future__ import annotations

from streamchat.catalog.base import BadCursor, Catalog, Conversation, Hit, ModelUsage, Page, Spent, title_from
from streamchat.catalog.memory import MemoryCatalog
from streamchat.catalog.postgres import PostgresCatalog
from streamchat.catalog.sqlite import SQLiteCatalog
from streamchat.framework.store import PostgresStore, SQLiteStore, Store

__all__ = ["BadCursor", "Catalog", "Conversation", "Hit", "MemoryCatalog", "ModelUsage", "Page", "PostgresCatalog",
           "SQLiteCatalog", "Spent", "catalog_for", "title_from"]


def catalog_for(store: Store) -> Catalog:
    """The catalog backend that lives in the same database as `store`."""
    if isinstance(store, SQLiteStore):
        return SQLiteCatalog(store)
    if isinstance(store, PostgresStore):
        return PostgresCatalog(store)
    return MemoryCatalog()

