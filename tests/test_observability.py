"""What operators see: Prometheus /metrics behind the API key, and OpenTelemetry traces across the bus."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
import websockets
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from conftest import FakeProvider, Server, ServerFactory
from helpers import until, wait_for_status

KEY = "metrics-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(server: Server) -> Samples:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.get("/metrics", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def chat(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post("/chat", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_metrics_are_protected_and_count_requests_replies_and_tokens(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    server = servers.start(STREAMCHAT_API_KEYS=KEY)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        refused = await client.get("/metrics")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert (await client.get("/no/such/page", headers=AUTH)).status_code == 404
        assert (await client.get(f"/api/conversations/{uuid.uuid4()}", headers=AUTH)).status_code == 404

    fake_provider.script(tokens=["one", " two", " three"], ttft=0.05)
    created = await chat(server, {"message": "count me"})
    await wait_for_status(server.url, created["conversationId"], created["assistantMessageId"], headers=AUTH)
    samples = await scrape(server)

    assert value(samples, "streamchat_http_requests_total", method="POST", route="/chat", status="200") == 1
    assert value(samples, "streamchat_http_requests_total", method="GET", route="/metrics", status="401") == 1, \
        "refusals by the auth layer count under the route they were aimed at"
    assert value(samples, "streamchat_http_requests_total",
                 method="GET", route="/api/conversations/{conversationId}", status="404") == 1
    assert value(samples, "streamchat_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value(samples, "streamchat_http_request_duration_seconds_count", method="POST", route="/chat") == 1
    assert value(samples, "streamchat_reply_tokens_total") == 3
    assert value(samples, "streamchat_replies_total", status="completed") == 1
    assert value(samples, "streamchat_time_to_first_token_seconds_count") == 1
    assert value(samples, "streamchat_time_to_first_token_seconds_bucket", le="0.025") == 0, "TTFT was 50 ms"
    assert value(samples, "streamchat_time_to_first_token_seconds_sum") >= 0.05, "in seconds"
    assert value(samples, "streamchat_handler_runs_total", step="AiResponse", outcome="finished") == 1
    assert value(samples, "streamchat_active_replies") == 0
    assert value(samples, "streamchat_provider_errors_total", provider="openai") == 0

    fake_provider.script(fail=[500, 500, 500, 500, 500, 500])
    failed = await chat(server, {"message": "this one fails", "conversationId": created["conversationId"]})
    final = await wait_for_status(server.url, created["conversationId"], failed["assistantMessageId"], headers=AUTH)
    assert final["status"] == "error"
    samples = await scrape(server)
    assert value(samples, "streamchat_provider_errors_total", provider="openai") == 1
    assert value(samples, "streamchat_replies_total", status="error") == 1


async def test_gauges_show_sockets_subscribers_live_replies_and_the_queue(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    server = servers.start(STREAMCHAT_API_KEYS=KEY)
    fake_provider.script(hold=True, tokens=["held"])
    first = await chat(server, {"message": "first"})
    cid = first["conversationId"]
    second = await chat(server, {"message": "second, queued behind the first", "conversationId": cid})
    socket = await websockets.connect(server.ws_url, subprotocols=["Authorization", KEY])  # type: ignore[list-item]
    try:
        await socket.send(orjson.dumps({"type": "join", "data": {
            "streamName": "conversation", "groupId": cid, "subscriptionId": "s"}}))
        assert orjson.loads(await socket.recv())["event"]["type"] == "sync"
        samples = await scrape(server)
        assert value(samples, "streamchat_websocket_connections") == 1
        assert value(samples, "streamchat_stream_subscribers") == 1
        assert value(samples, "streamchat_active_replies") == 1, "the first reply waits on the held provider"
        assert value(samples, "streamchat_event_queue_depth") == 2, "the running reply and the one queued behind it"
    finally:
        await socket.close()
        fake_provider.release()
    await wait_for_status(server.url, cid, second["assistantMessageId"], headers=AUTH)

    async def socket_gone() -> bool:
        nonlocal samples
        samples = await scrape(server)
        return value(samples, "streamchat_websocket_connections") == 0

    await until(socket_gone, "the closed socket no longer counted")
    assert value(samples, "streamchat_stream_subscribers") == 0
    assert value(samples, "streamchat_event_queue_depth") == 0
    assert value(samples, "streamchat_replies_total", status="completed") == 2


class Collector:
    """A real OTLP/HTTP trace collector on 127.0.0.1 that keeps what it receives in memory."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
                collector.add(request, self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, request: ExportTraceServiceRequest, path: str) -> None:
        with self.lock:
            for resource in request.resource_spans:
                service = next(a.value.string_value for a in resource.resource.attributes if a.key == "service.name")
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        self.spans.append({
                            "path": path, "service": service, "name": span.name, "trace": span.trace_id.hex(),
                            "id": span.span_id.hex(), "parent": span.parent_span_id.hex(), "kind": span.kind,
                            "attributes": {a.key: a.value for a in span.attributes},
                            "error": span.status.code == span.status.STATUS_CODE_ERROR,
                        })

    def named(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [span for span in self.spans if span["name"] == name]

    async def wait_for(self, name: str, count: int = 1) -> None:
        """Spans arrive in batches (every 50 ms in these tests): wait until `count` of `name` are in."""
        async def arrived() -> bool:
            return len(self.named(name)) >= count

        await until(arrived, f"{count} span(s) named {name!r} at the collector")


@pytest.fixture
def collector() -> Iterator[Collector]:
    """Ask for it before `servers`: it then outlives them, so a server's last spans at shutdown reach
    it instead of retrying against a closed port until the exporter's timeout."""
    collector = Collector()
    yield collector
    collector.server.shutdown()


async def test_one_trace_runs_from_the_api_through_the_bus_to_the_provider(
    collector: Collector, servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    server = servers.start(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_BSP_SCHEDULE_DELAY="50",
                           OTEL_SERVICE_NAME="streamchat-under-test")
    fake_provider.script(tokens=["traced", " reply"])
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post("/chat", json={"message": "trace me"})
    assert response.status_code == 200
    created = response.json()
    await wait_for_status(server.url, created["conversationId"], created["assistantMessageId"])
    for name in ("chat fake-model", "AiResponse", "ChatApi", "POST /chat"):
        await collector.wait_for(name)  # each in whichever batch it ended in

    [api] = collector.named("POST /chat")
    [step] = collector.named("ChatApi")
    [handler] = collector.named("AiResponse")
    [provider] = collector.named("chat fake-model")
    assert {api["path"], api["service"]} == {"/v1/traces", "streamchat-under-test"}
    assert api["trace"] == step["trace"] == handler["trace"] == provider["trace"], "one trace from request to model"
    assert handler["parent"] == step["id"] and provider["parent"] == handler["id"]
    assert response.headers["x-trace-id"] == api["trace"], "logs and the Workbench use the same trace id"
    assert provider["attributes"]["streamchat.reply.pieces"].int_value == 2
    assert not provider["error"]
    logged = [orjson.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    assert any(entry.get("trace_id") == api["trace"] and entry.get("step") == "AiResponse" for entry in logged)

    fake_provider.script(fail=[500, 500, 500, 500, 500, 500])
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        failed = (await client.post("/chat", json={"message": "this fails"})).json()
    await wait_for_status(server.url, failed["conversationId"], failed["assistantMessageId"])
    await collector.wait_for("chat fake-model", 2)
    assert [span["error"] for span in collector.named("chat fake-model")] == [False, True]


async def test_a_request_carrying_a_traceparent_continues_that_trace(
    collector: Collector, servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    server = servers.start(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_BSP_SCHEDULE_DELAY="50")
    caller_trace, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post("/chat", json={"message": "continue my trace"},
                                     headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"})
    created = response.json()
    await wait_for_status(server.url, created["conversationId"], created["assistantMessageId"])
    await collector.wait_for("chat fake-model")
    [api] = collector.named("POST /chat")
    assert (api["trace"], api["parent"]) == (caller_trace, caller_span)
    assert collector.named("chat fake-model")[0]["trace"] == caller_trace
    assert response.headers["x-trace-id"] == caller_trace
