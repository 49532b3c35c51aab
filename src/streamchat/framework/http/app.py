"""Build an ASGI app from a runtime: one route per API step, the stream socket, clean errors."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from streamchat.framework.access.auth import AccessRules, AuthMiddleware, document_auth
from streamchat.framework.access.limits import BodyLimitMiddleware
from streamchat.framework.bus import BusClosed
from streamchat.framework.config import DEFAULT_MAX_BODY_BYTES, ApiConfig, ApiRequest, ApiResponse
from streamchat.framework.discovery import ApiStep
from streamchat.framework.errors import (
    ErrorFormat,
    ErrorFormats,
    HttpError,
    StorageFull,
    Unavailable,
    describe_validation,
    error_response,
)
from streamchat.framework.http.socket_lane import AppWithSocketLane
from streamchat.framework.http.websocket import DEFAULT_SOCKET_LIMITS, SocketLimits, stream_socket
from streamchat.framework.http.workbench import workbench_router
from streamchat.framework.observability.metrics import HttpMetricsMiddleware, metrics_response, watch_runtime
from streamchat.framework.observability.tracing import extracted, trace_id_of, tracer
from streamchat.framework.runtime import Runtime
from streamchat.framework.text import NUL, nul_fields, problems

logger = logging.getLogger("streamchat.app")

TRACE_HEADER = "x-trace-id"
_PATH_PARAM = re.compile(r"{(\w+)}")


Hook = Callable[[], Awaitable[None]]
#: With keys in use, every path needs one and none needs an admin key.
EVERY_PATH_KEYED = AccessRules()


def build_app(
    runtime: Runtime, *, title: str = "streamchat", version: str = "0",
    on_startup: Sequence[Hook] = (), on_shutdown: Sequence[Hook] = (), shutdown_seconds: float = 20.0,
    socket_limits: SocketLimits = DEFAULT_SOCKET_LIMITS, access: AccessRules = EVERY_PATH_KEYED,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, error_formats: Mapping[str, ErrorFormat] | None = None,
    socket_compression: bool = True,
) -> FastAPI:
    """The ASGI app: start/stop the runtime with the server, route every API step, serve `/` socket.

    `on_startup` hooks run before the runtime starts (e.g. loading a model); `on_shutdown` after it
    has drained its handlers. Every request, including routes the caller adds to the app later,
    goes through the same stack: metrics, then the API-key check (`access` says which paths are
    public or admin-only), then the body size limit; the stream socket at `/` has its own way in,
    through the key check alone (socket_lane.py). `error_formats` gives the routes under a path
    prefix a protocol's own error shape (every error there, the framework's included, is written in it).
    `socket_compression` says whether the server under the app offers WebSockets permessage-deflate.
    """
    formats = ErrorFormats(error_formats)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for hook in on_startup:
            await hook()
        await runtime.start()
        watch_runtime(runtime.hub.total_subscribers, runtime.bus.queue_depth)
        try:
            yield
        finally:
            await runtime.stop(shutdown_seconds)
            for hook in on_shutdown:
                await hook()
            logger.info("stopped cleanly")

    app = AppWithSocketLane(title=title, version=version, lifespan=lifespan)
    app.state.runtime = runtime
    install_error_handlers(app, formats)
    for step in runtime.steps.apis:
        add_api_step(app, runtime, step, formats.for_path(step.config.path))
    app.include_router(workbench_router(runtime))

    @app.get("/api/admin/stats", tags=["admin"])
    async def stats() -> dict[str, Any]:
        """Counters for operators and the benchmark."""
        return {"storeWrites": runtime.store.writes, "storeBytesWritten": runtime.store.bytes_written,
                "subscribers": runtime.hub.total_subscribers(),
                "bus": runtime.bus.stats(), "streams": runtime.hub.memory()}

    @app.get("/api/admin/dead-letters", tags=["admin"])
    async def dead_letters() -> dict[str, Any]:
        """Events whose handler kept failing after every retry."""
        return {"deadLetters": await runtime.dead_letters()}

    @app.get("/metrics", tags=["ops"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"}})
    async def metrics() -> Response:
        """Prometheus metrics of this instance (needs a key, like the API, when keys are set)."""
        return metrics_response()

    async def streams_socket(scope: Scope, receive: Receive, send: Send) -> None:
        await stream_socket(WebSocket(scope, receive, send), runtime.hub, runtime.can_access, socket_limits,
                            socket_compression)

    # The socket's own way in (socket_lane.py): the key check, then the socket, none of the HTTP stack.
    key_check: dict[str, Any] = {"keys": runtime.keys, "public": access.public, "query_token": access.query_token,
                                 "admin_only": access.admin_only, "error_formats": formats}
    app.socket = AuthMiddleware(streams_socket, **key_check)

    if runtime.keys.required:
        document_auth(app, public=access.public, admin_only=access.admin_only, error_formats=formats)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes, by_path={
        step.config.path: step.config.max_body_bytes() for step in runtime.steps.apis
        if step.config.max_body_bytes is not None}, error_formats=formats)
    app.add_middleware(AuthMiddleware, **key_check)
    app.add_middleware(HttpMetricsMiddleware, routes=app.router.routes)

    return app


def add_api_step(app: FastAPI, runtime: Runtime, step: ApiStep, error_format: ErrorFormat) -> None:
    config = step.config
    openapi_extra: dict[str, Any] = {}
    if config.body is not None:
        openapi_extra["requestBody"] = {
            "required": not config.body_optional,
            "content": {"application/json": {"schema": self_contained(config.body.model_json_schema())}},
        }
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in _PATH_PARAM.findall(config.path)]
    if config.query is not None:
        schema = config.query.model_json_schema()
        parameters += [{"name": name, "in": "query", "required": name in schema.get("required", ()),
                        "schema": {key: value for key, value in field.items() if key != "title"},
                        **({"description": field["description"]} if "description" in field else {})}
                       for name, field in schema["properties"].items()]
    if parameters:
        openapi_extra["parameters"] = parameters
    # The errors the framework answers with come first; a step's own model for a status is merged in.
    responses: dict[int | str, dict[str, Any]] = {}
    for status, text in standard_errors(config).items():
        answered = error_format.status(status)
        earlier = responses.get(answered, {}).get("description")
        responses[answered] = {"model": error_format.model, "description": f"{earlier}; {text}" if earlier else text}
    for status, model in config.responses.items():
        responses[status] = ({**responses.get(status, {}), "model": model} if model is not None
                             else {"description": "done; no body"})
    for status, media_type in config.text_responses.items():
        answer = responses.setdefault(status, {})
        # An event stream's events are the protocol's own (documented in prose); a text body is a string.
        answer["content"] = {media_type: {} if media_type == "text/event-stream" else {"schema": {"type": "string"}}}
        if "model" not in answer:
            answer["description"] = f"answered as {media_type}"
    app.add_api_route(
        config.path,
        _endpoint(runtime, step, error_format),
        methods=[config.method],
        name=config.name,
        summary=config.name,
        description=config.description,
        # The step's success status (e.g. 202), so the schema has no 200 the step never sends.
        status_code=min((status for status in config.responses if 200 <= status < 300), default=None),
        responses=responses,
        openapi_extra=openapi_extra or None,
        response_class=JSONResponse,
    )


def self_contained(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its `$defs` written in place: a `#/$defs/...` reference would be read
    against the root of the OpenAPI document, where there are none. (Step models have no cycles.)"""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(value) for value in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def standard_errors(config: ApiConfig) -> dict[int, str]:
    """What any API step may answer besides its handler's own results, so the OpenAPI schema lists it.

    503 when a backend stays unreachable; with a body, 400/413/422 for a bad one; with a rate limit, 429.
    """
    errors = {503: "a backend (state store, Redis) stayed unreachable (see Retry-After), or the server is stopping",
              507: "the state store's disk is full: nothing was stored; it works again once space is freed"}
    if config.body is not None:
        errors |= {400: "the body is not valid JSON", 413: "the body is larger than the limit "
                   "(STREAMCHAT_MAX_BODY_BYTES unless the endpoint has its own)",
                   422: "the body does not match the schema; `fields` names each problem"}
    if config.query is not None:
        errors[422] = "a query parameter is not valid; `fields` names each problem"
    if config.rate_limit is not None:
        errors[429] = f"over the {config.rate_limit!r} rate limit, or too many replies running; see Retry-After"
    return errors


