"""What the Workbench shows: a rolling record of API calls, emits, handler runs and stream writes.

Records are kept in memory (the last few thousand) and pushed live as custom events on the
internal `__workbench` stream, so the Workbench page watches them over the same WebSocket as
the chat. Per-token work stays O(1): appends are counted, and only the first one is recorded.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from streamchat.framework.config import StreamConfig
from streamchat.framework.streams.hub import StreamHub
from streamchat.framework.streams.stream import StreamObserver

WORKBENCH_STREAM = "__workbench"
LOG_GROUP = "log"
RECORDS_KEPT = 5_000


class WorkbenchRecord(BaseModel):
    """Schema of the internal stream; records travel as custom events and are never stored."""

    kind: str


workbench_stream = StreamConfig(name=WORKBENCH_STREAM, schema=WorkbenchRecord)


class Monitor:
    def __init__(self, hub: StreamHub, limit: int = RECORDS_KEPT) -> None:
        self.hub = hub
        self.records: deque[dict[str, Any]] = deque(maxlen=limit)

    def record(self, kind: str, trace_id: str, step: str | None, duration_ms: float | None = None,
               **detail: Any) -> None:
        entry = {"t": round(time.time() * 1000, 3), "kind": kind, "traceId": trace_id, "step": step, **detail}
        if duration_ms is not None:
            entry["durationMs"] = round(duration_ms, 3)
        self.records.append(entry)
        self.hub.notify(WORKBENCH_STREAM, LOG_GROUP, {"type": "record", "data": entry})

    def stream_observer(self, trace_id: str, step: str) -> StreamObserver:
        """Records stream writes of one handler run; counts appends instead of recording each."""
        appended: dict[str, int] = {}

        def observe(op: str, stream: str, group: str, item_id: str, info: Mapping[str, Any]) -> None:
            if op == "append":
                count = appended.get(item_id, 0) + 1
                appended[item_id] = count
                if count == 1:
                    self.record("stream", trace_id, step, op="first-delta", stream=stream, group=group, id=item_id)
                return
            deltas = appended.pop(item_id, 0)
            detail = {"deltas": deltas} if deltas else {}
            self.record("stream", trace_id, step, op=op, stream=stream, group=group, id=item_id, **info, **detail)

        return observe

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        return [record for record in self.records if record["traceId"] == trace_id]

    def traces(self, limit: int = 100) -> list[dict[str, Any]]:
        """One line per recent trace, newest first: where it started, what ran, how long it took."""
        summaries: dict[str, dict[str, Any]] = {}
        for record in self.records:
            summary = summaries.get(record["traceId"])
            if summary is None:
                summary = summaries[record["traceId"]] = {
                    "traceId": record["traceId"], "start": record["t"], "end": record["t"], "root": None,
                    "steps": [], "records": 0, "failed": False}
            summary["end"] = max(summary["end"], record["t"] + record.get("durationMs", 0))
            summary["records"] += 1
            if record["kind"] == "api" and summary["root"] is None:
                summary["root"] = f"{record.get('method')} {record.get('path')}"
            if record["step"] and record["step"] not in summary["steps"]:
                summary["steps"].append(record["step"])
            summary["failed"] = summary["failed"] or record["kind"] == "dead" or record.get("status") == "failed"
        ordered = sorted(summaries.values(), key=lambda summary: summary["start"], reverse=True)[:limit]
        for summary in ordered:
            summary["durationMs"] = round(summary["end"] - summary["start"], 3)
        return ordered
