"""Where a token's CPU goes: the pieces of the per-token path measured one at a time.

Scenario 2 gives the whole server's CPU per delivered token; this splits it:
- reading the provider's stream through the SDK (`OpenAIProvider.stream`, in this process), next
  to the floor of reading the same SSE lines with aiohttp and orjson and nothing else;
- the server with nobody watching: the provider read, the step and `append`, no frame written;
- the floor the whole server is held against: a relay that reads the provider and writes each piece
  as one WebSocket frame (floor.py), at the same load;
- the frame write itself comes from scenario 3 (one serialisation shared by every subscriber, so
  its CPU per subscriber per token is the cost of one frame).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

from bench.floor import relay_cpu_per_token
from bench.harness import Deployment, Fake
from bench.scenarios import ARRIVALS_PER_S
from streamchat.llm.base import ChatTurn
from streamchat.llm.openai_provider import OpenAIProvider


async def _read_with_sdk(fake: Fake, streams: int) -> int:
    provider = OpenAIProvider(api_key="sk-bench", base_url=f"{fake.url}/v1", model="bench", max_tokens=4096)

    async def one() -> int:
        return sum([1 async for _ in provider.stream([ChatTurn("user", "go")])])

    try:
        return sum(await asyncio.gather(*(one() for _ in range(streams))))
    finally:
        await provider.close()


async def _read_with_aiohttp(fake: Fake, streams: int) -> int:
    body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    async with aiohttp.ClientSession() as session:
        async def one() -> int:
            pieces = 0
            async with session.post(f"{fake.url}/v1/chat/completions", json=body) as response:
                async for line in response.content:
                    if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                        chunk = orjson.loads(line[5:])
                        pieces += bool(chunk["choices"] and chunk["choices"][0]["delta"].get("content"))
            return pieces

        return sum(await asyncio.gather(*(one() for _ in range(streams))))


async def _cpu_per_token(read: Callable[[Fake, int], Awaitable[int]], fake: Fake, streams: int) -> float:
    await read(fake, 1)  # connections and imports warmed up
    started = time.process_time()
    tokens = await read(fake, streams)
    return round((time.process_time() - started) / max(tokens, 1) * 1e6, 1)


async def _unwatched(workdir: Path, fake: Fake, conversations: int, tokens: int) -> dict[str, Any]:
    deployment = Deployment(workdir, fake)
    server = deployment.poster()
    cids = [str(uuid.uuid4()) for _ in range(conversations)]
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                     limits=httpx.Limits(max_connections=100)) as client:
            cpu_before = deployment.cpu_seconds()

            async def post(index: int, cid: str) -> None:
                await asyncio.sleep(index / ARRIVALS_PER_S)
                (await client.post("/chat", json={"message": "go", "conversationId": cid})).raise_for_status()

            await asyncio.gather(*(post(index, cid) for index, cid in enumerate(cids)))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # the last one started last and ends about last
                await asyncio.sleep(1.0)
                reply = (await client.get(f"/api/conversations/{cids[-1]}")).json()["messages"][-1]
                if reply["status"] not in ("created", "streaming"):
                    break
            await asyncio.sleep(1.0)
            cpu = deployment.cpu_seconds() - cpu_before
            finished = 0
            for cid in cids:
                reply = (await client.get(f"/api/conversations/{cid}")).json()["messages"][-1]
                finished += reply["status"] == "completed" and len(reply["message"].split()) == tokens
    finally:
        deployment.stop()
    return {"conversations": conversations, "completed": finished,
            "server_us_per_token": round(cpu / (conversations * tokens) * 1e6, 1)}


async def costs(workdir: Path, fake: Fake, streams: int, read_tokens: int, conversations: int, tokens: int,
                rate: float) -> dict[str, Any]:
    """The provider read (SDK and floor) and the server with nobody watching, in µs of CPU per token.

    The provider is read as `streams` streams of `read_tokens` at 100 tokens/s (each token still its
    own TCP segment); at 400 tokens the request's own cost (~0.7 ms through the SDK) is a small
    share. The unwatched server runs `conversations` of `tokens` each at `rate`, like scenario 2.
    """
    fake.script(count=read_tokens, delay=0.01, stamp=True)
    sdk = await _cpu_per_token(_read_with_sdk, fake, streams)
    floor = await _cpu_per_token(_read_with_aiohttp, fake, streams)
    relay = await relay_cpu_per_token(workdir, fake, conversations, tokens, rate, ARRIVALS_PER_S)
    fake.script(count=tokens, delay=1 / rate, stamp=True)
    unwatched = await _unwatched(workdir, fake, conversations, tokens)
    return {"tokens": tokens, "tokens_per_s": rate, "streams": streams, "read_tokens": read_tokens,
            "provider_read_us_per_token": {"sdk": sdk, "aiohttp_floor": floor}, "unwatched_server": unwatched,
            "relay_floor_us_per_token": round(relay["cpu_s_per_1000_tokens"] * 1000, 1)}
