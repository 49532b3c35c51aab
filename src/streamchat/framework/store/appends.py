"""Appended text: how a store checks an append against what it holds, and joins appends onto items.

A backend keeps each append as a row of its own beside the item (so an append writes only its own
text) and reads them back joined on; these are the rules every backend shares.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from streamchat.framework.store.base import JSON, AppendRefusal, StoredItem, TextAppend


@dataclass(frozen=True, slots=True)
class StoredEnd:
    """Where a stored item ends, as an append checks it: its newest seq, whether it is a tombstone,
    the field its appended text grows (None: nothing appended since its last whole write) and that field's length."""

    seq: int
    deleted: bool
    field: str | None
    length: int


Verdict = Literal["write", "drop", "unmatched"]


def judge_append(append: TextAppend, stored: StoredEnd | None) -> Verdict:
    """Whether an append extends exactly what is stored, is older than it (or its item is deleted), or neither."""
    if stored is None:
        return "unmatched"
    if stored.deleted or stored.seq >= append.seq:
        return "drop"
    if stored.seq != append.after_seq or stored.field not in (None, append.field) or stored.length != append.offset:
        return "unmatched"
    return "write"


ChunkRow = tuple[str, str, str, int, int, str, str]


def chunk_rows(stream: str, wanted: Iterable[tuple[str, TextAppend]], ends: dict[tuple[str, str], StoredEnd],
               refused: dict[tuple[str, str], AppendRefusal]) -> list[ChunkRow]:
    """The rows to insert (stream, group, id, seq, start, field, text) for the appends that extend
    exactly what is stored; those that do not are added to `refused` as unmatched, older ones dropped."""
    rows: list[ChunkRow] = []
    for group, append in wanted:
        verdict = judge_append(append, ends.get((group, append.id)))
        if verdict == "unmatched":
            refused[group, append.id] = "unmatched"
        elif verdict == "write":
            rows.append((stream, group, append.id, append.seq, append.offset, append.field, append.text))
    return rows


def with_appended(item: StoredItem, field: str, texts: list[str], seq: int) -> StoredItem:
    """A stored item with its appended texts joined on, as the changes numbered up to `seq` left it."""
    if not texts:
        return item
    return StoredItem(item.id, {**item.data, field: str(item.data.get(field, "")) + "".join(texts)}, max(seq, item.seq))


def stored_end(row: Any) -> StoredEnd:
    """A stored item's end as read by a backend: (its row's seq, whether it is a tombstone, its newest
    append's seq, field and end, and the field's length in the row's data)."""
    row_seq, deleted, chunk_seq, chunk_field, chunk_end, base_length = row
    if chunk_seq is not None and chunk_seq > row_seq:
        return StoredEnd(int(chunk_seq), bool(deleted), str(chunk_field), int(chunk_end))
    return StoredEnd(int(row_seq), bool(deleted), None, int(base_length or 0))


def joined(rows: Iterable[tuple[str, JSON, int]], chunks: Iterable[Any]) -> list[StoredItem]:
    """Item rows (id, data, seq) with their appended chunks (id, field, text, seq; in seq order) joined on."""
    appended: dict[str, tuple[str, list[str], int]] = {}
    for item_id, field, text, seq in chunks:
        _, texts, _ = appended.get(item_id, (field, [], 0))
        texts.append(text)
        appended[item_id] = (field, texts, int(seq))
    items = []
    for item_id, data, seq in rows:
        item = StoredItem(item_id, data, int(seq))
        field, texts, newest = appended.get(item_id, ("", [], 0))
        items.append(with_appended(item, field, texts, newest))
    return items
