"""OpenAI's error shape for every route under /v1/, so its SDKs raise their own error classes
with a readable message: `{"error": {"message", "type", "param", "code"}}`.

OpenAI answers a bad parameter with 400, not 422; `param` names the first field at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from streamchat.framework import ErrorFormat, HttpError

PREFIX = "/v1/"

_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "rate_limit_error"}


class OpenAiErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAiError(BaseModel):
    """An error as OpenAI's API writes it."""

    error: OpenAiErrorDetail


def _write(status: int, error: str, detail: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    fields = extra.get("fields") or []
    param = fields[0]["field"] if fields else extra.get("param")
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    code = "invalid_api_key" if status == 401 else error
    return {"error": {"message": detail, "type": kind, "param": param, "code": code}}


OPENAI_ERRORS = ErrorFormat(_write, OpenAiError, {422: 400})


def invalid(param: str, message: str, status: int = 400, code: str = "invalid_value") -> HttpError:
    """A bad parameter, in the shape above (`param` names it)."""
    return HttpError(status, code, f"{param}: {message}", param=param)


def not_found(param: str, value: str, what: str) -> HttpError:
    return HttpError(404, "not_found", f"{param}: no {what} with id {value!r}", param=param)
