"""Typed streams: items grouped by a key, stored, and pushed to subscribers on every change.

`StreamHub` owns storage and fan-out for all streams; `Stream[M]` is the typed view a
handler sees as `ctx.streams.<name>`. Frames are serialised once per change and handed to
each subscriber as bytes, so fan-out cost is one queue put per subscriber.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import orjson
from pydantic import BaseModel

from .steps import StreamConfig
from .store import JSON, Store, StoredItem

M = TypeVar("M", bound=BaseModel)


class Subscriber(Protocol):
    """Anything that can take a serialised frame without blocking (a WebSocket connection)."""

    def push(self, frame: bytes) -> None: ...


class UnknownStreamError(LookupError):
    """A stream name that no StreamConfig declares."""


@dataclass(frozen=True, slots=True)
class Item(Generic[M]):
    """One item of a group: its id, the seq of its last change and its typed data."""

    id: str
    seq: int
    data: M


def room(stream: str, group: str, item_id: str | None = None) -> str:
    """Subscription key, the same shape Motia's clients use."""
    return f"{stream}:group:{group}" if item_id is None else f"{stream}:group:{group}:item:{item_id}"


class StreamHub:
    """Stores items of every declared stream and fans changes out to joined subscribers."""

    def __init__(self, store: Store, configs: Mapping[str, StreamConfig[Any]]) -> None:
        self.store = store
        self.configs = dict(configs)
        self._rooms: dict[str, set[Subscriber]] = defaultdict(set)
        self._clock: dict[tuple[str, str], int] = {}

    # -- storage ---------------------------------------------------------------------------

    def config(self, stream: str) -> StreamConfig[Any]:
        try:
            return self.configs[stream]
        except KeyError:
            raise UnknownStreamError(stream) from None

    async def set(self, stream: str, group: str, item_id: str, data: JSON) -> JSON:
        """Store an already-validated item and publish `create` or `update`; returns the item."""
        self.config(stream)
        existed = await self.store.get_item(stream, group, item_id) is not None
        seq = await self.store.next_seq(stream, group)
        await self.store.put_item(stream, group, StoredItem(item_id, data, seq))
        item = {**data, "id": item_id, "seq": seq}
        self._publish(stream, group, item_id, {"type": "update" if existed else "create", "data": item})
        return item

    async def get(self, stream: str, group: str, item_id: str) -> JSON | None:
        self.config(stream)
        stored = await self.store.get_item(stream, group, item_id)
        return None if stored is None else as_item(stored)

    async def delete(self, stream: str, group: str, item_id: str) -> JSON | None:
        self.config(stream)
        stored = await self.store.get_item(stream, group, item_id)
        if stored is None:
            return None
        await self.store.delete_item(stream, group, item_id)
        item = as_item(stored)
        self._publish(stream, group, item_id, {"type": "delete", "data": item})
        return item

    async def list(self, stream: str, group: str) -> list[JSON]:
        self.config(stream)
        return [as_item(stored) for stored in await self.store.list_items(stream, group)]

    async def send(self, stream: str, group: str, event: JSON, item_id: str | None = None) -> None:
        """Push a custom event (not stored) to the group's subscribers, or one item's."""
        self.config(stream)
        self._publish(stream, group, item_id, {"type": "event", "event": event})

    # -- fan-out ---------------------------------------------------------------------------

    def join(self, subscriber: Subscriber, stream: str, group: str, item_id: str | None = None) -> None:
        self.config(stream)
        self._rooms[room(stream, group, item_id)].add(subscriber)

    def leave(self, subscriber: Subscriber, stream: str, group: str, item_id: str | None = None) -> None:
        key = room(stream, group, item_id)
        members = self._rooms.get(key)
        if members is not None:
            members.discard(subscriber)
            if not members:
                del self._rooms[key]

    def subscriber_count(self, stream: str, group: str) -> int:
        return len(self._rooms.get(room(stream, group), ()))

    def frame(self, stream: str, group: str, item_id: str | None, event: JSON) -> bytes:
        """Serialise a Motia frame with a timestamp strictly newer than the group's last one."""
        now = int(time.time() * 1000)
        key = (stream, group)
        timestamp = max(now, self._clock.get(key, 0) + 1)
        self._clock[key] = timestamp
        message: JSON = {"timestamp": timestamp, "streamName": stream, "groupId": group}
        if item_id is not None:
            message["id"] = item_id
        message["event"] = event
        return orjson.dumps(message)

    def _publish(self, stream: str, group: str, item_id: str | None, event: JSON) -> None:
        targets = set(self._rooms.get(room(stream, group), ()))
        if item_id is not None:
            targets.update(self._rooms.get(room(stream, group, item_id), ()))
        if not targets:
            return
        frame = self.frame(stream, group, item_id, event)
        for subscriber in targets:
            subscriber.push(frame)


def as_item(stored: StoredItem) -> JSON:
    return {**stored.data, "id": stored.id, "seq": stored.seq}


class Stream(Generic[M]):
    """The typed view of one stream that handlers use: every write is validated by its schema."""

    def __init__(self, config: StreamConfig[M], hub: StreamHub) -> None:
        self.config = config
        self.name = config.name
        self._hub = hub

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
        data = model.model_dump(mode="json", by_alias=True, exclude_none=True)
        item = await self._hub.set(self.name, group_id, item_id, data)
        return Item(item_id, item["seq"], model)

    async def get(self, group_id: str, item_id: str) -> Item[M] | None:
        item = await self._hub.get(self.name, group_id, item_id)
        return None if item is None else self._load(item)

    async def delete(self, group_id: str, item_id: str) -> Item[M] | None:
        item = await self._hub.delete(self.name, group_id, item_id)
        return None if item is None else self._load(item)

    async def get_group(self, group_id: str) -> list[Item[M]]:
        return [self._load(item) for item in await self._hub.list(self.name, group_id)]

    async def send(self, group_id: str, event_type: str, data: Any, item_id: str | None = None) -> None:
        await self._hub.send(self.name, group_id, {"type": event_type, "data": data}, item_id)
