"""A call that returns what is not JSON, or hangs past its timeout, as a tool's bug would."""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import BaseModel

from streamchat.tools import ToolConfig, ToolContext


class MisbehaveInput(BaseModel):
    how: Literal["not_json", "hang"]


config = ToolConfig(name="misbehaving", description="Goes wrong.", input=MisbehaveInput, timeout_seconds=0.5)


async def handler(args: MisbehaveInput, ctx: ToolContext) -> object:
    if args.how == "hang":
        await asyncio.sleep(60)
    return {"a set": {1, 2}}
