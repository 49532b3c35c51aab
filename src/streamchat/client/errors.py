"""The one error the client raises for what the server (or the stream) refused."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
import orjson


class StreamchatError(Exception):
    """An API error: the HTTP status, the API's `error` code and its `detail`.

    `status` is None for errors that came over a stream rather than as an HTTP answer: a WebSocket
    join refused with an error event (`code` is then Motia's, e.g. `STREAM_ACCESS_DENIED`), or a
    reply whose connection closed before it finished (`disconnected`).
    """

    def __init__(self, status: int | None, code: str, detail: str, body: dict[str, Any] | None = None) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.body: dict[str, Any] = body if body is not None else {}
        super().__init__(f"{status} {code}: {detail}" if status is not None else f"{code}: {detail}")

    @classmethod
    def from_answer(cls, status: int, content: bytes) -> StreamchatError:
        """Read the API's `{"error", "detail"}` body; anything else (a proxy's page) keeps its text as detail."""
        body: Any = None
        with contextlib.suppress(orjson.JSONDecodeError):
            body = orjson.loads(content)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return cls(status, body["error"], str(body.get("detail", "")), body)
        return cls(status, f"http_{status}", content.decode(errors="replace")[:500])

    @classmethod
    def from_response(cls, response: httpx.Response) -> StreamchatError:
        return cls.from_answer(response.status_code, response.content)
