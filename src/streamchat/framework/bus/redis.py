"""Redis Streams event bus (`redis://host:port/db`): events shared by every instance.

Layout, per subscription (an event step):
- the events go to one of `partitions` Redis streams, `{prefix}:bus:{step}:{n}`, chosen by a
  stable hash of the step's group key (for chat: the conversation), each read through the
  consumer group `workers` (XADD / XREADGROUP / XACK);
- each partition is leased to one instance at a time, balanced across the live instances
  (redis_partitions.py). Inside its partitions an instance runs different groups concurrently and
  one group's events in order, so a conversation's order holds across instances. A handler runs
  under its partition's lease and its stream writes carry it (see framework/leases.py), so one
  that was paused past the lease cannot write once another instance took the partition; it
  stops, and its event is left to the new holder;
- an instance that dies stops renewing: once its leases expire (the visibility timeout), another
  instance takes the partitions and claims the dead consumer's unacknowledged entries
  (XAUTOCLAIM), which run again;
- each run of an entry is counted, retried, acknowledged or dead-lettered under the lease
  (redis_runs.py);
- on SIGTERM an instance finishes what it runs within the timeout, then releases its leases,
  handing anything unfinished to the others at once.

Redis may keep nothing on disk. Every accepted event is also journaled in the state store until
it is handled; when Redis comes back empty (a new epoch), one instance re-queues the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections import deque
from functools import partial
from typing import Any

import orjson
from redis.exceptions import ResponseError

from streamchat.framework.bus.base import BusClosed, Event, EventBus, Subscription
from streamchat.framework.bus.redis_partitions import PartitionLeases, stream_key
from streamchat.framework.bus.redis_runs import CONSUMER_GROUP, JOURNAL, Delivery, Runs
from streamchat.framework.cancellation import cancel_until_done, stop_task
from streamchat.framework.errors import BrokerUnavailable
from streamchat.framework.redis_link import TRANSIENT, RedisLink

logger = logging.getLogger("streamchat.bus")

UNREACHABLE: tuple[type[BaseException], ...] = (BrokerUnavailable, *TRANSIENT)
HANDOVER_POLL_SECONDS = 0.2

class RedisBus(EventBus):
    """At-least-once delivery through Redis Streams, ordered per group across instances."""

    keeps_dead_letters = True

    def __init__(self, link: RedisLink, *, partitions: int = 16, lease_seconds: float = 10.0,
                 retry_delay: float = 0.2, max_retry_delay: float = 10.0, block_ms: int = 500) -> None:
        super().__init__()
        self.link = link
        self.partitions = partitions
        self.lease_seconds = lease_seconds
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.block_ms = block_ms
        self.leases = PartitionLeases(link, partitions=partitions, lease_seconds=lease_seconds)
        self.runs = Runs(self, link, self.leases, retry_delay=retry_delay, max_retry_delay=max_retry_delay)
        self._in_flight: dict[tuple[str, int], set[bytes]] = {}
        self._queues: dict[str, deque[Delivery]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._by_name: dict[str, Subscription] = {}

    # -- names -----------------------------------------------------------------------------

    def _stream(self, step: str, partition: int) -> str:
        return stream_key(self.link, step, partition)

    def partition_of(self, subscription: Subscription, event: Event) -> int:
        return zlib.crc32(subscription.group_key(event).encode()) % self.partitions

    def subscribe(self, subscription: Subscription) -> None:
        super().subscribe(subscription)
        self._by_name[subscription.name] = subscription

    # -- life ------------------------------------------------------------------------------

    async def connect(self) -> None:
        await self._ensure_groups()
        await self._check_epoch()
        await self._rebalance()
        self._tasks = [asyncio.create_task(self._maintain(), name="bus-leases"),
                       asyncio.create_task(self._read(), name="bus-reader")]

    async def _ensure_groups(self) -> None:
        for name in self._by_name:
            for partition in range(self.partitions):
                with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
                    await self.link.call(partial(self.link.client.xgroup_create, self._stream(name, partition),
                                                 CONSUMER_GROUP, id="0", mkstream=True), "create group")

    async def _check_epoch(self) -> None:
        """If Redis lost its data, re-create the consumer groups; one instance re-queues the journal."""
        changed, created = await self.link.epoch()
        if changed:
            logger.warning("Redis lost its data; re-creating the bus's consumer groups")
            self.leases.pause_acquisitions()
            await self._ensure_groups()
        if created and self.journal is not None:
            pending = await self.journal.state_list(JOURNAL)
            if pending:
                logger.warning("re-queueing events accepted before Redis lost its data",
                               extra={"events": len(pending)})
            for key, entry in sorted(pending.items(), key=lambda kv: kv[1]["order"]):
                subscription = self._by_name.get(entry["subscription"])
                if subscription is None:
                    await self.journal.state_delete(JOURNAL, key)
                    continue
                await self._add(subscription, entry, key)

    def queue_depth(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    async def publish(self, event: Event) -> None:
        if self._closing:
            raise BusClosed("the event bus is shutting down")
        for subscription in self.subscriptions.get(event.topic, []):
            key = f"{event.id}:{subscription.name}"
            entry = {"subscription": subscription.name, **event.to_record(), "order": [time.time_ns(), 0]}
            if self.journal is not None:
                await self.journal.state_set(JOURNAL, key, entry)
            try:
                await self._add(subscription, entry, key)
            except BrokerUnavailable:
                if self.journal is not None:
                    with contextlib.suppress(Exception):
                        await self.journal.state_delete(JOURNAL, key)
                raise

    async def _add(self, subscription: Subscription, entry: dict[str, Any], journal_key: str) -> None:
        event = Event.from_record(entry)
        stream = self._stream(subscription.name, self.partition_of(subscription, event))
        fields: dict[Any, Any] = {"e": orjson.dumps(entry), "j": journal_key}
        await self.link.call(lambda: self.link.client.xadd(stream, fields), "publish event")

    async def disconnect(self, timeout: float = 10.0) -> None:
        """Stop reading, let running handlers finish within `timeout`, hand the rest back."""
        self._closing = True
        maintainer, reader = self._tasks
        await stop_task(reader)
        # Leases stay renewed while running handlers finish: no one else may start them meanwhile.
        workers = list(self._workers.values())
        if workers:
            _, pending = await asyncio.wait(workers, timeout=timeout)
            if pending:
                logger.warning("handing unfinished events back to the other instances",
                               extra={"running": len(pending)})
            await cancel_until_done(pending)
        await stop_task(maintainer)
        with contextlib.suppress(*UNREACHABLE):
            await self.leases.release_all()

    # -- leases ----------------------------------------------------------------------------

    async def _maintain(self) -> None:
        while True:
            # While partitions change hands, look again soon: events in them wait for the handover.
            await asyncio.sleep(self.lease_seconds / 3 if self.leases.settled else HANDOVER_POLL_SECONDS)
            try:
                if not self._closing:
                    await self._check_epoch()
                await self._rebalance()
            except asyncio.CancelledError:
                raise
            except UNREACHABLE as error:
                logger.warning("could not renew bus leases", extra={"error": repr(error)})
            except Exception:
                logger.exception("bus lease maintenance failed")

    async def _rebalance(self) -> None:
        await self.leases.rebalance(self._by_name, closing=self._closing, lost=self._lose, busy=self._busy,
                                    claim=self._claim)

    def stats(self) -> dict[str, Any]:
        return {"instance": self.link.instance_id, "partitionsOwned": len(self.leases.held),
                "partitionsInAll": self.leases.partitions * len(self._by_name),
                "inFlight": sum(len(ids) for ids in self._in_flight.values())}

    def _busy(self, step: str, partition: int) -> bool:
        return bool(self._in_flight.get((step, partition)))

    def _lose(self, step: str, partition: int) -> None:
        """Another instance holds the lease now: stop this partition's work here (it runs there).

        A group's queue holds one partition's deliveries (the partition is a hash of the group key), so
        each worker of the partition is cancelled whole; see `_drain` for what it leaves behind.
        """
        for group, queue in list(self._queues.items()):
            if queue and queue[0].subscription.name == step and queue[0].partition == partition:
                worker = self._workers.get(group)
                if worker is not None:
                    worker.cancel()

    async def _claim(self, step: str, partition: int, min_idle_ms: int) -> None:
        """Take over entries read but not acknowledged (by a dead owner, or stranded here).

        Right after a lease is taken every such entry is ours (min idle 0); later rounds only
        pick up entries idle longer than the visibility timeout.
        """
        subscription = self._by_name[step]
        stream, cursor = self._stream(step, partition), "0-0"
        while True:
            cursor, entries, *_ = await self.link.client.xautoclaim(
                stream, CONSUMER_GROUP, self.link.instance_id, min_idle_time=min_idle_ms, start_id=cursor, count=100)
            for entry_id, fields in entries:
                if fields and self._dispatch(subscription, partition, entry_id, fields):
                    logger.info("claimed an unacknowledged event", extra={"step": step, "partition": partition})
            if cursor in (b"0-0", "0-0"):
                return

    # -- reading and running ---------------------------------------------------------------

    async def _read(self) -> None:
        delay = 0.05
        while True:
            streams = {self._stream(step, p): ">" for step, p in self.leases.reading()}
            if not streams:
                await asyncio.sleep(0.1)
                continue
            try:
                replies = await self.link.client.xreadgroup(
                    CONSUMER_GROUP, self.link.instance_id, streams, count=100, block=self.block_ms)
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                await self._ensure_groups()
                continue
            except TRANSIENT as error:
                logger.warning("bus read failed; retrying", extra={"error": repr(error), "delay_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            for stream, entries in replies or []:
                _, step, partition = stream.decode().rsplit(":", 2)
                subscription = self._by_name.get(step)
                if subscription is None:
                    continue
                for entry_id, fields in entries:
                    self._dispatch(subscription, int(partition), entry_id, fields)

    def _dispatch(
        self, subscription: Subscription, partition: int, entry_id: bytes, fields: dict[bytes, bytes],
    ) -> bool:
        """Queue an entry behind its group's earlier ones; False if it is already on its way here."""
        in_flight = self._in_flight.setdefault((subscription.name, partition), set())
        if entry_id in in_flight:
            return False
        entry = orjson.loads(fields[b"e"])
        event = Event.from_record(entry)
        delivery = Delivery(subscription, partition, entry_id, event, fields.get(b"j", b"").decode())
        in_flight.add(entry_id)
        group = subscription.group_key(event)
        self._queues.setdefault(group, deque()).append(delivery)
        if group not in self._workers:
            self._workers[group] = asyncio.create_task(self._drain(group), name=f"bus:{group}")
        return True

    async def _drain(self, group: str) -> None:
        """Run a group's deliveries in order. Cancelled (its partition lost, the instance stopping), it
        lets go of every delivery still queued: they stay unacknowledged in Redis, where the
        partition's holder claims them in the stream's order, this instance too if it holds the
        partition again. Kept here, they would run out of order, or again after another instance
        had run them, and their ids in flight would keep a draining partition from being released.
        """
        queue = self._queues[group]
        try:
            while queue:
                delivery = queue[0]
                if (delivery.subscription.name, delivery.partition) in self.leases.held:
                    await self.runs.deliver(delivery)
                queue.popleft()
                self._in_flight[delivery.subscription.name, delivery.partition].discard(delivery.entry_id)
        finally:
            while queue:  # cut short: the delivery under way and those behind it
                self._let_go(queue.popleft())
            self._queues.pop(group, None)
            self._workers.pop(group, None)

    def _let_go(self, delivery: Delivery) -> None:
        """Leave an unfinished delivery to whoever holds its partition, this instance included."""
        where = (delivery.subscription.name, delivery.partition)
        self._in_flight[where].discard(delivery.entry_id)
        if where in self.leases.held and not self._closing:
            self.leases.reclaim.add(where)

    async def dead_letters(self) -> list[dict[str, Any]]:
        entries = await self.link.call(
            lambda: self.link.client.xrevrange(self.link.key("dead-letters"), count=1000), "list dead letters")
        return [orjson.loads(fields[b"letter"]) for _, fields in entries]
