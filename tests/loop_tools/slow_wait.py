"""A call that takes as long as it is told, reporting progress each tenth of the way; a test sees it
start and sees it cancelled."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from streamchat.tools import ToolConfig, ToolContext

STARTED: list[str] = []
CANCELLED: list[str] = []


class SlowInput(BaseModel):
    seconds: float = Field(ge=0, le=120)


config = ToolConfig(name="slow_wait", description="Waits, then says so.", input=SlowInput)


async def handler(args: SlowInput, ctx: ToolContext) -> dict[str, float]:
    STARTED.append(ctx.call_id)
    try:
        for step in range(10):
            await ctx.progress(step, 10, f"waited {step} of 10")
            await asyncio.sleep(args.seconds / 10)
    except asyncio.CancelledError:
        CANCELLED.append(ctx.call_id)
        raise
    return {"waited": args.seconds}
