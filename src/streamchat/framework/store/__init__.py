"""State backends, chosen by URL scheme: `sqlite:///path`, `postgresql://...`, `memory://`."""

from __future__ import annotations

from urllib.parse import urlparse

from streamchat.framework.store.base import JSON, AppendRefusal, Store, StoredItem, TextAppend
from streamchat.framework.store.memory import MemoryStore
from streamchat.framework.store.postgres import PostgresStore
from streamchat.framework.store.sqlite import SQLiteStore

__all__ = ["JSON", "AppendRefusal", "MemoryStore", "PostgresStore", "SQLiteStore", "Store", "StoredItem", "TextAppend",
           "store_from_url"]


def store_from_url(url: str, retry_seconds: float = 15.0) -> Store:
    """Build the store a URL names; an unknown scheme fails with the list of known ones."""
    scheme = urlparse(url).scheme
    if scheme == "memory":
        return MemoryStore()
    if scheme == "sqlite":
        return SQLiteStore(_sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url, retry_seconds=retry_seconds)
    raise ValueError(
        f"unsupported STREAMCHAT_STATE_URL scheme {scheme!r}: use sqlite:///path, postgresql://... or memory://")


def _sqlite_path(url: str) -> str:
    """`sqlite:///rel/path.db` is relative, `sqlite:////abs/path.db` absolute (SQLAlchemy's rule)."""
    rest = url[len("sqlite://") :]
    if not rest.startswith("/"):
        raise ValueError(f"bad sqlite URL {url!r}: expected sqlite:///relative.db or sqlite:////absolute.db")
    return rest[1:] or ":memory:"
