"""The streamchat server: the chat steps on the framework, the configured models, and the chat page."""

from __future__ import annotations

import functools
import logging
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

from streamchat import __version__
from streamchat.catalog import catalog_for
from streamchat.conversations.earlier_records import take_in_earlier_records
from streamchat.conversations.replies.journal import ReplyJournals
from streamchat.framework import (
    NUL,
    AccessRules,
    ApiKeys,
    ErrorBody,
    Runtime,
    Services,
    SocketLimits,
    backends_from_urls,
    build_app,
    configure_logging,
    configure_tracing,
    discover,
    error_response,
    sse_response,
)
from streamchat.llm.model_set import ModelSet
from streamchat.protocols.chatkit_errors import CHATKIT_ERRORS
from streamchat.protocols.chatkit_errors import PREFIX as CHATKIT_PREFIX
from streamchat.protocols.openai_errors import OPENAI_ERRORS
from streamchat.protocols.openai_errors import PREFIX as OPENAI_PREFIX
from streamchat.settings import Settings, get_settings
from streamchat.tools import discover_tools
from streamchat.tools.client_tools import add_client_tools
from streamchat.tools.mcp.servers import McpServers
from streamchat.tools.mcp.tool_source import serve_tools

logger = logging.getLogger("streamchat.app")

STATIC_DIR = Path(str(files("streamchat.web").joinpath("static")))
#: Reachable without a key: liveness, and the page shell (no data; it asks for a key itself).
PUBLIC_PATHS = frozenset({"/healthz", "/", "/favicon.ico"})
#: What spans every user's data needs an admin key (STREAMCHAT_ADMIN_KEYS) when keys are in use.
ADMIN_PREFIXES = ("/api/admin/", "/api/workbench/records", "/api/workbench/traces", "/api/workbench/streams")
#: Where the API key may come as `?authToken=`: the SSE endpoints (EventSource cannot set headers).
ACCESS = AccessRules(
    public=lambda path: path in PUBLIC_PATHS or path.startswith("/static/"),
    admin_only=lambda path: path.startswith(ADMIN_PREFIXES),
    query_token=lambda path: path.startswith(("/api/conversations/", "/chatkit/threads/")) and path.endswith("/events"),
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Everything `streamchat serve` runs, configured from the environment."""
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    steps = discover(settings.steps_package)
    tools = discover_tools(settings.tool_packages)
    backends = backends_from_urls(
        settings.state_url, settings.bus_url, retry_delay=settings.retry_delay,
        retry_seconds=settings.backend_retry_seconds, prefix=settings.redis_prefix,
        partitions=settings.bus_partitions, lease_seconds=settings.bus_lease_seconds,
    )
    keys = ApiKeys.from_config(settings.api_keys, settings.api_keys_file, settings.admin_keys,
                               settings.admin_keys_file)
    catalog = catalog_for(backends.store)
    catalog.on_first_use = functools.partial(take_in_earlier_records, backends.store)
    models = ModelSet.from_settings(settings)
    add_client_tools(tools, models.client_tools)
    mcp_servers = McpServers(models.mcp_servers)
    serve_tools(mcp_servers, tools)
    # What handlers reach as ctx.service(...): no module globals between the app and its steps.
    services = Services(settings, catalog, models, ReplyJournals(several_instances=settings.several_instances),
                        tools, mcp_servers)
    runtime = Runtime(steps, backends.store, backends.bus, backends.link, keys,
                      rate_limits={"messages": settings.messages_per_minute},
                      delta_window=settings.delta_window_ms / 1000,
                      replay_budget=settings.replay_memory_mb * 1024 * 1024, idle_groups_kept=settings.idle_groups_kept,
                      services=services)

    async def start_models() -> None:
        # The server listens while the models load; /readyz says what is still loading meanwhile.
        models.start()
        logger.info("models started", extra={"models": models.names(), "default": models.default,
                                             "state": settings.state_url.split(":")[0]})

    async def stop_models() -> None:
        await models.close()

    shutdown = [stop_models, mcp_servers.close]
    if settings.otlp_endpoint:
        tracing = configure_tracing(settings.otel_service_name, endpoint=settings.otlp_endpoint)
        collector = urlsplit(settings.otlp_endpoint)
        logger.info("tracing to an OTLP collector", extra={"collector": f"{collector.hostname}:{collector.port}"})

        async def flush_traces() -> None:
            tracing.shutdown()

        shutdown.append(flush_traces)

    # MCP servers: the start waits for each one's first attempt (at most its timeout_seconds); one that
    # fails is logged and tried again meanwhile, its tools unavailable (GET /api/tools says why).
    app = build_app(runtime, title="streamchat", version=__version__,
                    on_startup=[start_models, mcp_servers.start], on_shutdown=shutdown,
                    shutdown_seconds=settings.shutdown_seconds,
                    socket_limits=SocketLimits(outbox=settings.ws_outbox, joins=settings.ws_max_joins,
                                               messages_per_second=settings.ws_messages_per_second),
                    socket_compression=settings.ws_compression,
                    access=ACCESS, max_body_bytes=settings.max_body_bytes,
                    error_formats={OPENAI_PREFIX: OPENAI_ERRORS, CHATKIT_PREFIX: CHATKIT_ERRORS})

    @app.get("/", include_in_schema=False)
    async def chat_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/conversations/{conversationId}/events", tags=["conversations"],
             response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "item / delta / delete frames, `id:` = seq"},
                        404: {"model": ErrorBody, "description": "another API key's conversation"},
                        422: {"model": ErrorBody, "description": "a parameter is not valid"}})
    async def conversation_events(request: Request, conversationId: str) -> Response:
        """Server-Sent Events of one conversation; resume exactly with `Last-Event-ID` or `?lastEventId=`."""
        principal = getattr(request.state, "principal", None)
        if NUL in conversationId or not await runtime.can_access("conversation", conversationId, None, principal):
            return error_response(404, "not_found", f"conversationId {conversationId!r}: no such conversation")
        return await sse_response(request, runtime.hub, "conversation", conversationId, settings.sse_ping_seconds)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "a dependency is unreachable"}})
    async def readyz() -> JSONResponse:
        """Readiness: every dependency (store, Redis, the model) is ready; 503 naming the one that is not."""
        checks = {**await runtime.readiness(), "model": models.readiness()}
        ready = all(state == "ok" for state in checks.values())
        return JSONResponse({"status": "ready" if ready else "unavailable", "checks": checks},
                            status_code=200 if ready else 503)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.state.models = models
    return app
