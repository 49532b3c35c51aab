"""The catalog: what a user can find of their conversations — the list, titles, and full-text search.

The messages themselves live in the `conversation` stream; the catalog keeps, per conversation,
its record (owner, title, when it was created and last active) and the searchable text of its
title and of each finished message, and the ledger of what each reply cost (tokens by model and
key; kept when its conversation is deleted, as accounts are). It is written when a message is sent,
when a reply ends and when a conversation is renamed or deleted, never per token. Its backends keep their tables in the
state store's own database (sqlite.py: FTS5; postgres.py: tsvector with a GIN index; memory.py),
and read a query the same way: the letters-and-digits words of the query, every one required,
matched whole and without regard to case.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

T = TypeVar("T")

#: A title made from a first message is cut to this many characters.
TITLE_CHARS = 80
#: Words of a search query beyond this many are not used.
QUERY_TERMS = 16
#: A snippet shows about this many words around the match.
SNIPPET_WORDS = 12
#: The key under which the title's text is indexed beside the messages'.
TITLE = ""

_WORD = re.compile(r"[^\W_]+")

#: The records' table, the same in SQLite and PostgreSQL; searchable text is each backend's own.
RECORDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog_conversations (
    conversation_id TEXT PRIMARY KEY,
    owner           TEXT,
    title           TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS catalog_recent ON catalog_conversations (owner, updated_at DESC, conversation_id DESC);
CREATE INDEX IF NOT EXISTS catalog_recent_all ON catalog_conversations (updated_at DESC, conversation_id DESC);
"""
#: One row per reply that called the model; times are ISO-8601 UTC strings of one width, so they sort.
USAGE_SCHEMA = """
CREATE TABLE IF NOT EXISTS catalog_usage (
    reply_id          TEXT NOT NULL,
    owner             TEXT,
    model             TEXT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    ended_at          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS catalog_usage_by_owner ON catalog_usage (owner, ended_at);
CREATE INDEX IF NOT EXISTS catalog_usage_by_time ON catalog_usage (ended_at);
"""
#: A record's columns, in the order `record_from_row` reads them.
RECORD_COLUMNS = "conversation_id, title, created_at, updated_at, owner"


@dataclass(frozen=True, slots=True)
class Conversation:
    conversation_id: str
    title: str
    created_at: str
    updated_at: str
    #: The API key id that owns it; None on a server without keys.
    owner: str | None = None

    def public(self) -> dict[str, Any]:
        return {"conversationId": self.conversation_id, "title": self.title, "createdAt": self.created_at,
                "updatedAt": self.updated_at}


def record_from_row(row: Any) -> Conversation:
    return Conversation(row[0], row[1], row[2], row[3], row[4])


@dataclass(frozen=True, slots=True)
class Hit:
    """A conversation that matches a search: where it matches best, and a few words around it."""

    conversation: Conversation
    snippet: str
    #: The best-matching message; None when only the title matches.
    message_id: str | None


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """What the replies of one model cost over a period."""

    model: str
    replies: int
    prompt_tokens: int
    completion_tokens: int

    def public(self) -> dict[str, Any]:
        return {"model": self.model, "replies": self.replies, "promptTokens": self.prompt_tokens,
                "completionTokens": self.completion_tokens}


@dataclass(frozen=True, slots=True)
class Spent:
    """What one reply cost: its row in the usage ledger."""

    reply_id: str
    owner: str | None
    model: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    entries: list[T]
    #: Pass back as `cursor` for the next page; None on the last one.
    next_cursor: str | None


class BadCursor(ValueError):
    """A cursor this server did not hand out (or one for another kind of listing)."""


def encode_cursor(kind: str, values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([kind, *values])).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str, arity: int) -> list[Any]:
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as error:
        raise BadCursor("cursor: not a cursor this server handed out") from error
    if not isinstance(decoded, list) or len(decoded) != arity + 1 or decoded[0] != kind:
        raise BadCursor("cursor: not a cursor this server handed out for this listing")
    return decoded[1:]


def search_terms(query: str) -> list[str]:
    """The words a query searches for: letters and digits, lower-cased, in order, each once."""
    return list(dict.fromkeys(word.lower() for word in _WORD.findall(query)))[:QUERY_TERMS]


def words(text: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(text)]


def title_from(first_message: str) -> str:
    title = " ".join(first_message.split())
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"


class Catalog(ABC):
    """The conversations' records and search index. Every method is one atomic step in its backend."""

    def __init__(self) -> None:
        self._ready = False
        self._preparing = asyncio.Lock()
        #: Run once after the tables exist, e.g. to take in records kept before the catalog was.
        self.on_first_use: Callable[[Catalog], Awaitable[None]] | None = None

    async def prepared(self) -> None:
        """Create the backend's tables on first use (idempotent; several instances may race)."""
        if self._ready:
            return
        async with self._preparing:
            if not self._ready:
                await self._create()
                self._ready = True
                if self.on_first_use is not None:
                    await self.on_first_use(self)

    async def _create(self) -> None:
        """Create what the backend needs, if it is not there."""

    @abstractmethod
    async def touch(self, conversation_id: str, owner: str | None, message_id: str, message: str,
                    at: str) -> Conversation:
        """A message was sent: create the record (its title from this first message) or mark it
        active, and make the message searchable; one step."""

    @abstractmethod
    async def restore(self, conversation: Conversation, texts: Mapping[str, str] | None = None) -> bool:
        """Add a whole record and the searchable text of its messages (by message id) in one step
        (an import, or one kept before the catalog); False, and nothing written, if the id is taken."""

    @abstractmethod
    async def get(self, conversation_id: str) -> Conversation | None: ...

    @abstractmethod
    async def rename(self, conversation_id: str, title: str) -> Conversation | None:
        """Set the title (and its searchable text); None when there is no such conversation."""

    @abstractmethod
    async def recent(self, owner: str | None, limit: int, cursor: str | None) -> Page[Conversation]:
        """Most recently active first; `owner` None lists every conversation."""

    @abstractmethod
    async def index(self, conversation_id: str, message_id: str, text: str, active_at: str | None = None,
                    spent: Spent | None = None) -> None:
        """Make a finished message's text searchable (replacing what was indexed for it); it is found
        once the conversation has a record, which may be written just after. With `active_at` (a
        reply ended) the conversation also moves up the list, and `spent` enters what the reply cost
        in the ledger (at `active_at`); all in one step, so a crash keeps all of it or none."""

    @abstractmethod
    async def search(self, owner: str | None, query: str, limit: int, cursor: str | None) -> Page[Hit]:
        """Conversations matching every word of `query`, best match first."""

    @abstractmethod
    async def remove(self, conversation_id: str) -> None:
        """Forget the record and every indexed text of a conversation (not what its replies cost)."""

    @abstractmethod
    async def usage(self, owner: str | None, since: str | None, until: str | None) -> list[ModelUsage]:
        """Totals by model of replies that ended in [since, until); `owner` None counts every key's."""

    async def close(self) -> None:
        """Release what the backend holds of its own (the store's connection is the store's)."""
