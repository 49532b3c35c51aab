"""The benchmark's scenarios. Each returns a JSON-ready dict; timings are wall-clock on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    ROOT,
    Deployment,
    Fake,
    Server,
    SseWatcher,
    WatchResult,
    WsWatcher,
    percentiles,
    pin,
    stamps,
)
from streamchat.client import StreamchatClient
from streamchat.llm.base import ChatTurn
from streamchat.llm.openai_provider import OpenAIProvider

LAG_TARGET_MS = 100.0
#: New conversations arrive at this rate (at most over half a reply's length): real users do not all
#: press Enter in the same millisecond, and a burst would measure the POST queue, not streaming.
ARRIVALS_PER_S = 200.0


async def _first_piece(provider: OpenAIProvider) -> float:
    started = time.time()
    stream = provider.stream([ChatTurn("user", "hello")])
    try:
        async for _ in stream:
            return (time.time() - started) * 1000
    finally:
        await stream.aclose()
    raise RuntimeError("the provider sent nothing")


async def overhead(workdir: Path, fake: Fake, samples: int, instances: int = 1) -> dict[str, Any]:
    """POST /chat → first token at a subscriber, against the provider's own TTFT measured directly."""
    fake.script(count=20, delay=0.002, ttft=0.02)
    deployment = Deployment(workdir, fake, instances)
    server, watched = deployment.poster(), deployment.watcher()
    provider = OpenAIProvider(api_key="sk-bench", base_url=f"{fake.url}/v1", model="bench", max_tokens=64)
    direct: list[float] = []
    plain: list[float] = []
    deltas: list[float] = []
    sse: list[float] = []
    try:
        async with StreamchatClient(server.url) as client:
            for index in range(samples + 2):
                direct_ms = await _first_piece(provider)
                cid = str(uuid.uuid4())
                watchers: list[WsWatcher | SseWatcher] = [
                    WsWatcher(watched.ws_url, cid, deltas=False), WsWatcher(watched.ws_url, cid, deltas=True),
                    SseWatcher(watched.url, cid)]
                for watcher in watchers:
                    await watcher.start()
                started = time.time()
                await client.send("hello", cid)
                await asyncio.gather(*(w.task for w in watchers if w.task))
                if index < 2:
                    continue  # warm-up
                direct.append(direct_ms)
                for sink, watcher in zip((plain, deltas, sse), watchers, strict=True):
                    assert watcher.result.first_token_at is not None
                    sink.append((watcher.result.first_token_at - started) * 1000)
    finally:
        await provider.close()
        deployment.stop()
    base = percentiles(direct)
    result: dict[str, Any] = {"samples": samples, "instances": instances, "provider_ttft_ms": base}
    for name, values in (("websocket_motia", plain), ("websocket_deltas", deltas), ("sse", sse)):
        through = percentiles(values)
        # Paired: each sample's first token minus the direct call made just before it, so a slow
        # moment of the machine that slows both does not count as the pipeline's.
        overhead = percentiles([piped - alone for piped, alone in zip(values, direct, strict=True)])
        result[name] = {
            "first_token_ms": through,
            "overhead_ms": {q: overhead[q] for q in ("p50", "p95", "p99")},
            "ratio_p50": round(through["p50"] / base["p50"], 3),  # type: ignore[operator]
        }
    return result


