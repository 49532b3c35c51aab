"""The catalog in this process's memory, beside the `memory://` store: gone with the process."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from streamchat.catalog.base import (
    SNIPPET_WORDS,
    TITLE,
    Catalog,
    Conversation,
    Hit,
    ModelUsage,
    Page,
    Spent,
    decode_cursor,
    encode_cursor,
    search_terms,
    title_from,
    words,
)


class MemoryCatalog(Catalog):
    """Scans every record on a listing or search: for tests and a single short-lived process."""

    def __init__(self) -> None:
        super().__init__()
        self._records: dict[str, Conversation] = {}
        self._texts: dict[str, dict[str, str]] = {}
        self._ledger: list[tuple[str | None, str, int, int, str]] = []

    async def touch(self, conversation_id: str, owner: str | None, message_id: str, message: str,
                    at: str) -> Conversation:
        record = self._records.get(conversation_id)
        if record is None:
            record = Conversation(conversation_id, title_from(message), at, at, owner)
            self._texts.setdefault(conversation_id, {})[TITLE] = record.title
        else:
            record = replace(record, updated_at=max(record.updated_at, at))
        self._records[conversation_id] = record
        self._texts[conversation_id][message_id] = message
        return record

    async def restore(self, conversation: Conversation, texts: Mapping[str, str] | None = None) -> bool:
        if conversation.conversation_id in self._records:
            return False
        self._records[conversation.conversation_id] = conversation
        self._texts[conversation.conversation_id] = {**(texts or {}), TITLE: conversation.title}
        return True

    async def get(self, conversation_id: str) -> Conversation | None:
        return self._records.get(conversation_id)

    async def rename(self, conversation_id: str, title: str) -> Conversation | None:
        record = self._records.get(conversation_id)
        if record is None:
            return None
        record = self._records[conversation_id] = replace(record, title=title)
        self._texts.setdefault(conversation_id, {})[TITLE] = title
        return record

    async def recent(self, owner: str | None, limit: int, cursor: str | None) -> Page[Conversation]:
        ordered = sorted((record for record in self._records.values() if owner is None or record.owner == owner),
                         key=lambda record: (record.updated_at, record.conversation_id), reverse=True)
        if cursor is not None:
            after = tuple(decode_cursor("recent", cursor, 2))
            ordered = [record for record in ordered if (record.updated_at, record.conversation_id) < after]
        page = ordered[:limit]
        more = len(ordered) > limit
        return Page(page, encode_cursor("recent", [page[-1].updated_at, page[-1].conversation_id]) if more else None)

    async def index(self, conversation_id: str, message_id: str, text: str, active_at: str | None = None,
                    spent: Spent | None = None) -> None:
        self._texts.setdefault(conversation_id, {})[message_id] = text
        record = self._records.get(conversation_id)
        if active_at is not None and record is not None:
            self._records[conversation_id] = replace(record, updated_at=max(record.updated_at, active_at))
        if active_at is not None and spent is not None:
            self._ledger.append((spent.owner, spent.model, spent.prompt_tokens, spent.completion_tokens, active_at))

    async def search(self, owner: str | None, query: str, limit: int, cursor: str | None) -> Page[Hit]:
        offset = int(decode_cursor("search", cursor, 1)[0]) if cursor is not None else 0
        terms = search_terms(query)
        ranked: list[tuple[int, Conversation, str, str]] = []
        for conversation_id, texts in self._texts.items():
            record = self._records.get(conversation_id)
            if not terms or record is None or (owner is not None and record.owner != owner):
                continue
            scored = [(sum(found.count(term) for term in terms), key, text)
                      for key, text in texts.items() if set(terms) <= set(found := words(text))]
            if scored:
                best = max(score for score, _, _ in scored)
                # A message's match is shown rather than the title's when there is one.
                _, key, text = max(scored, key=lambda entry: (entry[1] != TITLE, entry[0]))
                ranked.append((best, record, key, text))
        ranked.sort(key=lambda entry: (entry[0], entry[1].updated_at, entry[1].conversation_id), reverse=True)
        page = ranked[offset: offset + limit]
        hits = [Hit(record, snippet(text, terms), key or None) for _, record, key, text in page]
        more = len(ranked) > offset + limit
        return Page(hits, encode_cursor("search", [offset + limit]) if more else None)

    async def remove(self, conversation_id: str) -> None:
        self._records.pop(conversation_id, None)
        self._texts.pop(conversation_id, None)

    async def usage(self, owner: str | None, since: str | None, until: str | None) -> list[ModelUsage]:
        totals: dict[str, ModelUsage] = {}
        for spender, model, prompt, completion, at in self._ledger:
            if (owner is not None and spender != owner) or (since is not None and at < since) or (
                    until is not None and at >= until):
                continue
            seen = totals.get(model, ModelUsage(model, 0, 0, 0))
            totals[model] = ModelUsage(model, seen.replies + 1, seen.prompt_tokens + prompt,
                                       seen.completion_tokens + completion)
        return [totals[model] for model in sorted(totals)]


def snippet(text: str, terms: list[str]) -> str:
    """About SNIPPET_WORDS words of `text` from just before the first matching word."""
    spaced = text.split()
    first = next((index for index, word in enumerate(spaced) if set(words(word)) & set(terms)), 0)
    start = max(0, first - SNIPPET_WORDS // 4)
    shown = " ".join(spaced[start: start + SNIPPET_WORDS])
    return ("…" if start > 0 else "") + shown + ("…" if start + SNIPPET_WORDS < len(spaced) else "")
