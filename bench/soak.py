"""Soak: does the server's memory level off? Not part of `./scripts/bench` (nor `--quick`), nor of the tests.

One real server process (SQLite, the in-process bus, the fake provider with short replies) gets new
conversations at a steady rate for a number of minutes. Each is a POST /chat whose reply a subscriber
(a WebSocket with deltas by default, or SSE, or none) follows to its end, then disconnects. Every few
seconds the server's RSS is read from /proc/<pid>/status. Writes bench/results/soak.json (the time
series, chats done, replies completed) and bench/results/soak.png.

    .venv/bin/python -m bench.soak --minutes 8 --rate 10
    .venv/bin/python -m bench.soak --minutes 3 --rate 10 --env STREAMCHAT_LOG_LEVEL=INFO
    ./scripts/bench --soak --minutes 8 --rate 10          # the same, through bench/run.py

`--env NAME=VALUE` (repeatable) is passed to the server process only, e.g. to lower the caches' caps
(`--env STREAMCHAT_REPLAY_MEMORY_MB=8 --env STREAMCHAT_IDLE_GROUPS_KEPT=200`). Each sample also reads
what the stream hub keeps from `/api/admin/stats` (groups, resume buffers and their estimated bytes),
so the curve says where the memory goes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench.charts import soak_chart
from bench.harness import ROOT, Fake, Server, SseWatcher, WsWatcher
from streamchat.serving import configure_gc

RESULTS = ROOT / "bench" / "results"
#: Conversations in flight at once beyond which an arrival is skipped (and counted), so a server
#: that falls behind cannot make the load generator pile up work without bound.
MAX_IN_FLIGHT = 500
#: The longest one chat (POST, reply, disconnect) may take before it counts as failed.
CHAT_TIMEOUT_S = 60.0


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile (kB) and Threads of a process, from /proc/<pid>/status."""
    wanted = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads")
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in wanted:
            values[name] = int(rest.split()[0])
    return values


@dataclass
class Tally:
    """What the load generator has done so far."""

    started: int = 0
    done: int = 0
    completed: int = 0
    failed: int = 0
    skipped: int = 0
    in_flight: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.errors[reason] = self.errors.get(reason, 0) + 1


async def one_chat(client: httpx.AsyncClient, server: Server, watch: str, tally: Tally) -> None:
    """A new conversation: a subscriber joins, POST /chat, follow the reply to its end, disconnect."""
    cid = str(uuid.uuid4())
    watcher: WsWatcher | SseWatcher | None = None
    if watch == "ws":
        watcher = WsWatcher(server.ws_url, cid, deltas=True)
    elif watch == "sse":
        watcher = SseWatcher(server.url, cid)
    try:
        async with asyncio.timeout(CHAT_TIMEOUT_S):
            if watcher is not None:
                await watcher.start()
            response = await client.post("/chat", json={"message": "soak", "conversationId": cid})
            response.raise_for_status()
            if watcher is not None and watcher.task is not None:
                await watcher.task
                if watcher.result.status != "completed":
                    tally.fail(f"reply {watcher.result.status}: {watcher.result.error}")
                    return
            tally.completed += 1
    except TimeoutError:
        tally.fail("timeout")
    except Exception as error:
        tally.fail(type(error).__name__)
    finally:
        if watcher is not None and watcher.task is not None and not watcher.task.done():
            watcher.task.cancel()
        tally.done += 1
        tally.in_flight -= 1


async def sample(client: httpx.AsyncClient, server: Server, tally: Tally, t0: float, phase: str) -> dict[str, Any]:
    status = proc_status(server.process.popen.pid)
    hub = (await client.get("/api/admin/stats")).json()["streams"]

    def mb(name: str) -> float:
        return round(status.get(name, 0) / 1024, 1)

    return {"t_s": round(time.monotonic() - t0, 1), "phase": phase, "chats_started": tally.started,
            "chats_done": tally.done, "completed": tally.completed, "failed": tally.failed,
            "skipped": tally.skipped, "in_flight": tally.in_flight,
            "rss_mb": mb("VmRSS"), "rss_anon_mb": mb("RssAnon"), "rss_file_mb": mb("RssFile"), "hwm_mb": mb("VmHWM"),
            "threads": status.get("Threads", 0), "server_cpu_s": round(server.process.cpu_seconds(), 2),
            "groups": hub["groups"], "replay_changes": hub["replayChanges"],
            "replay_mb": round(hub["replayBytes"] / 2**20, 1)}


def slope_kb_per_chat(series: list[dict[str, Any]], since_chats: int) -> float | None:
    """Least-squares RSS growth per chat done over the load samples with at least `since_chats` chats."""
    points = [(float(s["chats_done"]), float(s["rss_mb"]) * 1024) for s in series
              if s["phase"] == "load" and s["chats_done"] >= since_chats]
    if len(points) < 3:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return None
    return round(sum((x - mean_x) * (y - mean_y) for x, y in points) / var, 2)


async def soak(minutes: float, rate: float, tokens: int, token_delay: float, watch: str, every: float,
               settle: float, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="streamchat-soak-") as tmp:
        workdir = Path(tmp)
        fake = Fake(workdir)
        server: Server | None = None
        try:
            fake.script(count=tokens, delay=token_delay)
            server = Server(workdir, fake, **env)
            return await _drive(server, minutes, rate, watch, every, settle)
        except Exception:
            if server is not None and server.process.log.exists():
                print(server.process.log.read_text()[-3000:])
            raise
        finally:
            if server is not None:
                server.stop()
            fake.process.stop()


