"""In-process event bus (`memory://`), the embedded default.

One asyncio task per active group drains that group's queue in order, so a slow
conversation never holds up another; the task exits when its queue is empty. Each pending
delivery is also written to the journal (the state store) until it is handled, and replayed
at start-up: an event accepted before a crash is still delivered, at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from typing import Any

from ..errors import PermanentError
from .base import Event, EventBus, Subscription

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
            raise RuntimeError("event bus is shutting down")
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
        try:
            while queue:
                subscription, event, journal_key = queue[0]
                await self._deliver(subscription, event)
                if self.journal is not None:
                    await self.journal.state_delete(JOURNAL, journal_key)
                queue.popleft()
        finally:
            if not queue:
                self._queues.pop(key, None)
            self._workers.pop(key, None)

    async def _deliver(self, subscription: Subscription, event: Event) -> None:
        while True:
            try:
                await subscription.handler(event)
                return
            except asyncio.CancelledError:
                raise
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
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
