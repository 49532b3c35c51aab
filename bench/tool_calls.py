"""The round trip of a tool call: from the end of the model round that asked for a calculator call to
the model being called again with its result. It spans the round's end, the call's item, the
tool-call event, the calculator, the result's write, the next round's event and its history, and
is measured on the fake provider's own clock at both ends (its `ended_at` and `asked_at`)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import httpx

from bench.harness import Deployment, Fake, percentiles
from streamchat.client import StreamchatClient

WARM_UP = 2


async def tool_round_trip(workdir: Path, fake: Fake, samples: int) -> dict[str, Any]:
    fake.script(tool_calls=[[{"name": "calculator", "arguments": {"expression": "6 * 7"}}]], tokens=["42"])
    deployment = Deployment(workdir, fake)
    try:
        async with StreamchatClient(deployment.poster().url) as client:
            for _ in range(samples + WARM_UP):
                reply = await client.send("What is 6 * 7?")
                async for _piece in reply:
                    pass
                assert reply.status == "completed", reply.status
    finally:
        deployment.stop()
    async with httpx.AsyncClient() as http:
        streams = (await http.get(f"{fake.url}/control/requests")).json()["streams"]
    trips = [(after["asked_at"] - asked["ended_at"]) * 1000
             for asked, after in itertools.pairwise(streams) if asked.get("round") == 0]
    return {"samples": samples, "round_trip_ms": percentiles(trips[WARM_UP:])}
