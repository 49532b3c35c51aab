"""In-process event bus (`memory://`), the embedded default.

One asyncio task per active group drains that group's queue in order, so a slow
conversation never holds up another; the task exits when its queue is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from ..errors import PermanentError
from .base import Event, EventBus, Subscription

logger = logging.getLogger("streamchat.bus")


class MemoryBus(EventBus):
    """Queues live in this process; retries back off exponentially from `retry_delay` seconds."""

    def __init__(self, retry_delay: float = 0.2, max_retry_delay: float = 10.0) -> None:
        super().__init__()
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._queues: dict[str, deque[tuple[Subscription, Event]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._closing = False

    async def publish(self, event: Event) -> None:
        if self._closing:
            raise RuntimeError("event bus is shutting down")
        for subscription in self.subscriptions.get(event.topic, []):
            key = subscription.group_key(event)
            self._queues.setdefault(key, deque()).append((subscription, event))
            if key not in self._workers:
                self._workers[key] = asyncio.create_task(self._drain(key), name=f"bus:{key}")

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                subscription, event = queue[0]
                await self._deliver(subscription, event)
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
