"""The one error shape every HTTP failure uses: `{"error": <code>, "detail": <text>}`."""

from __future__ import annotations

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


def error_response(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail, **extra}, status_code=status)


def error_doc(description: str) -> dict[str, Any]:
    """An OpenAPI response in the ErrorBody shape, for a route documented after it was made (no `model=` then)."""
    return {"description": description, "content": {"application/json": {"schema": ErrorBody.model_json_schema()}}}


def describe_validation(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> tuple[str, list[Any]]:
    """Turn pydantic's error list into one readable sentence naming each field, plus the list."""
    fields = []
    parts = []
    for entry in error.errors(include_url=False, include_context=False, include_input=False):
        location = ".".join(str(part) for part in (*prefix, *entry["loc"])) or "body"
        fields.append({"field": location, "message": entry["msg"], "type": entry["type"]})
        parts.append(f"{location}: {entry['msg']}")
    return "; ".join(parts), fields
