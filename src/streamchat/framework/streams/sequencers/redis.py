"""The Redis sequencer: one sequence and one fan-out of stream changes across every instance.

Each change is sequenced, logged and published by one Lua script, so its `seq`, its place in
the group's log and its place on the channel agree: every instance receives a group's changes in
seq order, whichever instance wrote them. A change written under a lease is refused by the same
script, before it takes a seq, once that lease belongs to another run (see framework/leases.py).

- `{prefix}:seq:{stream}:{group}`: the group's counter (INCR).
- `{prefix}:log:{stream}:{group}`: a Redis stream of the group's recent changes, entry id
  `<seq>-0`, capped in length and expiring when the group goes quiet. It is what PostgreSQL has
  not caught up with yet (streaming text reaches the store in batches: see writeback.py) and
  what lets an instance fill a gap after a dropped connection.
- `{prefix}:ops:{stream}:{group}`: a hash, writer -> its last change's number and seq. A writer
  sends one change of a group at a time (the hub holds the group's lock), so after a connection
  dropped mid-call it finds out for certain whether Redis ran its change, instead of sending it
  twice; a search of the log would miss it once enough other changes came after it.
- `{prefix}:changes`: the pub/sub channel every instance listens to.

A message is `stream NUL group NUL seq NUL envelope`; the envelope is JSON
`{"k": kind, "i": item id, "p": payload, "f": text field, "r": re-seeded}`, so an instance reads
the header cheaply and parses only changes of groups it serves.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from streamchat.framework.cancellation import stop_task
from streamchat.framework.errors import BrokerUnavailable
from streamchat.framework.leases import Fenced, Lease
from streamchat.framework.redis_link import LEASE_HELD_LUA, TRANSIENT, RedisLink, holder_key
from streamchat.framework.streams.sequencers.base import Sequenced, SequencedKind, Sequencer

logger = logging.getLogger("streamchat.sequencer")

# KEYS: seq, log, ops[, lease, lease holder];
# ARGV: head, envelope, channel, log length, ttl ms, floor, writer, change number[, token].
SEQUENCE_SCRIPT = LEASE_HELD_LUA + """
if KEYS[4] and not lease_held(KEYS[4], KEYS[5], ARGV[9]) then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[6] == '' then return false end
  redis.call('SET', KEYS[1], ARGV[6])
