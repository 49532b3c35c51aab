"""The error shape every HTTP failure uses, `{"error": <code>, "detail": <text>}`, unless the
routes under a path prefix speak a protocol with its own (an `ErrorFormat` for that prefix)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse


class ErrorBody(BaseModel):
    """The documented error body, for OpenAPI."""

    error: str
    detail: str


class HttpError(Exception):
    """Raise from an API handler to answer with a clean 4xx instead of a 500."""

    def __init__(self, status: int, error: str, detail: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class PermanentError(Exception):
    """A handler failure that retrying cannot fix (bad payload); dead-lettered at once."""


class Unavailable(RuntimeError):
    """A backend the request needs (PostgreSQL, Redis) stayed unreachable past its retry window: a 503."""


class StoreUnavailable(Unavailable):
    """The state store could not be reached."""


class StorageFull(Exception):
    """The state store has no room left (its disk is full): a 507 until space returns. Writes are
    refused whole, so nothing is half-written, and the next write after space returns succeeds."""


class BrokerUnavailable(Unavailable):
    """Redis (the event bus or the stream sequencer) could not be reached."""


#: A backend that cannot take writes for now (unreachable, or out of room). A handler failing with
#: one of these is run again once it may succeed, without using up its retries: the event waits
#: out the outage instead of being dead-lettered during it.
OUTAGES: tuple[type[Exception], ...] = (Unavailable, StorageFull)


@dataclass(frozen=True)
class ErrorFormat:
    """How a protocol writes an error: `write(status, code, detail, extra such as fields)` → body,
    `model` documents that body in OpenAPI, and `renumbered` the statuses it answers as another
    (OpenAI answers a bad parameter with 400 where streamchat says 422)."""

    write: Callable[[int, str, str, Mapping[str, Any]], dict[str, Any]]
    model: type[BaseModel]
    renumbered: Mapping[int, int] = field(default_factory=dict)

    def status(self, status: int) -> int:
        return self.renumbered.get(status, status)

    def doc(self, description: str) -> dict[str, Any]:
        """An OpenAPI response of this shape, for a route documented after it was made (no `model=` then)."""
        return {"description": description, "content": {"application/json": {"schema": self.model.model_json_schema()}}}


#: streamchat's own shape.
PLAIN_ERRORS = ErrorFormat(lambda status, error, detail, extra: {"error": error, "detail": detail, **extra}, ErrorBody)


class ErrorFormats:
    """Which error format a path's answers use: the longest matching prefix's, else the plain one."""

    def __init__(self, by_prefix: Mapping[str, ErrorFormat] | None = None) -> None:
        self._by_prefix = sorted((by_prefix or {}).items(), key=lambda entry: -len(entry[0]))

    def for_path(self, path: str) -> ErrorFormat:
        return next((format for prefix, format in self._by_prefix if path.startswith(prefix)), PLAIN_ERRORS)

    def body(self, path: str, status: int, error: str, detail: str, **extra: Any) -> tuple[int, dict[str, Any]]:
        format = self.for_path(path)
        return format.status(status), format.write(status, error, detail, extra)


def error_response(status: int, error: str, detail: str, *, error_format: ErrorFormat = PLAIN_ERRORS,
                   **extra: Any) -> JSONResponse:
    return JSONResponse(error_format.write(status, error, detail, extra), status_code=error_format.status(status))


def describe_validation(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> tuple[str, list[Any]]:
    """Turn pydantic's error list into one readable sentence naming each field, plus the list."""
    fields = []
    parts = []
    for entry in error.errors(include_url=False, include_context=False, include_input=False):
        location = ".".join(str(part) for part in (*prefix, *entry["loc"])) or "body"
        fields.append({"field": location, "message": entry["msg"], "type": entry["type"]})
        parts.append(f"{location}: {entry['msg']}")
    return "; ".join(parts), fields