def _endpoint(runtime: Runtime, step: ApiStep, error_format: ErrorFormat) -> Callable[[Request], Any]:
    config = step.config

    def refuse(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
        return error_response(status, error, detail, error_format=error_format, **extra)

    async def endpoint(request: Request) -> Response:
        principal = getattr(request.state, "principal", None)
        if bad_path := [name for name, value in request.path_params.items() if NUL in value]:
            return refuse(404, "not_found", f"{bad_path[0]} {request.path_params[bad_path[0]]!r}: not found")
        if bad_query := [name for name, value in request.query_params.items() if NUL in name + value]:
            detail, fields = problems(bad_query)
            return refuse(422, "validation_error", detail, fields=fields)
        if config.rate_limit is not None:
            caller = principal.key_id if principal is not None else (request.client.host if request.client else "-")
            wait = await runtime.limiter.check(config.rate_limit, caller)
            if wait is not None:
                limit = runtime.limiter.per_minute[config.rate_limit]
                refused = refuse(429, "rate_limited",
                                         f"more than {limit} {config.rate_limit} per minute; retry in {wait:.0f}s")
                refused.headers["Retry-After"] = str(math.ceil(wait))
                return refused
        query: Any = None
        if config.query is not None:
            try:
                query = config.query.model_validate(dict(request.query_params))
            except ValidationError as error:
                detail, fields = describe_validation(error)
                return refuse(422, "validation_error", detail, fields=fields)
        body: Any = None
        if config.body is not None:
            raw = await request.body()
            try:
                payload = {} if config.body_optional and not raw.strip() else orjson.loads(raw)
            except orjson.JSONDecodeError as error:
                return refuse(400, "invalid_json", f"request body is not valid JSON: {error}")
            if bad_fields := nul_fields(payload):
                detail, fields = problems(bad_fields)
                return refuse(422, "validation_error", detail, fields=fields)
            try:
                body = config.body.model_validate(payload)
            except ValidationError as error:
                detail, fields = describe_validation(error)
                return refuse(422, "validation_error", detail, fields=fields)
        # Inside the server span when the ASGI layer traces requests (FastAPI does, given a tracer
        # provider); otherwise this is the request's root and continues the caller's traceparent.
        served = trace.get_current_span().get_span_context().is_valid
        with tracer.start_as_current_span(
            config.name, kind=SpanKind.INTERNAL if served else SpanKind.SERVER,
            context=None if served else extracted(request.headers),
            attributes={"http.request.method": config.method, "http.route": config.path},
        ) as span:
            trace_id = request.headers.get(TRACE_HEADER) or trace_id_of(span)
            span.set_attribute("streamchat.trace_id", trace_id)
            response = await _run(runtime, step, request, body, query, principal, trace_id, error_format)
            span.set_attribute("http.response.status_code", response.status_code)
        return response

    return endpoint


async def _run(runtime: Runtime, step: ApiStep, request: Request, body: Any, query: Any, principal: Any,
               trace_id: str, error_format: ErrorFormat) -> Response:
    """Call the step's handler and turn its result or HttpError into the response."""
    config = step.config
    started = time.perf_counter()
    ctx = runtime.api_context(step, trace_id)
    api_request = ApiRequest(
        body=body,
        path_params=dict(request.path_params),
        query_params=dict(request.query_params),
        headers=dict(request.headers),
        principal=principal,
        query=query,
    )
    response: Response
    try:
        result = await step.handler(api_request, ctx)
    except HttpError as error:
        response = error_response(error.status, error.error, error.detail, error_format=error_format, **error.extra)
        response.headers.update(error.headers)
    else:
        response = _response(result)
    response.headers[TRACE_HEADER] = trace_id
    runtime.monitor.record("api", trace_id, config.name, (time.perf_counter() - started) * 1000,
                           method=config.method, path=request.url.path, status=response.status_code)
    return response


def _response(result: ApiResponse) -> Response:
    if isinstance(result.body, AsyncIterable):
        # A stream of bytes (e.g. a protocol's Server-Sent Events): sent as the handler's iterator yields it.
        return StreamingResponse(result.body, status_code=result.status, headers=result.headers,
                                 media_type=result.media_type)
    json = result.media_type == "application/json"
    return Response(  # Starlette adds `charset=utf-8` to a text/* type
        None if result.status == 204 else orjson.dumps(result.body) if json else result.body,
        status_code=result.status, headers=result.headers,
        media_type=None if result.status == 204 else result.media_type,
    )


def install_error_handlers(app: FastAPI, formats: ErrorFormats) -> None:
    """Every error, including FastAPI's own, comes out in the `{"error", "detail"}` shape (or its path's own)."""

    def shaped(request: Request, status: int, error: str, detail: str) -> JSONResponse:
        return error_response(status, error, detail, error_format=formats.for_path(request.url.path))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response = shaped(request, exc.status_code, codes.get(exc.status_code, "http_error"), detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return shaped(request, 422, "validation_error", "; ".join(parts))

    @app.exception_handler(StorageFull)
    async def storage_full(request: Request, exc: StorageFull) -> JSONResponse:
        logger.error("the state store is full", extra={"path": request.url.path, "error": str(exc)})
        return shaped(request, 507, "insufficient_storage",
                      f"{exc}: nothing of this request was stored; try again once space is freed")

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        logger.warning("a backend is unavailable", extra={"path": request.url.path, "error": str(exc)})
        response = shaped(request, 503, "unavailable", f"{exc}; try again shortly")
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(BusClosed)
    async def shutting_down(request: Request, exc: BusClosed) -> JSONResponse:
        response = shaped(request, 503, "unavailable", "the server is shutting down; try again")
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", extra={"path": request.url.path})
        return shaped(request, 500, "internal_error", "the server failed to handle this request")
