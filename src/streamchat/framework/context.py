"""What every handler receives: emit, typed streams, state, a logger and the trace id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from streamchat.framework.bus import Event, EventBus
from streamchat.framework.config import Emit
from streamchat.framework.leases import Lease
from streamchat.framework.observability.logs import StepLogger
from streamchat.framework.observability.monitor import Monitor
from streamchat.framework.observability.tracing import carrier
from streamchat.framework.services import Services
from streamchat.framework.stops.registry import Stoppable, StopRegistry
from streamchat.framework.store.state import State
from streamchat.framework.streams.hub import StreamHub
from streamchat.framework.streams.stream import Stream, StreamObserver

T = TypeVar("T")


class EmitError(RuntimeError):
    """A step emitted a topic it did not declare, or a payload its subscribers reject."""


class Streams:
    """`ctx.streams.<name>`: attribute access to every declared stream, made on first use.

    In an event handler `lease` is the lease of the delivery: every write carries it (see leases.py).
    """

    def __init__(self, hub: StreamHub, observer: StreamObserver | None = None, lease: Lease | None = None) -> None:
        self._hub = hub
        self._observer = observer
        self._lease = lease
        self._streams: dict[str, Stream[Any]] = {}

    def __getattr__(self, name: str) -> Stream[Any]:
        stream = self._streams.get(name)
        if stream is None:
            config = self._hub.configs.get(name)
            if config is None or name.startswith("__"):
                declared = sorted(n for n in self._hub.configs if not n.startswith("__"))
                raise AttributeError(f"no stream named {name!r}; declared: {declared}")
            stream = self._streams[name] = Stream(config, self._hub, self._observer, self._lease)
        return stream

    def __getitem__(self, name: str) -> Stream[Any]:
        return self.__getattr__(name)


class Emitter:
    """Validates a payload against the topic's declared model and every subscriber's input."""

    def __init__(self, bus: EventBus, inputs: Mapping[str, list[type[BaseModel]]], monitor: Monitor) -> None:
        self.bus = bus
        self.inputs = inputs
        self.monitor = monitor

    async def emit(
        self, step: str, declared: Mapping[str, Emit], topic: str, data: BaseModel | Mapping[str, Any],
        trace_id: str,
    ) -> Event:
        if topic not in declared:
            raise EmitError(f"step {step!r} emitted {topic!r}, which its config does not declare in emits")
        payload = data.model_dump(mode="json", by_alias=True) if isinstance(data, BaseModel) else dict(data)
        model = declared[topic].payload
        try:
            if model is not None and not isinstance(data, model):
                model.model_validate(payload)
            for expected in self.inputs.get(topic, []):
                expected.model_validate(payload)
        except ValidationError as error:
            raise EmitError(f"step {step!r} emitted an invalid {topic!r} payload: {error}") from error
        event = Event(topic=topic, data=payload, trace_id=trace_id, emitted_by=step, trace_context=carrier())
        await self.bus.publish(event)
        self.monitor.record("emit", trace_id, step, topic=topic, eventId=event.id,
                            subscribers=[s.name for s in self.bus.subscriptions.get(topic, [])])
        return event


class Context:
    """Per-run handle on the framework, bound to one step and one trace."""

    def __init__(
        self, *, step: str, trace_id: str, emits: Mapping[str, Emit], emitter: Emitter,
        streams: Streams, state: State, stops: StopRegistry, services: Services | None = None,
    ) -> None:
        self.step = step
        self.trace_id = trace_id
        self.streams = streams
        self.state = state
        self.logger = StepLogger(step, trace_id)
        self._emits = emits
        self._emitter = emitter
        self._stops = stops
        self._services = services or Services()

    async def emit(self, topic: str, data: BaseModel | Mapping[str, Any]) -> None:
        """Validate and publish an event; the trace id travels with it."""
        await self._emitter.emit(self.step, self._emits, topic, data, self.trace_id)

    def service(self, kind: type[T]) -> T:
        """A service the app gave the runtime (see services.py), by its type."""
        return self._services.get(kind)

    @property
    def services(self) -> Services:
        """Every service, to hand on to code that is not a step (a tool's handler)."""
        return self._services

    def stoppable(self, key: str) -> Stoppable[Any]:
        """A scope other handlers can stop with `request_stop(key)`."""
        return Stoppable(self._stops, key)

    async def request_stop(self, key: str, wait: float = 0.0) -> bool:
        """Stop the work running under `key`; True if it was running. Waits up to `wait` s for it to end."""
        return await self._stops.stop(key, wait)
