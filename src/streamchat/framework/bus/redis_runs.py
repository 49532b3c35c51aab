"""One entry of a partition on its way through its handler: each run counted, a failed one retried
with backoff, and at the end acknowledged or dead-lettered. The bus's own writes for an entry are
fenced like the handler's: they happen only while this instance holds the partition's lease, so
a run that lost its partition leaves the entry, whole, to the new holder.

Every run of an entry counts in `{prefix}:attempts:{step}` under `{partition}:{entry id}`
(HINCRBY; entry ids are unique per stream only, so two partitions can hand out the same one), so
a run that crashed its instance still counts; past `max_retries` the event goes to the
`{prefix}:dead-letters` stream. An outage (Redis or the store away, the store full) is not the
handler's fault: the run is tried again later and does not count.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import orjson

from streamchat.framework.bus.base import Event, EventBus, Subscription, dead_letter
from streamchat.framework.bus.redis_partitions import PartitionLeases, stream_key
from streamchat.framework.errors import OUTAGES, PermanentError
from streamchat.framework.leases import Fenced, Lease
from streamchat.framework.redis_link import LEASE_HELD_LUA, RedisLink

logger = logging.getLogger("streamchat.bus")

JOURNAL = "_bus_pending"
CONSUMER_GROUP = "workers"
DEAD_LETTERS_KEPT = 10_000

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


class Runs:
    """Runs deliveries of the bus's entries (`bus` lends its journal and dead-letter sink)."""

    def __init__(self, bus: EventBus, link: RedisLink, leases: PartitionLeases, *, retry_delay: float,
                 max_retry_delay: float) -> None:
        self.bus = bus
        self.link = link
        self.leases = leases
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._count_run = link.client.register_script(COUNT_RUN_SCRIPT)
        self._acknowledge = link.client.register_script(ACK_SCRIPT)
        self._bury = link.client.register_script(DEAD_LETTER_SCRIPT)

    def _attempts(self, step: str) -> str:
        return self.link.key("attempts", step)

    @staticmethod
    def _attempt_field(delivery: Delivery) -> bytes:
        """An entry's key in the attempts hash: Redis gives ids per stream, so the partition is part of it."""
        return b"%d:%s" % (delivery.partition, delivery.entry_id)

    async def deliver(self, delivery: Delivery) -> None:
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
            event.lease = self.leases.lease_of(subscription.name, delivery.partition)
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
            keys=[*self.leases.keys(step, delivery.partition), self._attempts(step)],
            args=[lease.token, self._attempt_field(delivery)]), "count attempt"))
        if runs < 0:
            return False
        delivery.runs = runs
        return True

    async def _ack(self, delivery: Delivery) -> None:
        """Acknowledge the entry, unless the partition went to another instance (then it is that one's)."""
        step, lease = delivery.subscription.name, self.leases.lease_of(delivery.subscription.name, delivery.partition)
        if lease is None:
            return
        acknowledged = await self.link.call(lambda: self._acknowledge(
            keys=[*self.leases.keys(step, delivery.partition), stream_key(self.link, step, delivery.partition),
                  self._attempts(step)],
            args=[lease.token, CONSUMER_GROUP, delivery.entry_id, self._attempt_field(delivery)]), "acknowledge")
        if not acknowledged:
            logger.warning("the partition went to another instance before the entry was acknowledged",
                           extra={"step": step, "partition": delivery.partition})
            return
        if self.bus.journal is not None and delivery.journal_key:
            await self.bus.journal.state_delete(JOURNAL, delivery.journal_key)

    async def _dead_letter(self, delivery: Delivery, error: BaseException) -> None:
        event, subscription = delivery.event, delivery.subscription
        lease = self.leases.lease_of(subscription.name, delivery.partition)
        letter = dead_letter(subscription, event, error)
        buried = lease is not None and await self.link.call(lambda: self._bury(
            keys=[*self.leases.keys(subscription.name, delivery.partition), self.link.key("dead-letters")],
            args=[lease.token, DEAD_LETTERS_KEPT, orjson.dumps(letter)]), "dead letter")
        if not buried:
            return  # the partition went to another instance: the entry is its to run or give up
        logger.error("event dead-lettered", extra={
            "topic": event.topic, "step": subscription.name, "trace_id": event.trace_id,
            "attempts": event.attempt + 1, "error": repr(error)})
        if self.bus.dead_letter_sink is not None:
            await self.bus.dead_letter_sink(subscription, event, error)
        await self._ack(delivery)
