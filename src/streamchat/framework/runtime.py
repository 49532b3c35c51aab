"""The runtime: steps, store, bus and streams wired together, and contexts made for each run."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ValidationError

from streamchat.framework.access.auth import ApiKeys, Principal
from streamchat.framework.access.limits import RateLimiter
from streamchat.framework.bus import Event, EventBus, Subscription
from streamchat.framework.bus.base import dead_letter
from streamchat.framework.config import AccessRequest, Emit
from streamchat.framework.context import Context, Emitter, Streams
from streamchat.framework.discovery import ApiStep, EventStep, StepSet
from streamchat.framework.errors import PermanentError
from streamchat.framework.leases import Fenced, Lease
from streamchat.framework.observability.metrics import DEAD_LETTERED, HANDLER_RETRIES, HANDLER_RUNS
from streamchat.framework.observability.monitor import WORKBENCH_STREAM, Monitor, workbench_stream
from streamchat.framework.observability.tracing import extracted, tracer
from streamchat.framework.redis_link import RedisLink
from streamchat.framework.services import Services
from streamchat.framework.stops.registry import StopRegistry
from streamchat.framework.stops.router import StopRouter
from streamchat.framework.store import Store
from streamchat.framework.store.state import State
from streamchat.framework.streams.fanout import DELTA_WINDOW_SECONDS
from streamchat.framework.streams.hub import IDLE_GROUPS_KEPT, StreamHub
from streamchat.framework.streams.replay import REPLAY_BUDGET_BYTES
from streamchat.framework.streams.sequencers.redis import RedisSequencer

logger = logging.getLogger("streamchat.runtime")

DEAD_LETTERS = "_dead_letters"


class Runtime:
    """Owns the backends; `start`/`stop` bracket the server's life."""

    def __init__(self, steps: StepSet, store: Store, bus: EventBus, link: RedisLink | None = None,
                 keys: ApiKeys | None = None, rate_limits: Mapping[str, int] | None = None,
                 delta_window: float = DELTA_WINDOW_SECONDS, replay_budget: int = REPLAY_BUDGET_BYTES,
                 idle_groups_kept: int = IDLE_GROUPS_KEPT, services: Services | None = None) -> None:
        self.steps = steps
        self.services = services or Services()
        self.keys = keys or ApiKeys()
        self.limiter = RateLimiter(rate_limits or {}, link)
        self.store = store
        self.bus = bus
        self.link = link
        configs = {**steps.streams, WORKBENCH_STREAM: workbench_stream}
        self.hub = StreamHub(store, configs, None if link is None else RedisSequencer(link),
                             delta_window=delta_window, replay_budget=replay_budget, idle_groups_kept=idle_groups_kept)
        self.monitor = Monitor(self.hub)
        self.state = State(store)
        self.stops = StopRegistry()
        self.stop_router = None if link is None else StopRouter(link, self.stops)
        inputs: dict[str, list[type[BaseModel]]] = {}
        for step in steps.events:
            for topic in step.config.subscribes:
                inputs.setdefault(topic, []).append(step.config.input)
        self.emitter = Emitter(bus, inputs, self.monitor)
        for step in steps.events:
            for topic in step.config.subscribes:
                bus.subscribe(Subscription(
                    name=step.config.name, topic=topic, handler=self._runner(step),
                    max_retries=step.config.max_retries, group_by=step.config.group_by,
                ))
        self._event_steps = {step.config.name: step for step in steps.events}
        bus.dead_letter_sink = self._dead_letter
        bus.journal = store

    async def start(self) -> None:
        await self.store.connect()
        await self.hub.start()
        if self.stop_router is not None:
            await self.stop_router.start()
        await self.bus.connect()

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish or hand back running handlers within `timeout`, persist streaming text, close."""
        await self.bus.disconnect(timeout)
        await self.hub.close()
        if self.stop_router is not None:
            await self.stop_router.stop()
        await self.store.disconnect()
        if self.link is not None:
            await self.link.close()

    async def can_access(self, stream: str, group: str, item_id: str | None, principal: Principal | None) -> bool:
        """May this caller watch this group? Always, when the service runs without keys."""
        if not self.keys.required:
            return True
        if principal is None:
            return False
        if stream == WORKBENCH_STREAM:
            return principal.admin
        config = self.hub.configs.get(stream)
        if config is None or config.can_access is None:
            return True
        return await config.can_access(AccessRequest(group, item_id, principal, self.state))

    async def readiness(self) -> dict[str, str]:
        """Each dependency's state: "ok" or the error; for /readyz."""
        checks: dict[str, str] = {}
        probes = [("store", self.store.ping)]
        if self.link is not None:
            probes.append(("redis", self.link.ping))
        for name, probe in probes:
            try:
                await probe()
                checks[name] = "ok"
            except Exception as error:
                checks[name] = f"unavailable: {type(error).__name__}"
        return checks

    def context(self, name: str, emits: tuple[Emit, ...], trace_id: str, lease: Lease | None = None) -> Context:
        return Context(
            step=name, trace_id=trace_id, emits={emit.topic: emit for emit in emits},
            emitter=self.emitter, streams=Streams(self.hub, self.monitor.stream_observer(trace_id, name), lease),
            state=self.state, stops=self.stops, services=self.services,
        )

    def api_context(self, step: ApiStep, trace_id: str) -> Context:
        return self.context(step.config.name, step.config.emitted, trace_id)

    def _runner(self, step: EventStep) -> Any:
        config = step.config

        async def handle(event: Event) -> None:
            try:
                data = config.input.model_validate(event.data)
            except ValidationError as error:
                raise PermanentError(f"payload does not match {config.input.__name__}: {error}") from error
            ctx = self.context(config.name, config.emitted, event.trace_id, event.lease)
            started = time.perf_counter()
            if event.attempt:
                HANDLER_RETRIES.labels(config.name).inc()
            ctx.logger.info("handler started", extra={"topic": event.topic, "attempt": event.attempt})
            self.monitor.record("run", event.trace_id, config.name, status="started", topic=event.topic,
                                attempt=event.attempt, eventId=event.id)
            try:
                await step.handler(data, ctx)
            except Fenced as error:
                HANDLER_RUNS.labels(config.name, "fenced").inc()
                elapsed = (time.perf_counter() - started) * 1000
                ctx.logger.warning("handler fenced off: another run holds its event now",
                                   extra={"topic": event.topic, "attempt": event.attempt, "error": str(error)})
                self.monitor.record("run", event.trace_id, config.name, elapsed, status="fenced", topic=event.topic,
                                    attempt=event.attempt, eventId=event.id)
                raise
            except Exception as error:
                HANDLER_RUNS.labels(config.name, "failed").inc()
                elapsed = (time.perf_counter() - started) * 1000
                ctx.logger.exception("handler failed", extra={"topic": event.topic, "attempt": event.attempt})
                self.monitor.record("run", event.trace_id, config.name, elapsed, status="failed", topic=event.topic,
                                    attempt=event.attempt, eventId=event.id, error=repr(error)[:300],
                                    willRetry=event.attempt < config.max_retries)
                raise
            HANDLER_RUNS.labels(config.name, "finished").inc()
            elapsed = (time.perf_counter() - started) * 1000
            ctx.logger.info("handler finished", extra={"topic": event.topic, "duration_ms": round(elapsed, 2)})
            self.monitor.record("run", event.trace_id, config.name, elapsed, status="finished", topic=event.topic,
                                attempt=event.attempt, eventId=event.id)

        async def run(event: Event) -> None:
            """The handler run as a consumer span continuing the emitter's trace."""
            with tracer.start_as_current_span(
                config.name, kind=SpanKind.CONSUMER, context=extracted(event.trace_context),
                attributes={"messaging.destination.name": event.topic, "messaging.message.id": event.id,
                            "streamchat.attempt": event.attempt, "streamchat.trace_id": event.trace_id},
            ):
                await handle(event)

        return run

    async def _dead_letter(self, subscription: Subscription, event: Event, error: BaseException) -> None:
        """Keep the event for the admin endpoint (unless the bus keeps it), then let the step clean up
        (its `on_failure`)."""
        DEAD_LETTERED.labels(subscription.name).inc()
        self.monitor.record("dead", event.trace_id, subscription.name, topic=event.topic, eventId=event.id,
                            attempts=event.attempt + 1, error=repr(error)[:300])
        if not self.bus.keeps_dead_letters:
            await self.store.state_set(DEAD_LETTERS, event.id, dead_letter(subscription, event, error))
        step = self._event_steps.get(subscription.name)
        if step is None or step.on_failure is None:
            return
        ctx = self.context(step.config.name, step.config.emitted, event.trace_id, event.lease)
        try:
            await step.on_failure(step.config.input.model_validate(event.data), ctx, error)
        except Exception:
            ctx.logger.exception("on_failure hook failed", extra={"topic": event.topic})

    async def dead_letters(self) -> list[dict[str, Any]]:
        """Events given up after every retry, newest first, from wherever they are kept."""
        if self.bus.keeps_dead_letters:
            return await self.bus.dead_letters()
        letters = await self.store.state_list(DEAD_LETTERS)
        return sorted(letters.values(), key=lambda letter: letter["deadAt"], reverse=True)