async def _conversations(workdir: Path, fake: Fake, count: int, tokens: int, rate: float,
                         instances: int = 1, server_cpus: set[int] | None = None) -> dict[str, Any]:
    fake.script(count=tokens, delay=1 / rate, stamp=True)
    deployment = Deployment(workdir, fake, instances, server_cpus=server_cpus)
    try:
        cids = [str(uuid.uuid4()) for _ in range(count)]
        watchers = [WsWatcher(deployment.watcher(index).ws_url, cid, deltas=True, measure_lag=True)
                    for index, cid in enumerate(cids)]
        for batch in range(0, count, 100):
            await asyncio.gather(*(w.start() for w in watchers[batch:batch + 100]))
        cpu_before = deployment.cpu_seconds()
        others_before = fake.process.cpu_seconds(), time.process_time()
        started = time.time()
        ramp = min(count / ARRIVALS_PER_S, tokens / rate / 2)
        refused: list[str] = []
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as client:
            async def send(index: int, cid: str) -> None:
                await asyncio.sleep(ramp * index / count)
                try:
                    (await client.post(f"{deployment.poster(index).url}/chat",
                                       json={"message": "go", "conversationId": cid})).raise_for_status()
                except httpx.HTTPError as error:
                    refused.append(repr(error))
            await asyncio.gather(*(send(index, cid) for index, cid in enumerate(cids)))
        tasks = [w.task for w in watchers if w.task]
        _, pending = await asyncio.wait(tasks, timeout=tokens / rate + 60)
        for task in pending:
            task.cancel()
        elapsed = time.time() - started
        cpu = deployment.cpu_seconds() - cpu_before
        fake_cpu, client_cpu = fake.process.cpu_seconds() - others_before[0], time.process_time() - others_before[1]
        delivered = sum(len(stamps(w.result.text)) for w in watchers)
        lags = [lag for w in watchers for lag in w.result.lags_ms]
        incomplete = [w for w in watchers if not (w.result.status == "completed"
                                                  and len(stamps(w.result.text)) == tokens)]
        completed = count - len(incomplete)
        return {
            "conversations": count, "tokens_each": tokens, "tokens_per_s_each": rate, "ramp_s": round(ramp, 2),
            "completed": completed, "completion_rate": round(completed / count, 4),
            "posts_failed": len(refused), "post_errors": sorted(set(refused))[:3],
            "incomplete": [{"status": w.result.status, "error": w.result.error, "tokens": len(stamps(w.result.text)),
                            "watcher": _ending(w.task)} for w in incomplete[:5]],
            "lag_ms": percentiles(lags), "elapsed_s": round(elapsed, 2),
            "delivered_tokens": delivered, "delivered_tokens_per_s": round(delivered / elapsed, 1),
            "server_cpu_s_per_1000_tokens": round(1000 * cpu / max(delivered, 1), 4),
            "server_cpu_utilisation": round(cpu / elapsed, 3),
            "server_peak_rss_mb": deployment.peak_rss_mb(), "instances": instances,
            "provider_cpu_utilisation": round(fake_cpu / elapsed, 3),
            "clients_cpu_utilisation": round(client_cpu / elapsed, 3),
        }
    finally:
        deployment.stop()


def _ending(task: asyncio.Task[None] | None) -> str:
    """How a subscriber's task ended, for the report of an incomplete reply."""
    if task is None or not task.done():
        return "still waiting"
    if task.cancelled():
        return "cancelled at the deadline"
    error = task.exception()
    return "socket ended" if error is None else repr(error)


def _holds(run: dict[str, Any]) -> bool:
    p99 = run["lag_ms"]["p99"]
    return run["completion_rate"] == 1.0 and p99 is not None and p99 <= LAG_TARGET_MS


async def _up_to_the_target(workdir: Path, fake: Fake, counts: list[int], tokens: int, rate: float, *,
                            label: str, stop_at_miss: bool, instances: int = 1,
                            server_cpus: set[int] | None = None) -> dict[str, Any]:
    """Scenario 2's runs at one rate, count by count; with `stop_at_miss`, up to the first that misses."""
    runs: list[dict[str, Any]] = []
    for count in counts:
        run = await _conversations(workdir, fake, count, tokens, rate, instances, server_cpus)
        run["holds"] = _holds(run)
        runs.append(run)
        print(f"  {label} {count:>5} x {rate:g} tok/s: lag p99 {run['lag_ms']['p99']} ms, "
              f"completed {run['completion_rate']:.1%}, cpu {run['server_cpu_utilisation']}"
              + (f", incomplete: {run['incomplete']}" if run["incomplete"] else ""), flush=True)
        if stop_at_miss and not run["holds"]:
            break
    held = [run["conversations"] for run in runs if run["holds"]]
    return {"runs": runs, "highest_count_that_holds": max(held) if held else 0}


async def concurrency(workdir: Path, fake: Fake, counts: list[int], tokens: int, rates: list[float],
                      instances: int = 1, finer: list[int] | None = None) -> dict[str, Any]:
    """N conversations streaming at once, each watched by one delta subscriber.

    The first rate runs every count; the others also try the `finer` counts and stop at the first
    count that misses the target, so they report the highest count that holds.
    """
    out: dict[str, Any] = {}
    for rate in rates:
        first = rate == rates[0]
        out[f"{rate:g}_tokens_per_s"] = await _up_to_the_target(
            workdir, fake, counts if first else sorted({*counts, *(finer or [])}), tokens, rate,
            label="concurrency", stop_at_miss=not first, instances=instances)
    return out


async def dedicated_core(workdir: Path, fake: Fake, counts: list[int], tokens: int, rate: float) -> dict[str, Any]:
    """Scenario 2 again with the server alone on CPU 0, and the provider and the clients on the others.

    On a small machine the load generator competes with the server for the same cores; this run
    shows how many conversations one core carries when the server has it to itself. It stops at
    the first count that misses the lag target.
    """
    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2 or 0 not in cpus:
        return {"skipped": f"needs CPU 0 and one more; this process may use {sorted(cpus)}"}
    load_cpus = cpus - {0}
    pin(0, load_cpus)
    pin(fake.process.popen.pid, load_cpus)
    try:
        block = await _up_to_the_target(workdir, fake, counts, tokens, rate, label="one core", stop_at_miss=True,
                                        server_cpus={0})
    finally:
        pin(0, cpus)
        pin(fake.process.popen.pid, cpus)
    return {"server_cpus": [0], "load_cpus": sorted(load_cpus), f"{rate:g}_tokens_per_s": block}


