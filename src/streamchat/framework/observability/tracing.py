"""OpenTelemetry tracing: one trace from the API call through the event bus to the provider call.

Off unless an OTLP endpoint is configured (the standard `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); until then the API's no-op tracer costs next to nothing.
The trace context crosses the bus inside each event (W3C `traceparent`), so a handler's span is
a child of the request that emitted its event, on whichever instance it runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

tracer = trace.get_tracer("streamchat.framework")


def configure_tracing(service_name: str, exporter: SpanExporter | None = None, *,
                      endpoint: str | None = None) -> TracerProvider:
    """Install a tracer provider exporting in batches; OTLP over HTTP to `endpoint` unless `exporter` is given.

    The caller resolves the endpoint and the service name (the settings read them from `.env` too,
    which the exporter cannot see); the exporter still reads the other OTEL_EXPORTER_OTLP_* variables.
    """
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint)
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def carrier() -> dict[str, str]:
    """The current trace context as headers, to travel with an event."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


def extracted(headers: Mapping[str, str]) -> Context | None:
    """The context a carrier (request headers, an event's trace context) continues, if any."""
    return propagate.extract(headers) if "traceparent" in headers else None


def trace_id_of(span: trace.Span) -> str:
    """The span's trace id as 32 hex digits (what logs carry), or a fresh id when not tracing."""
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else uuid.uuid4().hex
