"""Structured JSON logging: one object a line, always carrying the step and trace_id."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import orjson

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Render a record as JSON, with any `extra=` fields as top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO") -> None:
    """Send every streamchat log line to stderr as JSON (idempotent)."""
    root = logging.getLogger("streamchat")
    root.setLevel(level.upper())
    if not any(getattr(h, "_streamchat", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._streamchat = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False


class StepLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger bound to one step run: every line carries `step` and `trace_id`."""

    def __init__(self, step: str, trace_id: str, **fields: Any) -> None:
        super().__init__(logging.getLogger(f"streamchat.step.{step}"), {"step": step, "trace_id": trace_id})
        self.extra = {"step": step, "trace_id": trace_id, **fields}

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra: Mapping[str, object] = self.extra or {}
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return msg, kwargs
