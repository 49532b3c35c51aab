"""ChatKit's error shape for every answer under /chatkit.

ChatKit's protocol has one error shape, the stream's `error` event `{"type": "error", "code",
"message", "allow_retry"}`; an answer refused before any event (a bad request, an unknown thread) is
that same object as a JSON body, with streamchat's own `error` code and `detail` (and `fields`, one
per field at fault) beside it, so both kinds of client read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from streamchat.framework import ErrorFormat

PREFIX = "/chatkit"
#: Statuses worth trying again later (limits, a backend away).
RETRYABLE = frozenset({429, 503, 507})


class ChatKitError(BaseModel):
    """An error as ChatKit's `error` event, with streamchat's code and detail."""

    model_config = ConfigDict(extra="allow")

    type: Literal["error"]
    code: str
    message: str
    allow_retry: bool
    error: str
    detail: str


def error_event(message: str, *, allow_retry: bool) -> dict[str, Any]:
    """The stream's `error` event with a message of our own (ChatKit's `custom` code shows it)."""
    return {"type": "error", "code": "custom", "message": message, "allow_retry": allow_retry}


def _write(status: int, error: str, detail: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    return {**error_event(detail, allow_retry=status in RETRYABLE), "error": error, "detail": detail, **extra}


CHATKIT_ERRORS = ErrorFormat(_write, ChatKitError)
