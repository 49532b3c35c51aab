"""The Workbench's read API: the flow drawn from step configs, records, traces, stream groups.

Live data (records, stream items) reaches the page over the stream WebSocket; these routes
serve what the page needs to start and to look things up.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from streamchat.framework.errors import ErrorBody
from streamchat.framework.observability.monitor import WORKBENCH_STREAM
from streamchat.framework.runtime import Runtime


def flow(runtime: Runtime) -> dict[str, Any]:
    """Nodes and edges: API step → topic → event step → stream, as the configs declare them."""
    steps: list[dict[str, Any]] = []
    for api in runtime.steps.apis:
        config = api.config
        steps.append({
            "name": config.name, "type": "api", "method": config.method, "path": config.path,
            "emits": [emit.topic for emit in config.emitted], "writes": list(config.writes),
            "description": config.description,
            "body": config.body.model_json_schema() if config.body is not None else None,
        })
    for event in runtime.steps.events:
        event_config = event.config
        steps.append({
            "name": event_config.name, "type": "event", "subscribes": list(event_config.subscribes),
            "emits": [emit.topic for emit in event_config.emitted], "writes": list(event_config.writes),
            "maxRetries": event_config.max_retries, "groupBy": event_config.group_by,
            "description": event_config.description, "input": event_config.input.model_json_schema(),
        })
    topics = sorted({topic for step in steps for topic in step["emits"] + step.get("subscribes", [])})
    streams = sorted(name for name in runtime.hub.configs if not name.startswith("__"))
    return {"steps": steps, "topics": topics, "streams": streams}


#: Bad parameters come out in the ErrorBody shape (see install_error_handlers), not FastAPI's default one.
INVALID: dict[int | str, dict[str, Any]] = {422: {"model": ErrorBody, "description": "a parameter is not valid"}}


def workbench_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/api/workbench", tags=["workbench"])

    @router.get("/flow")
    async def get_flow() -> dict[str, Any]:
        """Steps, topics and streams, for drawing the flow graph."""
        return flow(runtime)

    @router.get("/records", responses=INVALID)
    async def get_records(limit: int = 500) -> dict[str, Any]:
        """The most recent records (API calls, emits, runs, stream writes), oldest first."""
        records = list(runtime.monitor.records)
        return {"records": records[-max(1, min(limit, len(records) or 1)):] if records else []}

    @router.get("/traces", responses=INVALID)
    async def get_traces(limit: int = 100) -> dict[str, Any]:
        """Recent traces, newest first."""
        return {"traces": runtime.monitor.traces(max(1, min(limit, 1000)))}

    @router.get("/traces/{trace_id}", responses={
        **INVALID, 404: {"model": ErrorBody, "description": "no such trace among the recent ones"}})
    async def get_trace(trace_id: str) -> dict[str, Any]:
        """Every record of one trace, in order, with timings."""
        records = runtime.monitor.trace(trace_id)
        if not records:
            raise HTTPException(404, f"traceId {trace_id!r}: no such trace among the recent ones")
        return {"traceId": trace_id, "records": records}

    @router.get("/streams")
    async def get_streams() -> dict[str, Any]:
        """Each stream with the ids of its groups (most recent first)."""
        names = sorted(name for name in runtime.hub.configs if name != WORKBENCH_STREAM)
        return {"streams": [{"name": name, "groups": await runtime.store.list_groups(name, 200)} for name in names]}

    return router
