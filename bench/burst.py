"""Scenario 10, a burst: C conversations whose POSTs all leave at the same instant, lag from the POST.

Scenario 2 spreads arrivals and measures lag from the provider's send time, which hides what a burst
costs before the provider is even called. Here every request of a run is fired at once, and the lag
of token i is when it reached its subscriber minus (when its request was fired + i x the provider's
delay), the same formula for the provider called directly by C readers in the same run (the limit).
Each reply has its own subscriber on its own connection (a delta WebSocket, or the conversation's SSE).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.harness import Deployment, Fake, SseWatcher, WsWatcher, percentiles, stamps


def _lags_from_start(sent: list[float], lags_ms: list[float], fired: float, delay: float) -> list[float]:
    """Token i's lag from its request: arrival (its stamp + its measured lag) minus fired + i x delay."""
    return [(stamp + lag / 1000 - fired - index * delay) * 1000
            for index, (stamp, lag) in enumerate(zip(sent, lags_ms, strict=False))]


async def _direct(fake: Fake, count: int, delay: float) -> dict[str, Any]:
    """C readers of the provider at once, with aiohttp (no pool limit): the limit a server can reach."""
    body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    lags: list[float] = []
    completed = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        async def one(fired: float) -> None:
            nonlocal completed
            index = 0
            async with session.post(f"{fake.url}/v1/chat/completions", json=body) as response:
                async for line in response.content:
                    if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
                        continue
                    now = time.time()
                    choices = orjson.loads(line[5:])["choices"]
                    piece = choices[0]["delta"].get("content") if choices else None
                    if piece and piece.strip():
                        lags.append((now - fired - index * delay) * 1000)
                        index += 1
            completed += 1

        fired = time.time()
        await asyncio.gather(*(one(fired) for _ in range(count)))
    return {"completed": completed, "lag_ms": percentiles(lags)}


async def _through_server(workdir: Path, fake: Fake, count: int, tokens: int, delay: float,
                          transport: str) -> dict[str, Any]:
    deployment = Deployment(workdir, fake)
    server = deployment.poster()
    try:
        cids = [str(uuid.uuid4()) for _ in range(count)]
        watchers: list[WsWatcher | SseWatcher] = [
            WsWatcher(server.ws_url, cid, deltas=True, measure_lag=True) if transport == "websocket"
            else SseWatcher(server.url, cid, measure_lag=True) for cid in cids]
        for batch in range(0, count, 100):
            await asyncio.gather(*(w.start() for w in watchers[batch:batch + 100]))
        cpu_before = deployment.cpu_seconds()
        round_trips: list[float] = []
        failed: list[str] = []
        # aiohttp, not httpx: 200 requests at once cost httpx's pool itself ~1 s here (a GET of /healthz
        # answered in 1.4 s at p99 against 0.1 s with aiohttp), which is the client's time, not the server's.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            async def post(cid: str) -> None:
                started = time.time()
                try:
                    async with session.post(f"{server.url}/chat", json={"message": "go", "conversationId": cid}
                                            ) as response:
                        await response.read()
                        response.raise_for_status()
                    round_trips.append((time.time() - started) * 1000)
                except (aiohttp.ClientError, TimeoutError) as error:
                    failed.append(repr(error))

            fired = time.time()
            await asyncio.gather(*(post(cid) for cid in cids))
        tasks = [w.task for w in watchers if w.task]
        _, pending = await asyncio.wait(tasks, timeout=tokens * delay + 120)
        for task in pending:
            task.cancel()
        cpu = deployment.cpu_seconds() - cpu_before
        lags = [lag for w in watchers
                for lag in _lags_from_start(stamps(w.result.text), w.result.lags_ms, fired, delay)]
        completed = sum(w.result.status == "completed" and len(stamps(w.result.text)) == tokens for w in watchers)
        return {"completed": completed, "lag_ms": percentiles(lags), "post_ms": percentiles(round_trips),
                "posts_failed": len(failed), "post_errors": sorted(set(failed))[:3], "server_cpu_s": round(cpu, 2)}
    finally:
        deployment.stop()


async def burst(workdir: Path, fake: Fake, counts: list[int], tokens: int, rate: float,
                transports: tuple[str, ...] = ("websocket", "sse")) -> dict[str, Any]:
    """Per count: the provider called directly, then streamchat through each transport, all fired at once."""
    delay = 1 / rate
    runs: list[dict[str, Any]] = []
    for count in counts:
        fake.script(count=tokens, delay=delay, stamp=True)
        run: dict[str, Any] = {"conversations": count, "direct": await _direct(fake, count, delay)}
        for transport in transports:
            fake.script(count=tokens, delay=delay, stamp=True)
            result = await _through_server(workdir, fake, count, tokens, delay, transport)
            direct_p99, p99 = run["direct"]["lag_ms"]["p99"], result["lag_ms"]["p99"]
            result["lag_p99_over_direct"] = round(p99 / direct_p99, 2) if p99 and direct_p99 else None
            run[transport] = result
            print(f"  burst {count:>5} {transport:<9}: {result['completed']}/{count} done, lag p99 {p99} ms "
                  f"(direct {direct_p99} ms), POST p99 {result['post_ms']['p99']} ms", flush=True)
        runs.append(run)
    return {"tokens": tokens, "tokens_per_s": rate, "transports": list(transports), "runs": runs}
