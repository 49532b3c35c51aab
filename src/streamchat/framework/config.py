"""What a step or a stream declares: its config, and what an API handler receives and returns.

A step is a module with a `config` and (for API and event steps) an async `handler`; a stream is
a module with a `StreamConfig`. discovery.py finds them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel

#: A request body larger than this is refused with 413 unless the app or the step sets its own limit.
DEFAULT_MAX_BODY_BYTES = 256 * 1024

if TYPE_CHECKING:
    from streamchat.framework.access.auth import Principal
    from streamchat.framework.store.state import State

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
    `canAccess`); without it any authenticated caller may. `summary` names the fields the
    Workbench shows of each write (an item's status, say), so its trace says what changed.
    `sticky_events` names the group events (`Stream.send_event`) whose latest one is stored and
    ends every new SSE snapshot (and follows every WebSocket sync), so a fresh watcher learns it.
    Items are written without their null fields, except those `kept_nulls` names (by their wire
    name) when the writer gave the null: there a null says something an absent field does not.
    """

    name: str
    schema: type[M]
    can_access: Callable[[AccessRequest], Awaitable[bool]] | None = None
    summary: tuple[str, ...] = ()
    sticky_events: tuple[str, ...] = ()
    kept_nulls: tuple[str, ...] = ()


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
    #: An empty request body is taken as `{}` (a body whose every field is optional may be left out).
    body_optional: bool = False
    #: Validates the query string (each field one parameter); the handler gets it as `req.query`.
    query: type[BaseModel] | None = None
    emits: Sequence[str | Emit] = ()
    writes: Sequence[str] = ()
    #: None for a status answered without a body (204).
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    #: A status that may answer text of this media type instead of JSON (e.g. a Markdown export).
    text_responses: dict[int, str] = field(default_factory=dict)
    description: str = ""
    #: A rate-limit bucket this endpoint counts against (e.g. "messages"), per caller per minute.
    rate_limit: str | None = None
    #: This endpoint's own body limit instead of the app's (read when the app is built).
    max_body_bytes: Callable[[], int] | None = None

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
    #: The validated query string, for a step that declares `query`.
    query: Any = None


@dataclass(frozen=True)
class ApiResponse:
    """What an API handler returns."""

    status: int
    #: JSON-serialisable; a `str` when `media_type` is a text type the step declared in `text_responses`;
    #: an async iterable of `bytes` to stream the body (e.g. `text/event-stream`) as it is produced.
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"
