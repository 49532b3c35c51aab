"""In-process event bus (`memory://`), the embedded default.

One asyncio task per active group drains that group's queue in order, so a slow
conversation never holds up another; the task exits when its queue is empty. Each pending
delivery is also written to the journal (the state store) until it is handled, and replayed
at start-up: an event accepted before a crash is still delivered, at least once.

The task takes a lease on its group in the store (see framework/leases.py). A second process on the same
database that replays the journal while this one still runs (a restart that overlaps the old
process's graceful shutdown) takes the lease over; this process's writes are then refused, and
it leaves the group's events to the new holder.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import deque
from typing import Any

from streamchat.framework.bus.base import BusClosed, Event, EventBus, Subscription
from streamchat.framework.cancellation import cancel_until_done
from streamchat.framework.errors import OUTAGES, PermanentError
from streamchat.framework.leases import Fenced, Lease

logger = logging.getLogger("streamchat.bus")

JOURNAL = "_bus_pending"


class MemoryBus(EventBus):
    """Queues live in this process; retries back off exponentially from `retry_delay` seconds."""

    def __init__(self, retry_delay: float = 0.2, max_retry_delay: float = 10.0) -> None:
        super().__init__()
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._queues: dict[str, deque[tuple[Subscription, Event, str]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        self._order = itertools.count()

    async def connect(self) -> None:
        """Replay deliveries a previous run accepted but never finished, in their original order."""
        if self.journal is None:
            return
        by_name = {sub.name: sub for subs in self.subscriptions.values() for sub in subs}
        pending = sorted((await self.journal.state_list(JOURNAL)).items(), key=lambda kv: kv[1]["order"])
        for key, entry in pending:
            subscription = by_name.get(entry["subscription"])
            if subscription is None:
                logger.warning("dropping a journaled event for a step that no longer exists", extra=entry)
                await self.journal.state_delete(JOURNAL, key)
                continue
            event = Event.from_record(entry)
            logger.info("replaying an event accepted before the last shutdown",
                        extra={"topic": event.topic, "step": subscription.name, "trace_id": event.trace_id})
            self._enqueue(subscription, event, key)

    def queue_depth(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    async def publish(self, event: Event) -> None:
        if self._closing:
            raise BusClosed("the event bus is shutting down")
        for subscription in self.subscriptions.get(event.topic, []):
            key = f"{event.id}:{subscription.name}"
            if self.journal is not None:
                await self.journal.state_set(JOURNAL, key, self._journal_entry(subscription, event))
            self._enqueue(subscription, event, key)

    def _journal_entry(self, subscription: Subscription, event: Event) -> dict[str, Any]:
        return {"subscription": subscription.name, **event.to_record(), "order": [time.time_ns(), next(self._order)]}

    def _enqueue(self, subscription: Subscription, event: Event, journal_key: str) -> None:
        group = subscription.group_key(event)
        self._queues.setdefault(group, deque()).append((subscription, event, journal_key))
        if group not in self._workers:
            self._workers[group] = asyncio.create_task(self._drain(group), name=f"bus:{group}")

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        lease = None
        try:
            lease = await self._take_lease(key)
            while queue:
                subscription, event, journal_key = queue[0]
                event.lease = lease
                try:
                    await self._deliver(subscription, event)
                except Fenced as error:
                    logger.warning("another process took this group's events over; leaving them to it",
                                   extra={"group": key, "events": len(queue), "error": str(error)})
                    queue.clear()
                    lease = None
                    return
                if self.journal is not None:
                    await self.journal.state_delete(JOURNAL, journal_key)
                queue.popleft()
        finally:
            if not queue:
                self._queues.pop(key, None)
            self._workers.pop(key, None)
            if lease is not None and self.journal is not None and not queue:
                with contextlib.suppress(Exception):
                    await self.journal.lease_drop(lease)

    async def _take_lease(self, group: str) -> Lease | None:
        """Claim the group in the store, waiting out a store that does not answer yet."""
        if self.journal is None:
            return None
        lease, delay = Lease(group, uuid.uuid4().hex), self.retry_delay
        while True:
            try:
                await self.journal.lease_take(lease)
                return lease
            except Exception as error:
                logger.warning("could not take a group's lease; retrying",
                               extra={"group": group, "delay_s": delay, "error": repr(error)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)

    async def _deliver(self, subscription: Subscription, event: Event) -> None:
        outage_delay = self.retry_delay
        while True:
            try:
                await subscription.handler(event)
                return
            except (asyncio.CancelledError, Fenced):
                raise
            except OUTAGES as error:
                logger.warning("the store cannot take the handler's writes now; running it again later", extra={
                    "topic": event.topic, "step": subscription.name, "trace_id": event.trace_id,
                    "delay_s": outage_delay, "error": str(error)})
                await asyncio.sleep(outage_delay)
                outage_delay = min(outage_delay * 2, self.max_retry_delay)
            except Exception as error:
                if event.attempt >= subscription.max_retries or isinstance(error, PermanentError):
                    logger.error(
                        "event dead-lettered",
                        extra={"topic": event.topic, "step": subscription.name, "trace_id": event.trace_id,
                               "attempts": event.attempt + 1, "error": repr(error)},
                    )
                    if self.dead_letter_sink is not None:
                        await self.dead_letter_sink(subscription, event, error)
                    return
                delay = min(self.retry_delay * 2**event.attempt, self.max_retry_delay)
                event.attempt += 1
                logger.warning(
                    "handler failed, retrying",
                    extra={"topic": event.topic, "step": subscription.name, "trace_id": event.trace_id,
                           "attempt": event.attempt, "delay_s": delay, "error": repr(error)},
                )
                await asyncio.sleep(delay)

    async def disconnect(self, timeout: float = 10.0) -> None:
        self._closing = True
        workers = list(self._workers.values())
        if not workers:
            return
        _, pending = await asyncio.wait(workers, timeout=timeout)
        await cancel_until_done(pending)