async def _drive(server: Server, minutes: float, rate: float, watch: str, every: float,
                 settle: float) -> dict[str, Any]:
    tally = Tally()
    series: list[dict[str, Any]] = []
    tasks: set[asyncio.Task[None]] = set()
    t0 = time.monotonic()
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    stats = httpx.AsyncClient(base_url=server.url, timeout=CHAT_TIMEOUT_S)

    async def record(phase: str) -> None:
        point = await sample(stats, server, tally, t0, phase)
        series.append(point)
        print(f"  t={point['t_s']:>6}s chats {point['chats_done']:>6} completed {point['completed']:>6} "
              f"failed {point['failed']} skipped {point['skipped']} in flight {point['in_flight']:>3} "
              f"RSS {point['rss_mb']:>7} MB (anon {point['rss_anon_mb']}), hub: {point['groups']} groups, "
              f"{point['replay_changes']} changes ~{point['replay_mb']} MB", flush=True)

    async def sampler() -> None:
        while True:
            await asyncio.sleep(every)
            await record("load")

    async with stats, httpx.AsyncClient(base_url=server.url, timeout=CHAT_TIMEOUT_S, limits=limits) as client:
        await record("start")
        sampling = asyncio.create_task(sampler())
        total = int(minutes * 60 * rate)
        load_started = time.monotonic()
        for index in range(total):
            delay = load_started + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if tally.in_flight >= MAX_IN_FLIGHT:
                tally.skipped += 1
                continue
            tally.started += 1
            tally.in_flight += 1
            task = asyncio.create_task(one_chat(client, server, watch, tally))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        load_seconds = time.monotonic() - load_started
        if tasks:
            await asyncio.wait(list(tasks), timeout=CHAT_TIMEOUT_S + 5)
        sampling.cancel()
        await record("drained")
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            await asyncio.sleep(min(every, max(0.0, settle_until - time.monotonic())))
            await record("idle")
    load = [s for s in series if s["phase"] in ("load", "drained")]
    return {
        "chats_started": tally.started, "chats_done": tally.done, "completed": tally.completed,
        "failed": tally.failed, "skipped": tally.skipped, "errors": tally.errors,
        "load_seconds": round(load_seconds, 1), "achieved_rate_per_s": round(tally.started / load_seconds, 2),
        "rss_mb": {"start": series[0]["rss_mb"], "end_of_load": load[-1]["rss_mb"] if load else None,
                   "end": series[-1]["rss_mb"], "peak": max(s["hwm_mb"] for s in series)},
        "growth_kb_per_chat": {"whole_run": slope_kb_per_chat(series, 0),
                               "second_half": slope_kb_per_chat(series, tally.done // 2)},
        "series": series,
    }


def parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--env wants NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=8.0, help="how long new chats arrive (default 8)")
    p.add_argument("--rate", type=float, default=10.0, help="new chats per second (default 10)")
    p.add_argument("--tokens", type=int, default=30, help="tokens per reply (default 30)")
    p.add_argument("--token-delay", type=float, default=0.01, help="seconds between tokens (default 0.01)")
    p.add_argument("--watch", choices=("ws", "sse", "none"), default="ws",
                   help="who follows each reply: a WebSocket with deltas (default), SSE, or nobody")
    p.add_argument("--sample-seconds", type=float, default=5.0, help="RSS sampling interval (default 5)")
    p.add_argument("--settle-seconds", type=float, default=30.0,
                   help="keep sampling this long after the load, with no traffic (default 30)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="an environment variable for the server process (repeatable)")
    p.add_argument("--out", default=str(RESULTS / "soak.json"), help="the JSON result (the PNG goes beside it)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    env = parse_env(args.env)
    if args.minutes <= 0 or args.rate <= 0 or args.minutes * 60 * args.rate > 1_000_000:
        raise SystemExit("--minutes and --rate must be positive, and at most 1,000,000 chats in all")
    gc.collect()
    configure_gc()  # the load generator's collections like the server's
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result = uvloop.run(soak(args.minutes, args.rate, args.tokens, args.token_delay, args.watch,
                             args.sample_seconds, args.settle_seconds, env))
    result = {"date": started, "cpus": os.cpu_count(),
              "plan": {"minutes": args.minutes, "rate_per_s": args.rate, "tokens": args.tokens,
                       "token_delay_s": args.token_delay, "watch": args.watch, "env": env,
                       "sample_seconds": args.sample_seconds, "settle_seconds": args.settle_seconds},
              **result}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    chart = soak_chart(result, out.with_suffix(".png"))
    rss, growth = result["rss_mb"], result["growth_kb_per_chat"]
    print(f"\n{result['chats_done']} chats ({result['completed']} completed, {result['failed']} failed, "
          f"{result['skipped']} skipped) at {result['achieved_rate_per_s']}/s; RSS {rss['start']} -> "
          f"{rss['end_of_load']} MB at the end of the load, {rss['end']} MB after {args.settle_seconds:g}s idle; "
          f"growth {growth['whole_run']} KB/chat overall, {growth['second_half']} KB/chat in the second half")
    print(f"results: {out}\nchart: {chart}")


if __name__ == "__main__":
    main()