async def fanout(workdir: Path, fake: Fake, counts: list[int], tokens: int, rate: float,
                 compression: bool = True, instances: int = 1) -> dict[str, Any]:
    """One reply watched by N delta subscribers (WebSocket compression on, or off), spread over the instances."""
    runs: list[dict[str, Any]] = []
    for count in counts:
        fake.script(count=tokens, delay=1 / rate, stamp=True)
        deployment = Deployment(workdir, fake, instances, STREAMCHAT_WS_COMPRESSION="on" if compression else "off")
        try:
            cid = str(uuid.uuid4())
            watchers = [WsWatcher(deployment.watcher(index).ws_url, cid, deltas=True, measure_lag=True)
                        for index in range(count)]
            for batch in range(0, count, 100):
                await asyncio.gather(*(w.start() for w in watchers[batch:batch + 100]))
            cpu_before = deployment.cpu_seconds()
            started = time.time()
            async with StreamchatClient(deployment.poster().url, timeout=60) as client:
                await client.send("fan out", cid)
            _, pending = await asyncio.wait([w.task for w in watchers if w.task], timeout=tokens / rate + 60)
            for task in pending:
                task.cancel()
            elapsed = time.time() - started
            cpu = deployment.cpu_seconds() - cpu_before
            lags = [lag for w in watchers for lag in w.result.lags_ms]
            complete = sum(len(stamps(w.result.text)) == tokens for w in watchers)
            runs.append({"subscribers": count, "lag_ms": percentiles(lags), "complete_copies": complete,
                         "server_cpu_s": round(cpu, 3), "server_cpu_utilisation": round(cpu / elapsed, 3),
                         "server_peak_rss_mb": deployment.peak_rss_mb()})
            print(f"  fan-out {count:>5} (compression {'on' if compression else 'off'}, {instances} instance(s)): "
                  f"lag p99 {runs[-1]['lag_ms']['p99']} ms, complete {complete}/{count}", flush=True)
        finally:
            deployment.stop()
    return {"tokens": tokens, "tokens_per_s": rate, "compression": compression, "instances": instances, "runs": runs}


async def wire(workdir: Path, fake: Fake, sizes: list[int], rate: float, compression: bool = True) -> dict[str, Any]:
    """Bytes a subscriber receives per byte of reply, by mode (WebSocket compression on, or off); store
    writes per reply and the item bytes they carried per reply byte; and the longest wait of the plain
    subscriber between two whole-item updates."""
    runs = []
    for size in sizes:
        fake.script(count=size, delay=1 / rate)
        server = Server(workdir, fake, STREAMCHAT_WS_COMPRESSION="on" if compression else "off")
        try:
            cid = str(uuid.uuid4())
            plain, deltas = WsWatcher(server.ws_url, cid, deltas=False), WsWatcher(server.ws_url, cid, deltas=True)
            sse = SseWatcher(server.url, cid)
            for watcher in (plain, deltas, sse):
                await watcher.start()
            writes_before, bytes_before = server.store_writes(), server.store_bytes_written()
            async with StreamchatClient(server.url, timeout=60) as client:
                await client.send("w", cid)
            await asyncio.wait_for(asyncio.gather(*(w.task for w in (plain, deltas, sse) if w.task)), size / rate + 60)
            reply_bytes = len(deltas.result.text.encode())
            watched = (("websocket_motia", plain), ("websocket_deltas", deltas), ("sse", sse))
            runs.append({
                "tokens": size, "reply_bytes": reply_bytes,
                "bytes_per_reply_byte": {name: round(w.result.wire_bytes / reply_bytes, 3) for name, w in watched},
                "payload_bytes_per_reply_byte": {name: round(w.result.bytes_received / reply_bytes, 3)
                                                 for name, w in watched},
                "store_writes_per_reply": server.store_writes() - writes_before,
                "store_bytes_per_reply_byte": None if bytes_before is None else round(
                    ((server.store_bytes_written() or 0) - bytes_before) / reply_bytes, 3),
                "plain_updates": plain.result.pieces, "plain_longest_gap_ms": round(plain.result.longest_gap_ms, 1),
            })
            print(f"  wire {size:>5} tokens (compression {'on' if compression else 'off'}): "
                  f"{runs[-1]['bytes_per_reply_byte']}, {runs[-1]['store_writes_per_reply']} store writes, "
                  f"{runs[-1]['store_bytes_per_reply_byte']} store bytes per reply byte, "
                  f"plain: {plain.result.pieces} updates, longest gap {runs[-1]['plain_longest_gap_ms']} ms",
                  flush=True)
        finally:
            server.stop()
    return {"tokens_per_s": rate, "compression": compression, "runs": runs}


