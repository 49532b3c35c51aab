"""What operators see of AI replies: Prometheus metrics and an OpenTelemetry span per provider call.

`observed` wraps the provider's stream: it times the first piece, counts pieces (one counter
increment each, so the per-token work stays O(1)), ends the span with the outcome and leaves in its
`ReplyMeter` what the reply cost: the tokens the model counted, its time to first token and duration.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Gauge, Histogram

from streamchat.llm import ChatProvider, ChatTurn, ProviderError, Sampling, TokenCount, ToolCallDelta, ToolSpecs

ACTIVE_REPLIES = Gauge("streamchat_active_replies", "Replies streaming from the model on this instance now.")
TOKENS = Counter("streamchat_reply_tokens_total",
                 "Text pieces streamed from the model into replies (rate() gives tokens per second).")
TIME_TO_FIRST_TOKEN = Histogram(
    "streamchat_time_to_first_token_seconds", "From the provider call to the reply's first piece of text.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
PROVIDER_ERRORS = Counter("streamchat_provider_errors_total", "Provider calls that failed, by provider.",
                          ["provider"])
REPLIES = Counter("streamchat_replies_total", "Replies ended, by final status.", ["status"])
MODEL_TOKENS = Counter("streamchat_model_tokens_total",
                       "Tokens the model read (kind=prompt) and wrote (kind=completion), by model, as it counted them.",
                       ["model", "kind"])

tracer = trace.get_tracer("streamchat.reply")


@dataclass(slots=True)
class ReplyMeter:
    """What one provider call cost; read once the stream has ended."""

    model: str = ""
    count: TokenCount = field(default_factory=TokenCount)
    asked: float = 0.0
    first_piece: float | None = None
    ended: float | None = None

    def usage(self) -> dict[str, Any] | None:
        """The reply's `usage` (see messages.ReplyUsage); None if the model was never called."""
        if not self.asked:
            return None
        ended = self.ended if self.ended is not None else time.perf_counter()
        first = None if self.first_piece is None else round((self.first_piece - self.asked) * 1000)
        return {"promptTokens": self.count.prompt, "completionTokens": self.count.completion, "model": self.model,
                "timeToFirstTokenMs": first, "durationMs": round((ended - self.asked) * 1000)}


async def observed(provider: ChatProvider, turns: Sequence[ChatTurn], meter: ReplyMeter | None = None,
                   sampling: Sampling | None = None,
                   tools: ToolSpecs | None = None) -> AsyncIterator[str | ToolCallDelta]:
    """The provider's stream, measured: TTFT, tokens, errors, and a client span around the call.
    With `tools`, the pieces of the calls the model makes come through too (not counted as text)."""
    model = getattr(provider, "model", provider.name)
    meter = meter if meter is not None else ReplyMeter()
    meter.model = model
    span = tracer.start_span(f"chat {model}", kind=SpanKind.CLIENT, attributes={
        "gen_ai.operation.name": "chat", "gen_ai.system": provider.name, "gen_ai.request.model": model,
        "streamchat.turns": len(turns), "streamchat.tools": len(tools or ())})
    asked = meter.asked = time.perf_counter()
    pieces = 0
    ACTIVE_REPLIES.inc()
    try:
        # Closed here, at once, when the reply ends early (a stop, a refused write), not when collected.
        source = (provider.stream(turns, meter.count, sampling, tools) if tools
                  else provider.stream(turns, meter.count, sampling))
        async with contextlib.aclosing(source) as stream:
            async for piece in stream:
                if not pieces:
                    meter.first_piece = time.perf_counter()
                    TIME_TO_FIRST_TOKEN.observe(meter.first_piece - asked)
                    span.add_event("first token")
                pieces += 1
                TOKENS.inc()
                yield piece
    except ProviderError as error:
        PROVIDER_ERRORS.labels(provider.name).inc()
        span.set_status(Status(StatusCode.ERROR, error.reason))
        raise
    finally:
        meter.ended = time.perf_counter()
        ACTIVE_REPLIES.dec()
        for kind, tokens in (("prompt", meter.count.prompt), ("completion", meter.count.completion)):
            if tokens:
                MODEL_TOKENS.labels(model, kind).inc(tokens)
                span.set_attribute(f"gen_ai.usage.{'input' if kind == 'prompt' else 'output'}_tokens", tokens)
        span.set_attribute("streamchat.reply.pieces", pieces)
        span.end()
