"""Step configs, discovery of step modules, and the start-up wiring check.

A step is a module with a `config` and (for API and event steps) an async `handler`.
Every module of the steps package is imported; adding a step is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from .auth import Principal
    from .context import Context, State

M = TypeVar("M", bound=BaseModel)
Body = TypeVar("Body")
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


@dataclass(frozen=True, slots=True)
class Emit:
    """A topic a step emits, with the payload model it promises to send."""

    topic: str
    payload: type[BaseModel] | None = None


def _emits(values: Sequence[str | Emit]) -> tuple[Emit, ...]:
    return tuple(value if isinstance(value, Emit) else Emit(value) for value in values)


@dataclass(frozen=True)
class StreamConfig(Generic[M]):
    """A typed stream: items of `schema`, grouped by a group id, keyed by an item id.

    `can_access`, when API keys are in use, decides whether a caller may watch a group (Motia's
    `canAccess`); without it any authenticated caller may.
    """

    name: str
    schema: type[M]
    can_access: Callable[[AccessRequest], Awaitable[bool]] | None = None


@dataclass(frozen=True)
class AccessRequest:
    """A caller asking to watch a group (or one item) of a stream."""

    group_id: str
    item_id: str | None
    principal: Principal | None
    state: State


@dataclass(frozen=True)
class ApiConfig:
    """An HTTP endpoint. `body` validates the JSON body; `responses` documents status → model;
    `writes` names the streams it changes (drawn in the Workbench flow)."""

    name: str
    method: HttpMethod
    path: str
    body: type[BaseModel] | None = None
    emits: Sequence[str | Emit] = ()
    writes: Sequence[str] = ()
    responses: dict[int, type[BaseModel]] = field(default_factory=dict)
    description: str = ""
    #: A rate-limit bucket this endpoint counts against (e.g. "messages"), per caller per minute.
    rate_limit: str | None = None

    @property
    def emitted(self) -> tuple[Emit, ...]:
        return _emits(self.emits)


@dataclass(frozen=True)
class EventConfig:
    """A consumer of topics. Events sharing the `group_by` field's value run in order."""

    name: str
    subscribes: Sequence[str]
    input: type[BaseModel]
    emits: Sequence[str | Emit] = ()
    writes: Sequence[str] = ()
    max_retries: int = 3
    group_by: str | None = None
    description: str = ""

    @property
    def emitted(self) -> tuple[Emit, ...]:
        return _emits(self.emits)


@dataclass(frozen=True)
class ApiRequest(Generic[Body]):
    """What an API handler receives: the validated body (None without a body model) and the request parts."""

    body: Body
    path_params: dict[str, str]
    query_params: dict[str, str]
    headers: dict[str, str]
    #: The authenticated caller when API keys are in use; None when the service runs open.
    principal: Principal | None = None


@dataclass(frozen=True)
class ApiResponse:
    """What an API handler returns."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


ApiHandler = Callable[[ApiRequest[Any], "Context"], Awaitable[ApiResponse]]
EventHandlerFn = Callable[[Any, "Context"], Awaitable[None]]
FailureHandlerFn = Callable[[Any, "Context", BaseException], Awaitable[None]]


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