def _rate(runs: list[tuple[float, float, float, int]]) -> dict[str, Any]:
    """Totals over (started, first, last, tokens) runs: median TTFT and tokens/s after the first token."""
    ttfts = sorted((first - started) * 1000 for started, first, _, _ in runs)
    tokens = sum(count - 1 for *_, count in runs)
    seconds = sum(last - first for _, first, last, _ in runs)
    return {"ttft_ms": round(ttfts[len(ttfts) // 2], 1), "tokens": sum(r[3] for r in runs),
            "tokens_per_s": round(tokens / max(seconds, 1e-9), 1)}


async def embedded(workdir: Path, max_tokens: int, prompts: list[str], model: str, rounds: int) -> dict[str, Any]:
    """An embedded model called directly, and through POST /chat → WebSocket, on the same prompts.

    Greedy decoding on both sides, so each prompt gives the same text and the same tokens both ways
    (checked). The two are interleaved — each prompt directly, then through the pipeline, `rounds`
    times — because this shared machine's speed drifts by ±15% between minutes, which is more than
    the difference being measured. Only one of the two generates at any moment. Through the pipeline
    the subscriber counts frames, not tokens: fast tokens are joined into one delta frame per
    STREAMCHAT_DELTA_WINDOW_MS, so the pipeline's rate is the direct run's token count for the same
    text over the time the subscriber took to receive it.
    """
    from streamchat.llm.local_models import resolve
    from streamchat.llm.local_provider import LocalProvider

    provider = LocalProvider(resolve(model), models_dir=ROOT / ".streamchat" / "models", max_tokens=max_tokens,
                             temperature=0.0)
    server = Server(workdir, None, STREAMCHAT_PROVIDER="local", STREAMCHAT_MAX_TOKENS=str(max_tokens),
                    STREAMCHAT_TEMPERATURE="0", STREAMCHAT_LOCAL_MODEL=model)
    direct_runs, piped_runs, frames, same_text = [], [], 0, True

    async def direct(prompt: str) -> tuple[str, tuple[float, float, float, int]]:
        started = time.time()
        first = last = 0.0
        pieces: list[str] = []
        async for piece in provider.stream([ChatTurn("user", prompt)]):
            last = time.time()
            first = first or last
            pieces.append(piece)
        return "".join(pieces), (started, first, last, len(pieces))

    async def piped(client: StreamchatClient, prompt: str) -> WatchResult:
        watcher = WsWatcher(server.ws_url, str(uuid.uuid4()), deltas=True)
        await watcher.start()
        await client.send(prompt, watcher.cid)
        await asyncio.wait_for(watcher.task, 300)  # type: ignore[arg-type]
        return watcher.result

    try:
        async with StreamchatClient(server.url, timeout=60) as client:
            await direct("Hi")  # warm-up: the first generation after loading is several times slower to start
            await piped(client, "Hi")
            for _ in range(rounds):
                for prompt in prompts:
                    text, run = await direct(prompt)
                    started = time.time()
                    result = await piped(client, prompt)
                    same_text = same_text and result.text == text
                    first_at = result.first_token_at or time.time()
                    frames += result.pieces
                    direct_runs.append(run)
                    piped_runs.append((started, first_at, result.last_token_at or first_at, run[3]))
    finally:
        server.stop()
        await provider.close()
    if not same_text:
        raise RuntimeError("greedy decoding gave different texts directly and through the pipeline")
    direct_rate, piped_rate = _rate(direct_runs), _rate(piped_runs)
    piped_rate["frames"] = frames
    return {"max_tokens": max_tokens, "prompts": len(prompts), "rounds": rounds, "direct": direct_rate,
            "through_pipeline": piped_rate,
            "tokens_per_s_ratio": round(piped_rate["tokens_per_s"] / max(direct_rate["tokens_per_s"], 1e-9), 3)}


async def scale(workdir: Path, fake: Fake, plan: dict[str, Any]) -> dict[str, Any]:
    """Scenarios 1-3 again on two instances sharing Redis and PostgreSQL: POST to one, watch on the other."""
    instances = 2
    return {
        "instances": instances,
        "overhead": await overhead(workdir, fake, plan["scale_overhead_samples"], instances),
        "concurrency": await concurrency(workdir, fake, plan["scale_counts"], plan["tokens"], plan["scale_rates"],
                                         instances),
        "fanout": await fanout(workdir, fake, plan["scale_fanout"], plan["tokens"], plan["rates"][0],
                               instances=instances),
    }
