"""What operators see of AI replies: Prometheus metrics and an OpenTelemetry span per provider call.

`observed` wraps the provider's stream: it times the first piece, counts pieces (one counter
increment each, so the per-token work stays O(1)) and ends the span with the outcome.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Gauge, Histogram

from streamchat.llm import ChatProvider, ChatTurn, ProviderError

ACTIVE_REPLIES = Gauge("streamchat_active_replies", "Replies streaming from the model on this instance now.")
TOKENS = Counter("streamchat_reply_tokens_total",
                 "Text pieces streamed from the model into replies (rate() gives tokens per second).")
TIME_TO_FIRST_TOKEN = Histogram(
    "streamchat_time_to_first_token_seconds", "From the provider call to the reply's first piece of text.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
PROVIDER_ERRORS = Counter("streamchat_provider_errors_total", "Provider calls that failed, by provider.",
                          ["provider"])
REPLIES = Counter("streamchat_replies_total", "Replies ended, by final status.", ["status"])

tracer = trace.get_tracer("streamchat.reply")


async def observed(provider: ChatProvider, turns: Sequence[ChatTurn]) -> AsyncIterator[str]:
    """The provider's stream, measured: TTFT, tokens, errors, and a client span around the call."""
    model = getattr(provider, "model", provider.name)
    span = tracer.start_span(f"chat {model}", kind=SpanKind.CLIENT, attributes={
        "gen_ai.operation.name": "chat", "gen_ai.system": provider.name, "gen_ai.request.model": model,
        "streamchat.turns": len(turns)})
    asked = time.perf_counter()
    pieces = 0
    ACTIVE_REPLIES.inc()
    try:
        # Closed here, at once, when the reply ends early (a stop, a refused write), not when collected.
        async with contextlib.aclosing(provider.stream(turns)) as stream:
            async for piece in stream:
                if not pieces:
                    TIME_TO_FIRST_TOKEN.observe(time.perf_counter() - asked)
                    span.add_event("first token")
                pieces += 1
                TOKENS.inc()
                yield piece
    except ProviderError as error:
        PROVIDER_ERRORS.labels(provider.name).inc()
        span.set_status(Status(StatusCode.ERROR, error.reason))
        raise
    finally:
        ACTIVE_REPLIES.dec()
        span.set_attribute("streamchat.reply.pieces", pieces)
        span.end()
