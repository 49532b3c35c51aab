"""Redis Streams event bus (`redis://host:port/db`): events shared by every instance.

Layout, per subscription (an event step):
- the events go to one of `partitions` Redis streams, `{prefix}:bus:{step}:{n}`, chosen by a
  stable hash of the step's group key (for chat: the conversation), each read through the
  consumer group `workers` (XADD / XREADGROUP / XACK);
- each partition is leased to one instance at a time (`{prefix}:lease:{step}:{n}` holds a token
  new with every taking, renewed every third of `lease_seconds`). Inside its partitions an
  instance runs different groups concurrently and one group's events in order, so a
  conversation's order holds across instances. Leases are balanced: each instance holds about
  partitions / live instances. A handler runs under its partition's lease and its stream writes
  carry it (see framework/leases.py), so one that was paused past the lease cannot write once another
  instance took the partition; it stops, and its event is left to the new holder;
- an instance that dies stops renewing: once its leases expire (the visibility timeout), another
  instance takes the partitions and claims the dead consumer's unacknowledged entries
  (XAUTOCLAIM), which run again;
- every run of an entry counts in `{prefix}:attempts:{step}` under `{partition}:{entry id}` (HINCRBY;
  entry ids are unique per stream only, so two partitions can hand out the same one): retries back off
  exponentially, and past `max_retries` the event goes to the `{prefix}:dead-letters` stream;
- on SIGTERM an instance finishes what it runs within the timeout, then releases its leases,
  handing anything unfinished to the others at once.

Redis may keep nothing on disk. Every accepted event is also journaled in the state store until
it is handled; when Redis comes back empty (a new epoch), one instance re-queues the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from redis.exceptions import ResponseError

from streamchat.framework.bus.base import BusClosed, Event, EventBus, Subscription, dead_letter
from streamchat.framework.cancellation import cancel_until_done, stop_task
from streamchat.framework.errors import OUTAGES, BrokerUnavailable, PermanentError
from streamchat.framework.leases import Fenced, Lease
from streamchat.framework.redis_link import LEASE_HELD_LUA, TRANSIENT, RedisLink, holder_key

logger = logging.getLogger("streamchat.bus")

JOURNAL = "_bus_pending"
CONSUMER_GROUP = "workers"
DEAD_LETTERS_KEPT = 10_000
UNREACHABLE: tuple[type[BaseException], ...] = (BrokerUnavailable, *TRANSIENT)
HANDOVER_POLL_SECONDS = 0.2

# KEYS: lease, holder; ARGV: token, lease ms.
RENEW_SCRIPT = LEASE_HELD_LUA + """
if lease_held(KEYS[1], KEYS[2], ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('SET', KEYS[2], ARGV[1])
  return 1
end
return 0
"""
ACQUIRE_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[1])
  return 1
end
return 0
"""
# The bus's own writes for an entry are fenced like the handler's: counting a run, and acknowledging.
# KEYS: lease, holder, attempts; ARGV: token, attempt field. Returns the run's number, or -1.
COUNT_RUN_SCRIPT = LEASE_HELD_LUA + """
if not lease_held(KEYS[1], KEYS[2], ARGV[1]) then return -1 end
return redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
"""
# KEYS: lease, holder, partition stream, attempts; ARGV: token, consumer group, entry id, attempt field.
ACK_SCRIPT = LEASE_HELD_LUA + """
if not lease_held(KEYS[1], KEYS[2], ARGV[1]) then return 0 end
redis.call('XACK', KEYS[3], ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[3], ARGV[3])
redis.call('HDEL', KEYS[4], ARGV[4])
return 1
"""
# KEYS: lease, holder, dead letters; ARGV: token, entries kept, the letter.
DEAD_LETTER_SCRIPT = LEASE_HELD_LUA + """
if not lease_held(KEYS[1], KEYS[2], ARGV[1]) then return 0 end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'letter', ARGV[3])
return 1
"""
# The holder key stays: a run fenced off by this lease's later holders stays fenced after it is released.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(eq=False)
class Delivery:
    """One entry of a partition stream on its way through a handler."""

    subscription: Subscription
    partition: int
    entry_id: bytes
    event: Event
    journal_key: str
    #: Runs counted so far; an outage (not the handler's fault) makes the next run not count.
    runs: int = 0
    uncounted: bool = False


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
        self._renew = link.client.register_script(RENEW_SCRIPT)
        self._acquire = link.client.register_script(ACQUIRE_SCRIPT)
        self._count_run = link.client.register_script(COUNT_RUN_SCRIPT)
        self._acknowledge = link.client.register_script(ACK_SCRIPT)
        self._bury = link.client.register_script(DEAD_LETTER_SCRIPT)
        self._release = link.client.register_script(RELEASE_SCRIPT)
        self._owned: dict[tuple[str, int], bool] = {}  # (step, partition) -> draining
        self._tokens: dict[tuple[str, int], str] = {}  # (step, partition) -> this instance's lease token
        self._in_flight: dict[tuple[str, int], set[bytes]] = {}
        self._queues: dict[str, deque[Delivery]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._hold_acquisitions_until = 0.0
        self._balanced = False
        self._by_name: dict[str, Subscription] = {}
        #: Partitions whose unacknowledged entries this instance let go of while it held them again:
        #: claimed at the next round instead of after a visibility timeout.
        self._reclaim: set[tuple[str, int]] = set()

    # -- names -----------------------------------------------------------------------------

    def _stream(self, step: str, partition: int) -> str:
        return self.link.key("bus", step, str(partition))

    def _lease(self, step: str, partition: int) -> str:
        return self.link.key("lease", step, str(partition))

    def _lease_keys(self, step: str, partition: int) -> list[str]:
        lease = self._lease(step, partition)
        return [lease, holder_key(lease)]

    def lease_of(self, step: str, partition: int) -> Lease | None:
        """The lease a handler of this partition runs under, while this instance holds it."""
        token = self._tokens.get((step, partition))
        return None if token is None else Lease(self._lease(step, partition), token)

    def _attempts(self, step: str) -> str:
        return self.link.key("attempts", step)

    @staticmethod
    def _attempt_field(delivery: Delivery) -> bytes:
        """An entry's key in the attempts hash: Redis gives ids per stream, so the partition is part of it."""
        return b"%d:%s" % (delivery.partition, delivery.entry_id)

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
            # Every lease went with the data. Owners re-assert theirs at their next renewal; until
            # a whole lease period has passed, taking a free-looking partition could start a
            # second run of work that is still running elsewhere.
            self._hold_acquisitions_until = time.monotonic() + self.lease_seconds
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
            for step, partition in list(self._owned):
                await self._give_up(step, partition)
            await self.link.client.zrem(self.link.key("instances"), self.link.instance_id)
        self._owned.clear()
        self._tokens.clear()

    # -- leases ----------------------------------------------------------------------------

    async def _maintain(self) -> None:
        while True:
            # While partitions change hands, look again soon: events in them wait for the handover.
            settled = not any(self._owned.values()) and self._balanced and not self._reclaim
            await asyncio.sleep(self.lease_seconds / 3 if settled else HANDOVER_POLL_SECONDS)
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
        client, now = self.link.client, time.time()
        instances = self.link.key("instances")
        await client.zadd(instances, {self.link.instance_id: now})
        await client.zremrangebyscore(instances, 0, now - self.lease_seconds)
        alive = max(1, await client.zcard(instances))
        target = math.ceil(self.partitions / alive)
        lease_ms = int(self.lease_seconds * 1000)
        self._balanced = True
        for name in self._by_name:
            mine = [p for (step, p) in self._owned if step == name]
            for partition in mine:
                token = self._tokens.get((name, partition), "")
                if not await self._renew(keys=self._lease_keys(name, partition), args=[token, lease_ms]):
                    self._lose(name, partition)
            if self._closing:
                continue
            mine = [p for (step, p), draining in self._owned.items() if step == name and not draining]
            if len(mine) > target:
                for partition in mine[target:]:
                    self._owned[name, partition] = True  # drain: read no more, release when idle
            for partition in [p for (step, p), draining in self._owned.items() if step == name and draining]:
                if not self._in_flight.get((name, partition)):
                    await self._give_up(name, partition)
                    self._owned.pop((name, partition), None)
                    logger.info("released a bus partition", extra={"step": name, "partition": partition})
            for (step, partition), draining in list(self._owned.items()):
                if step == name and not draining:
                    again = (step, partition) in self._reclaim
                    self._reclaim.discard((step, partition))
                    await self._claim(name, partition, min_idle_ms=0 if again else lease_ms)
            if time.monotonic() < self._hold_acquisitions_until:
                self._balanced = False
                continue
            for partition in range(self.partitions):
                if len([p for (step, p) in self._owned if step == name]) >= target:
                    break
                if (name, partition) in self._owned:
                    continue
                # A token of its own per taking, so runs under an earlier taking are fenced off too.
                token = f"{self.link.instance_id}:{uuid.uuid4().hex[:12]}"
                if await self._acquire(keys=self._lease_keys(name, partition), args=[token, lease_ms]):
                    logger.info("took a bus partition", extra={"step": name, "partition": partition})
                    self._owned[name, partition] = False
                    self._tokens[name, partition] = token
                    await self._claim(name, partition)
            # Settled: nothing being handed over by us, and at least our fair share held.
            held = [p for (step, p), draining in self._owned.items() if step == name and not draining]
            self._balanced = self._balanced and len(held) >= self.partitions // alive

    def stats(self) -> dict[str, Any]:
        return {"instance": self.link.instance_id, "partitionsOwned": len(self._owned),
                "inFlight": sum(len(ids) for ids in self._in_flight.values())}

    async def _give_up(self, step: str, partition: int) -> None:
        token = self._tokens.pop((step, partition), "")
        await self._release(keys=[self._lease(step, partition)], args=[token])

    def _lose(self, step: str, partition: int) -> None:
        """Another instance holds the lease now: stop this partition's work here (it runs there).

        A group's queue holds one partition's deliveries (the partition is a hash of the group key), so
        each worker of the partition is cancelled whole; see `_drain` for what it leaves behind.
        """
        logger.warning("lost a bus partition lease", extra={"step": step, "partition": partition})
        self._owned.pop((step, partition), None)
        self._tokens.pop((step, partition), None)
        for group, queue in list(self._queues.items()):
            if queue and queue[0].subscription.name == step and queue[0].partition == partition:
                worker = self._workers.get(group)
                if worker is not None:
                    worker.cancel()

    async def _claim(self, step: str, partition: int, min_idle_ms: int = 0) -> None:
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
            streams = {self._stream(step, p): ">" for (step, p), draining in self._owned.items() if not draining}
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
                if (delivery.subscription.name, delivery.partition) in self._owned:
                    await self._deliver(delivery)
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
        if where in self._owned and not self._closing:
            self._reclaim.add(where)

    async def _deliver(self, delivery: Delivery) -> None:
        """Run the handler until it succeeds or is dead-lettered; outages (Redis or the store
        unreachable, the store full) only delay it."""
        delay = self.retry_delay
        while True:
            try:
                await self._run(delivery)
                return
            except OUTAGES as error:
                logger.warning("a backend cannot take the handler's writes now; running it again later",
                               extra={"step": delivery.subscription.name, "error": str(error), "delay_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)

    async def _run(self, delivery: Delivery) -> None:
        subscription, event = delivery.subscription, delivery.event
        while True:
            event.lease = self.lease_of(subscription.name, delivery.partition)
            if event.lease is None or not await self._count(delivery, event.lease):
                return  # the partition went to another instance: the entry is its to run
            event.attempt = delivery.runs - 1
            if delivery.runs > subscription.max_retries + 1:
                await self._dead_letter(delivery, RuntimeError(f"delivered {delivery.runs - 1} times without success"))
                return
            try:
                await subscription.handler(event)
            except asyncio.CancelledError:
                raise
            except Fenced as error:
                logger.warning("another instance took this event over; leaving it to that one", extra={
                    "topic": event.topic, "step": subscription.name, "trace_id": event.trace_id,
                    "error": str(error)})
                return
            except OUTAGES:
                delivery.uncounted = True  # not the handler's fault: the next run does not count
                raise
            except Exception as error:
                if event.attempt >= subscription.max_retries or isinstance(error, PermanentError):
                    await self._dead_letter(delivery, error)
                    return
                delay = min(self.retry_delay * 2**event.attempt, self.max_retry_delay)
                logger.warning("handler failed, retrying", extra={
                    "topic": event.topic, "step": subscription.name, "trace_id": event.trace_id,
                    "attempt": event.attempt + 1, "delay_s": delay, "error": repr(error)})
                await asyncio.sleep(delay)
                continue
            await self._ack(delivery)
            return

    async def _count(self, delivery: Delivery, lease: Lease) -> bool:
        """Count a run of the entry under the partition's lease; False if another instance holds it now."""
        if delivery.uncounted:
            delivery.uncounted = False
            return True
        step = delivery.subscription.name
        runs = int(await self.link.call(lambda: self._count_run(
            keys=[*self._lease_keys(step, delivery.partition), self._attempts(step)],
            args=[lease.token, self._attempt_field(delivery)]), "count attempt"))
        if runs < 0:
            return False
        delivery.runs = runs
        return True

    async def _ack(self, delivery: Delivery) -> None:
        """Acknowledge the entry, unless the partition went to another instance (then it is that one's)."""
        step, lease = delivery.subscription.name, self.lease_of(delivery.subscription.name, delivery.partition)
        if lease is None:
            return
        acknowledged = await self.link.call(lambda: self._acknowledge(
            keys=[*self._lease_keys(step, delivery.partition), self._stream(step, delivery.partition),
                  self._attempts(step)],
            args=[lease.token, CONSUMER_GROUP, delivery.entry_id, self._attempt_field(delivery)]), "acknowledge")
        if not acknowledged:
            logger.warning("the partition went to another instance before the entry was acknowledged",
                           extra={"step": step, "partition": delivery.partition})
            return
        if self.journal is not None and delivery.journal_key:
            await self.journal.state_delete(JOURNAL, delivery.journal_key)

    async def _dead_letter(self, delivery: Delivery, error: BaseException) -> None:
        event, subscription = delivery.event, delivery.subscription
        lease = self.lease_of(subscription.name, delivery.partition)
        letter = dead_letter(subscription, event, error)
        buried = lease is not None and await self.link.call(lambda: self._bury(
            keys=[*self._lease_keys(subscription.name, delivery.partition), self.link.key("dead-letters")],
            args=[lease.token, DEAD_LETTERS_KEPT, orjson.dumps(letter)]), "dead letter")
        if not buried:
            return  # the partition went to another instance: the entry is its to run or give up
        logger.error("event dead-lettered", extra={
            "topic": event.topic, "step": subscription.name, "trace_id": event.trace_id,
            "attempts": event.attempt + 1, "error": repr(error)})
        if self.dead_letter_sink is not None:
            await self.dead_letter_sink(subscription, event, error)
        await self._ack(delivery)

    async def dead_letters(self) -> list[dict[str, Any]]:
        entries = await self.link.call(
            lambda: self.link.client.xrevrange(self.link.key("dead-letters"), count=1000), "list dead letters")
        return [orjson.loads(fields[b"letter"]) for _, fields in entries]
