"""The typed view of a stream that handlers use as `ctx.streams.<name>`: every write validated by its schema."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel

from streamchat.framework.config import StreamConfig
from streamchat.framework.leases import Lease
from streamchat.framework.store import JSON
from streamchat.framework.streams.group_watch import GroupWatch
from streamchat.framework.streams.hub import StreamHub
from streamchat.framework.streams.watch import ItemWatch

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Item(Generic[M]):
    """One item of a group: its id, the seq of its last change and its typed data."""

    id: str
    seq: int
    data: M


StreamObserver = Callable[[str, str, str, str, Mapping[str, Any]], None]


@functools.cache
def _text_fields(schema: type[BaseModel]) -> frozenset[str]:
    """Wire names of the string fields of a schema (optional ones too: an item that has text there can
    grow it): the ones `append` may grow. Once per schema: a Stream is made for every handler run, and
    reading a schema's fields is not free."""
    return frozenset((info.alias or name) for name, info in schema.model_fields.items()
                     if info.annotation is str or info.annotation == str | None)


@functools.cache
def _kept_nulls(schema: type[BaseModel], kept: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(field name, wire name) of the fields whose given null is written (StreamConfig.kept_nulls)."""
    return tuple((name, wire) for name, field in schema.model_fields.items() if (wire := field.alias or name) in kept)


class Stream(Generic[M]):
    """The typed view of one stream that handlers use: every write is validated by its schema.

    `observer` (the Workbench's) hears of every write: op, stream, group, item id, a short summary.
    `lease`: the lease of the delivery the handler runs for; its `set` and `append` carry it.
    """

    def __init__(self, config: StreamConfig[M], hub: StreamHub, observer: StreamObserver | None = None,
                 lease: Lease | None = None) -> None:
        self.config = config
        self.name = config.name
        self._hub = hub
        self._observer = observer
        self._lease = lease
        self._text_fields = _text_fields(config.schema)
        self._kept_nulls = _kept_nulls(config.schema, config.kept_nulls)

    def _validate(self, data: M | Mapping[str, Any]) -> M:
        if isinstance(data, self.config.schema):
            return data
        if isinstance(data, BaseModel):
            data = data.model_dump(by_alias=True)
        return self.config.schema.model_validate(data)

    def _load(self, item: JSON) -> Item[M]:
        return Item(item["id"], item["seq"], self.config.schema.model_validate(item))

    async def set(self, group_id: str, item_id: str, data: M | Mapping[str, Any]) -> Item[M]:
        model = self._validate(data)
        stored = model.model_dump(mode="json", by_alias=True, exclude_none=True)
        for name, wire in self._kept_nulls:
            if name in model.model_fields_set and wire not in stored:
                stored[wire] = None
        item = await self._hub.set(self.name, group_id, item_id, stored, self._lease)
        if self._observer is not None:
            summary: dict[str, Any] = {key: stored[key] for key in self.config.summary if key in stored}
            self._observer("set", self.name, group_id, item_id, {**summary, "seq": item["seq"]})
        return Item(item_id, item["seq"], model)

    async def append(self, group_id: str, item_id: str, field_name: str, text: str) -> int:
        """Stream `text` onto the end of a string field of an existing item; returns its seq."""
        if field_name not in self._text_fields:
            raise ValueError(f"stream {self.name!r} has no string field {field_name!r} to append to")
        if not isinstance(text, str):
            raise TypeError(f"append needs str, got {type(text).__name__}")
        seq = await self._hub.append(self.name, group_id, item_id, field_name, text, self._lease)
        if self._observer is not None:
            self._observer("append", self.name, group_id, item_id, {})
        return seq

    async def get(self, group_id: str, item_id: str) -> Item[M] | None:
        item = await self._hub.get(self.name, group_id, item_id)
        return None if item is None else self._load(item)

    async def delete(self, group_id: str, item_id: str) -> Item[M] | None:
        item = await self._hub.delete(self.name, group_id, item_id)
        if item is not None and self._observer is not None:
            self._observer("delete", self.name, group_id, item_id, {"seq": item["seq"]})
        return None if item is None else self._load(item)

    async def delete_group(self, group_id: str) -> list[Item[M]]:
        """Delete every item of the group (subscribers get a delete for each); the items deleted."""
        items = await self._hub.delete_group(self.name, group_id)
        if self._observer is not None:
            for item in items:
                self._observer("delete", self.name, group_id, item["id"], {"seq": item["seq"]})
        return [self._load(item) for item in items]

    async def get_group(self, group_id: str) -> list[Item[M]]:
        return [self._load(item) for item in await self._hub.list_group(self.name, group_id)]

    async def send(self, group_id: str, event_type: str, data: Any, item_id: str | None = None) -> None:
        """Push a custom event to whoever watches now (Motia's `send`): no seq, not kept, not on SSE."""
        await self._hub.send(self.name, group_id, {"type": event_type, "data": data}, item_id)

    async def send_event(self, group_id: str, name: str, data: BaseModel | Any) -> int:
        """Send every watcher of the group a custom event that is a change of it; returns its seq.

        It is ordered with the item writes (on every instance), kept for resume, sent to SSE clients
        as `event: <name>`, and carries the handler's lease like `set`. The latest event of a name the
        config lists in `sticky_events` is stored and ends each new watcher's snapshot. Data that is
        not JSON (or a model) is refused here, before anything is sent.
        """
        if isinstance(data, BaseModel):
            data = data.model_dump(mode="json", by_alias=True)
        try:
            data = orjson.loads(orjson.dumps(data))
        except TypeError as error:
            raise TypeError(f"event {name!r} of stream {self.name!r}: data is not JSON: {error}") from None
        seq = await self._hub.send_event(self.name, group_id, name, data, self._lease)
        if self._observer is not None:
            self._observer("event", self.name, group_id, "", {"event": name, "seq": seq})
        return seq

    def watch(self, group_id: str, item_id: str, keepalive: float | None = None) -> ItemWatch[M]:
        """Follow one item: its state now, then each write and appended piece (see watch.py)."""
        return ItemWatch(self._hub, self.name, group_id, item_id, self.config.schema.model_validate, keepalive)

    def watch_group(self, group_id: str, keepalive: float | None = None) -> GroupWatch[M]:
        """Follow every item of a group: their states now, then each change of any (see group_watch.py)."""
        return GroupWatch(self._hub, self.name, group_id, self.config.schema.model_validate, keepalive)
