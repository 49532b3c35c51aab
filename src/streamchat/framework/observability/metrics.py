"""Prometheus metrics of the framework: requests, sockets, subscribers, the event queue, handler runs.

Metrics live in prometheus-client's process-wide registry, as is the convention: one server
process is one scrape target (each instance of a deployment is scraped on its own). Gauges that
describe a runtime (subscribers, queue depth) read it when scraped, so nothing is kept in step.
Apps add their own metrics the same way (see streamchat/chat/reply_telemetry.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "streamchat_http_requests_total", "HTTP requests answered, by route template and status.",
    ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "streamchat_http_request_duration_seconds", "Time to answer an HTTP request (to the end of the body).",
    ["method", "route"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
WEBSOCKETS = Gauge("streamchat_websocket_connections", "Open stream WebSocket connections.")
SUBSCRIBERS = Gauge("streamchat_stream_subscribers", "Stream subscriptions (WebSocket joins and SSE) right now.")
QUEUE_DEPTH = Gauge("streamchat_event_queue_depth", "Events this instance has accepted and not yet finished handling.")
HANDLER_RUNS = Counter("streamchat_handler_runs_total", "Event handler runs, by step and outcome.",
                       ["step", "outcome"])
HANDLER_RETRIES = Counter("streamchat_handler_retries_total", "Event handler runs that were retries.", ["step"])
DEAD_LETTERED = Counter("streamchat_dead_letters_total", "Events given up after every retry.", ["step"])

#: Requests that matched no route share one label, so scanners cannot blow up the series count.
UNMATCHED = "unmatched"


def watch_runtime(subscribers: Callable[[], int], queue_depth: Callable[[], int]) -> None:
    """Let the scrape read the live runtime (the last one started in this process)."""
    SUBSCRIBERS.set_function(subscribers)
    QUEUE_DEPTH.set_function(queue_depth)


def metrics_response() -> Response:
    """The text exposition of every registered metric."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class HttpMetricsMiddleware:
    """Counts and times every HTTP request by the route it matched (its template, not its path).

    Sits outside auth and size limits, so their refusals count too: a request answered before
    routing is matched against `routes` afterwards to find its template.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = self._route_template(scope)
            method = scope["method"]
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_DURATION.labels(method, route).observe(time.perf_counter() - started)

    def _route_template(self, scope: Scope) -> str:
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str):
            return path
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                template = getattr(route, "path", None)
                return template if isinstance(template, str) and template else UNMATCHED
        return UNMATCHED
