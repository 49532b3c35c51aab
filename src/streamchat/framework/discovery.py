"""Discovery of step modules, and the start-up wiring check.

Every module of the steps package is imported; adding a step is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from streamchat.framework.config import ApiConfig, ApiRequest, ApiResponse, Emit, EventConfig, StreamConfig
from streamchat.framework.context import Context

ApiHandler = Callable[[ApiRequest[Any], Context], Awaitable[ApiResponse]]
EventHandlerFn = Callable[[Any, Context], Awaitable[None]]
FailureHandlerFn = Callable[[Any, Context, BaseException], Awaitable[None]]


@dataclass(frozen=True)
class ApiStep:
    config: ApiConfig
    handler: ApiHandler
    module: str


@dataclass(frozen=True)
class EventStep:
    config: EventConfig
    handler: EventHandlerFn
    module: str
    on_failure: FailureHandlerFn | None = None


@dataclass
class StepSet:
    """Everything discovered in a steps package."""

    apis: list[ApiStep] = field(default_factory=list)
    events: list[EventStep] = field(default_factory=list)
    streams: dict[str, StreamConfig[Any]] = field(default_factory=dict)

    def emitters(self) -> list[tuple[str, Emit]]:
        pairs = [(step.config.name, emit) for step in self.apis for emit in step.config.emitted]
        pairs += [(step.config.name, emit) for step in self.events for emit in step.config.emitted]
        return pairs


class WiringError(RuntimeError):
    """The steps do not fit together; raised at start-up, naming the steps involved."""


def discover(package: str) -> StepSet:
    """Import every module of `package` and collect the steps and streams they declare."""
    root = importlib.import_module(package)
    steps = StepSet()
    for info in sorted(pkgutil.iter_modules(root.__path__, prefix=f"{package}."), key=lambda i: i.name):
        _collect(importlib.import_module(info.name), steps)
    check_wiring(steps)
    return steps


def _collect(module: ModuleType, steps: StepSet) -> None:
    config = getattr(module, "config", None)
    handler = getattr(module, "handler", None)
    if isinstance(config, StreamConfig):
        if config.name in steps.streams:
            raise WiringError(f"stream {config.name!r} is declared twice (second in {module.__name__})")
        steps.streams[config.name] = config
    elif isinstance(config, ApiConfig | EventConfig):
        if handler is None or not callable(handler):
            raise WiringError(f"step {config.name!r} ({module.__name__}) has a config but no async handler")
        if isinstance(config, ApiConfig):
            steps.apis.append(ApiStep(config, handler, module.__name__))
        else:
            steps.events.append(EventStep(config, handler, module.__name__, getattr(module, "on_failure", None)))


def check_wiring(steps: StepSet) -> None:
    """Fail loudly on emits nobody hears, subscriptions nobody feeds, or mismatched payloads."""
    problems: list[str] = []
    names = [s.config.name for s in steps.apis] + [s.config.name for s in steps.events]
    problems += [f"step name {name!r} is used twice" for name in sorted({n for n in names if names.count(n) > 1})]
    subscribers: dict[str, list[EventStep]] = {}
    for event_step in steps.events:
        for topic in event_step.config.subscribes:
            subscribers.setdefault(topic, []).append(event_step)
    emitted_topics: set[str] = set()
    for emitter, emit in steps.emitters():
        emitted_topics.add(emit.topic)
        listeners = subscribers.get(emit.topic)
        if not listeners:
            problems.append(f"step {emitter!r} emits {emit.topic!r} but no step subscribes to it")
            continue
        for listener in listeners:
            if emit.payload is not None and not _same_shape(emit.payload, listener.config.input):
                problems.append(
                    f"step {emitter!r} emits {emit.topic!r} as {emit.payload.__name__} but step "
                    f"{listener.config.name!r} expects {listener.config.input.__name__}"
                )
    configs: list[ApiConfig | EventConfig] = [s.config for s in steps.apis] + [s.config for s in steps.events]
    for config in configs:
        problems += [f"step {config.name!r} writes stream {name!r}, which no StreamConfig declares"
                     for name in config.writes if name not in steps.streams]
    for topic, listeners in subscribers.items():
        if topic not in emitted_topics:
            who = ", ".join(repr(s.config.name) for s in listeners)
            problems.append(f"step {who} subscribes to {topic!r} but no step emits it")
    if problems:
        raise WiringError("steps are miswired:\n  - " + "\n  - ".join(problems))


def _same_shape(emitted: type[BaseModel], expected: type[BaseModel]) -> bool:
    """Same class, a subclass, or two models whose JSON schemas agree once titles are ignored."""
    if issubclass(emitted, expected):
        return True
    return bool(_untitled(emitted.model_json_schema()) == _untitled(expected.model_json_schema()))


def _untitled(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {key: _untitled(value) for key, value in schema.items() if key != "title"}
    if isinstance(schema, list):
        return [_untitled(value) for value in schema]
    return schema
