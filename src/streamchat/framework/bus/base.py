"""The event bus interface: publish a topic's event, run every subscriber of it.

Delivery is at-least-once: a handler that raises is retried with backoff up to its
`max_retries`, then the event is dead-lettered. Events that share a group key (for
chat: the conversation) run one after another; different groups run concurrently.
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streamchat.framework.leases import Lease

if TYPE_CHECKING:
    from streamchat.framework.store import Store

JSON = dict[str, Any]

class BusClosed(Exception):
    """The bus takes no more events: the process is shutting down. Apart from other failures, so a
    step can answer "try again" for this alone (a miswired emit or an outage is not a shutdown)."""


@dataclass(slots=True)
class Event:
    """One emitted event as it travels the bus."""

    topic: str
    data: JSON
    trace_id: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    emitted_by: str = ""
    attempt: int = 0
    #: W3C trace context (`traceparent`, `tracestate`) of the emitting span, when tracing is on.
    trace_context: dict[str, str] = field(default_factory=dict)
    #: The lease this delivery runs under, set by the bus; the handler's stream writes carry it.
    lease: Lease | None = None

    def to_record(self) -> JSON:
        """The JSON form queues and journals keep (attempts are counted by the bus, not stored here)."""
        record: JSON = {"topic": self.topic, "data": self.data, "traceId": self.trace_id, "id": self.id,
                        "emittedBy": self.emitted_by}
        if self.trace_context:
            record["traceContext"] = self.trace_context
        return record

    @classmethod
    def from_record(cls, record: JSON) -> Event:
        return cls(record["topic"], record["data"], record["traceId"], record["id"], record["emittedBy"],
                   trace_context=dict(record.get("traceContext") or {}))


EventHandler = Callable[[Event], Awaitable[None]]
DeadLetterSink = Callable[["Subscription", Event, BaseException], Awaitable[None]]


def dead_letter(subscription: Subscription, event: Event, error: BaseException) -> JSON:
    """What is kept of an event given up after every retry, wherever it is kept."""
    return {"eventId": event.id, "topic": event.topic, "step": subscription.name, "data": event.data,
            "traceId": event.trace_id, "attempts": event.attempt + 1, "error": repr(error), "deadAt": time.time()}


@dataclass(frozen=True, slots=True)
class Subscription:
    """A named consumer of a topic with its retry and ordering rules."""

    name: str
    topic: str
    handler: EventHandler
    max_retries: int = 3
    group_by: str | None = None

    def group_key(self, event: Event) -> str:
        """Events with the same key run in order; without a group_by each event is its own group."""
        if self.group_by is not None:
            value = event.data.get(self.group_by)
            if value is not None:
                return f"{self.name}:{value}"
        return f"{self.name}:{event.id}"


class EventBus(ABC):
    """Routes events to subscriptions; backends differ in where the queue lives.

    `journal` is the state store: a bus whose queue is not durable by itself writes each
    pending delivery there, so events accepted before a crash or restart are delivered after it.
    """

    #: Whether the bus keeps its dead letters itself (where every instance reads them), or the
    #: runtime keeps them in the state store.
    keeps_dead_letters: bool = False

    def __init__(self) -> None:
        self.subscriptions: dict[str, list[Subscription]] = {}
        self.dead_letter_sink: DeadLetterSink | None = None
        self.journal: Store | None = None

    def subscribe(self, subscription: Subscription) -> None:
        self.subscriptions.setdefault(subscription.topic, []).append(subscription)

    async def connect(self) -> None:
        """Start consuming."""

    async def disconnect(self, timeout: float = 10.0) -> None:
        """Stop consuming, letting running handlers finish within `timeout` seconds."""

    @abstractmethod
    async def publish(self, event: Event) -> None:
        """Queue an event for every subscription of its topic."""

    async def dead_letters(self) -> list[JSON]:
        """The dead letters the bus keeps itself (see `keeps_dead_letters`), newest first."""
        return []

    async def ping(self) -> None:
        """Raise unless the bus's backend answers now (readiness checks)."""

    def queue_depth(self) -> int:
        """Events accepted here and not yet handled (the `streamchat_event_queue_depth` gauge)."""
        return 0

    def stats(self) -> dict[str, Any]:
        """Counters for operators (`/api/admin/stats`)."""
        return {}