end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-0', 'c', ARGV[2])
redis.call('HSET', KEYS[3], ARGV[7], ARGV[8] .. ' ' .. seq)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
redis.call('PUBLISH', ARGV[3], ARGV[1] .. seq .. '\\0' .. ARGV[2])
return seq
"""


def _parse_envelope(stream: str, group: str, seq: int | None, envelope: bytes) -> Sequenced:
    body = orjson.loads(envelope)
    return Sequenced(stream, group, seq, body["k"], body.get("i"), body.get("p"), body.get("f"), bool(body.get("r")))


class RedisSequencer(Sequencer):
    """Sequences, logs and broadcasts changes; delivers every instance's changes to `on_change`."""

    broadcasts = True

    def __init__(self, link: RedisLink, *, log_length: int = 5000, ttl_seconds: int = 86_400) -> None:
        self.link = link
        self.log_length = log_length
        self.ttl_ms = ttl_seconds * 1000
        self.channel = link.key("changes")
        #: This sequencer among the group's writers (an instance may run more than one).
        self.writer = f"{link.instance_id}/{uuid.uuid4().hex[:8]}"
        self._script = link.client.register_script(SEQUENCE_SCRIPT)
        self._changes = itertools.count(1)
        self._listener: asyncio.Task[None] | None = None
        self._wanted: Callable[[str, str], bool] = lambda stream, group: False
        self._on_change: Callable[[Sequenced], None] = lambda change: None
        self._on_reconnect: Callable[[], Awaitable[None]] | None = None
        self.connected = asyncio.Event()

    def _keys(self, stream: str, group: str) -> list[str]:
        return [self.link.key(kind, stream, group) for kind in ("seq", "log", "ops")]

    # -- writing ---------------------------------------------------------------------------

    async def sequence(
        self, stream: str, group: str, kind: SequencedKind, item_id: str | None, payload: Any,
        field: str | None = None, floor: int | None = None, lease: Lease | None = None,
    ) -> int | None:
        """Sequence, log and broadcast one change in one script; returns its seq.

        None: Redis has no counter for the group (new, expired, or Redis lost its data).
        """
        if "\0" in stream or "\0" in group:
            raise ValueError("stream and group names must not contain NUL characters")
        number = next(self._changes)
        body: dict[str, Any] = {"k": kind, "i": item_id, "p": payload, "f": field}
        if floor is not None:
            body["r"] = 1
        envelope = orjson.dumps(body)
        head = f"{stream}\0{group}\0".encode()
        keys = self._keys(stream, group)
        args: list[Any] = [head, envelope, self.channel, self.log_length, self.ttl_ms,
                           "" if floor is None else floor, self.writer, number]
        if lease is not None:
            keys += [lease.key, holder_key(lease.key)]
            args.append(lease.token)
        attempt = 0
        while True:
            try:
                result = await self._script(keys=keys, args=args)
                if result is not None and int(result) < 0 and lease is not None:
                    raise Fenced(lease, f"{stream}/{group}/{item_id}")
                return None if result is None else int(result)
            except TRANSIENT as error:
                attempt += 1
                # The script may have run before the connection dropped: ask whether it did first.
                seq = await self._applied(keys[2], number)
                if seq is not None:
                    return seq
                if attempt > 1 and not await self._wait_for_redis():
                    raise BrokerUnavailable(f"Redis unreachable (stream change): {type(error).__name__}") from error

    async def _applied(self, ops_key: str, number: int) -> int | None:
        """The seq Redis gave this writer's change `number`, if it ran it."""
        try:
            last = await self.link.call(lambda: self.link.client.hget(ops_key, self.writer), "change lookup")
        except BrokerUnavailable:
            return None
        if last is None:
            return None
        ran, seq = last.split()
        return int(seq) if int(ran) == number else None

    async def _wait_for_redis(self) -> bool:
        try:
            await self.link.call(self.link.client.ping, "ping")
        except BrokerUnavailable:
            return False
        return True

    async def publish_event(self, stream: str, group: str, item_id: str | None, event: Any) -> None:
        """Broadcast a custom event: not sequenced, not logged (Motia's `send`)."""
        envelope = orjson.dumps({"k": "event", "i": item_id, "p": event})
        message = f"{stream}\0{group}\0\0".encode() + envelope
        await self.link.call(lambda: self.link.client.publish(self.channel, message), "publish event")

    # -- reading ---------------------------------------------------------------------------

    async def read_log(self, stream: str, group: str, after: int = 0) -> list[Sequenced]:
        """The group's logged changes with seq > `after`, oldest first."""
        log_key = self._keys(stream, group)[1]
        entries = await self.link.call(
            lambda: self.link.client.xrange(log_key, min=f"{after + 1}-0" if after else "-"), "read log")
        return [_parse_envelope(stream, group, int(entry_id.split(b"-")[0]), fields[b"c"])
                for entry_id, fields in entries]

    async def forget(self, stream: str, group: str) -> None:
        _, log_key, ops_key = self._keys(stream, group)
        await self.link.call(lambda: self.link.client.delete(log_key, ops_key), "forget log")

    async def current_seq(self, stream: str, group: str) -> int | None:
        """The group's counter, or None when Redis has none (new group or lost data)."""
        value = await self.link.call(lambda: self.link.client.get(self._keys(stream, group)[0]), "read seq")
        return None if value is None else int(value)

    # -- listening -------------------------------------------------------------------------

    async def start(
        self, wanted: Callable[[str, str], bool], on_change: Callable[[Sequenced], None],
        on_reconnect: Callable[[], Awaitable[None]],
    ) -> None:
        """Listen for every instance's changes; `wanted(stream, group)` says which ones to parse.

        `on_reconnect` runs after the subscription is re-established following a drop, so the
        hub can fill what it missed.
        """
        self._wanted, self._on_change, self._on_reconnect = wanted, on_change, on_reconnect
        self._listener = asyncio.create_task(self._listen(), name="sequencer-listener")
        try:
            await asyncio.wait_for(self.connected.wait(), self.link.retry_seconds)
        except TimeoutError:
            await self.stop()
            raise BrokerUnavailable(
                f"Redis at {self.link.address} did not answer within {self.link.retry_seconds:g}s") from None

    async def _listen(self) -> None:
        async def subscribed(again: bool) -> None:
            self.connected.set()
            if again and self._on_reconnect is not None:
                logger.info("relay reconnected; filling gaps")
                await self._on_reconnect()

        await self.link.listen(self.channel, self._deliver, subscribed)

    def _deliver(self, data: bytes) -> None:
        stream_end = data.index(b"\0")
        group_end = data.index(b"\0", stream_end + 1)
        stream, group = data[:stream_end].decode(), data[stream_end + 1 : group_end].decode()
        if not self._wanted(stream, group):
            return
        seq_end = data.index(b"\0", group_end + 1)
        raw_seq = data[group_end + 1 : seq_end]
        try:
            change = _parse_envelope(stream, group, int(raw_seq) if raw_seq else None, data[seq_end + 1 :])
            self._on_change(change)
        except Exception:
            logger.exception("could not apply a broadcast change", extra={"stream": stream, "group": group})

    async def stop(self) -> None:
        await stop_task(self._listener)
        self._listener = None
