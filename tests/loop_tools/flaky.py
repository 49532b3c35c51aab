"""A call that fails its first `failures` attempts (an exception, as a passing outage would), then answers."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

from streamchat.tools import ToolConfig, ToolContext

ATTEMPTS: Counter[str] = Counter()


class FlakyInput(BaseModel):
    failures: int = Field(ge=0)


config = ToolConfig(name="flaky", description="Fails a few times, then works.", input=FlakyInput)


async def handler(args: FlakyInput, ctx: ToolContext) -> dict[str, int]:
    ATTEMPTS[ctx.call_id] += 1
    if ATTEMPTS[ctx.call_id] <= args.failures:
        raise ConnectionError(f"attempt {ATTEMPTS[ctx.call_id]} could not reach the service")
    return {"attempts": ATTEMPTS[ctx.call_id]}
