"""`./scripts/bench [--quick]`: run every scenario, print a table, write bench/results/latest.json and charts."""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from bench import ab, protocols, scenarios, soak
from bench.burst import burst
from bench.charts import draw
from bench.costs import costs
from bench.harness import ROOT, Fake
from bench.plain import plain_pace
from bench.tool_calls import tool_round_trip
from streamchat.llm.local_models import KNOWN

RESULTS = ROOT / "bench" / "results"
EMBEDDED_PROMPTS = [
    "Tell me a long story about a dragon and a lighthouse.",
    "Explain how a bicycle works, step by step.",
    "Write a letter to a friend about a trip to the mountains.",
    "Describe a busy market in a small town on a Saturday morning.",
    "What should I pack for a week of camping, and why?",
    "Explain why the sky is blue to a ten-year-old.",
]

FULL = {"overhead_samples": 50, "counts": [1, 100, 500, 1000], "tokens": 200, "rates": [20.0, 50.0],
        "fanout": [1, 10, 100, 1000], "wire": [200, 2000], "wire_rate": 200.0, "embedded_tokens": 128,
        "embedded_rounds": 3,
        "scale_overhead_samples": 30, "scale_counts": [1, 100, 500], "scale_rates": [20.0],
        "scale_fanout": [10, 100, 1000], "core_counts": [500, 600, 700, 800, 1000],
        "finer_counts": [200, 300, 400], "costs": {"streams": 100, "read_tokens": 400, "conversations": 500},
        "protocols": {"readers": [1, 100, 500], "tokens": 200}, "tool_samples": 30,
        "burst": {"counts": [1, 200, 1000], "tokens": 100, "rate": 50.0},
        "plain": {"short": 100, "short_replies": 5, "long": 560, "rate": 50.0}}
#: One run of each scenario, the smallest that still exercises it (each run of the scale scenario starts
#: two instances and waits for them to share the bus, so it has one count and one fan-out).
QUICK = {"overhead_samples": 5, "counts": [20], "tokens": 40, "rates": [50.0],
         "fanout": [20], "wire": [50, 200], "wire_rate": 400.0, "embedded_tokens": 16,
         "embedded_rounds": 1,
         "scale_overhead_samples": 3, "scale_counts": [10], "scale_rates": [50.0], "scale_fanout": [10],
         "core_counts": [10], "finer_counts": [10], "costs": {"streams": 5, "read_tokens": 50, "conversations": 10},
         "protocols": {"readers": [5], "tokens": 40}, "tool_samples": 3,
         "burst": {"counts": [5], "tokens": 20, "rate": 50.0},
         "plain": {"short": 20, "short_replies": 2, "long": 60, "rate": 100.0}}


async def embedded_models(workdir: Path, max_tokens: int, rounds: int) -> dict[str, Any]:
    """Scenario 5 for every named embedded model (the default first)."""
    return {model: await scenarios.embedded(workdir, max_tokens, EMBEDDED_PROMPTS, model, rounds)
            for model in KNOWN}


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


async def run(plan: dict[str, Any], only: set[str] | None) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "plan": plan}
    with tempfile.TemporaryDirectory(prefix="streamchat-bench-") as tmp:
        workdir = Path(tmp)
        fake = Fake(workdir)
        try:
            steps: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = [
                ("overhead", lambda: scenarios.overhead(workdir, fake, plan["overhead_samples"])),
                ("concurrency", lambda: scenarios.concurrency(workdir, fake, plan["counts"], plan["tokens"],
                                                              plan["rates"], finer=plan["finer_counts"])),
                ("dedicated_core", lambda: scenarios.dedicated_core(workdir, fake, plan["core_counts"],
                                                                    plan["tokens"], plan["rates"][0])),
                ("fanout", lambda: scenarios.fanout(workdir, fake, plan["fanout"], plan["tokens"], plan["rates"][0])),
                ("fanout_uncompressed", lambda: scenarios.fanout(workdir, fake, plan["fanout"][-1:], plan["tokens"],
                                                                 plan["rates"][0], compression=False)),
                ("wire", lambda: scenarios.wire(workdir, fake, plan["wire"], plan["wire_rate"])),
                ("wire_uncompressed", lambda: scenarios.wire(workdir, fake, plan["wire"], plan["wire_rate"],
                                                             compression=False)),
                ("plain_pace", lambda: plain_pace(workdir, fake, **plan["plain"])),
                ("embedded", lambda: embedded_models(workdir, plan["embedded_tokens"], plan["embedded_rounds"])),
                ("scale", lambda: scenarios.scale(workdir, fake, plan)),
                ("costs", lambda: costs(workdir, fake, **plan["costs"], tokens=plan["tokens"], rate=plan["rates"][0])),
                ("protocols", lambda: protocols.protocols(workdir, fake, plan["protocols"]["readers"],
                                                          plan["protocols"]["tokens"], plan["rates"][0])),
                ("tools", lambda: tool_round_trip(workdir, fake, plan["tool_samples"])),
                ("burst", lambda: burst(workdir, fake, **plan["burst"])),
            ]
            for name, scenario in steps:
                if only and name not in only:
                    continue
                print(f"== {name}", flush=True)
                started = time.time()
                results[name] = await scenario()
                results.setdefault("scenario_seconds", {})[name] = round(time.time() - started, 1)
        finally:
            fake.process.stop()
    return results


def table(results: dict[str, Any]) -> str:
    lines = [f"machine: {results['machine']['cpus']} cores, {results['machine']['cpu']}, "
             f"Python {results['machine']['python']}, {results['machine']['date']}"]
    if "overhead" in results:
        lines.extend(overhead_lines("1. first token (ms)", results["overhead"]))
    if "concurrency" in results:
        lines.extend(concurrency_lines("2. concurrency", results["concurrency"]))
    if "dedicated_core" in results:
        core = results["dedicated_core"]
        if "skipped" in core:
            lines.append(f"\n2b. server on a core of its own: skipped ({core['skipped']})")
        else:
            lines.append(f"\n2b. the server alone on CPU {core['server_cpus']}, provider and clients on "
                         f"{core['load_cpus']}")
            lines.extend(concurrency_lines("   one core", {k: v for k, v in core.items()
                                                           if k.endswith("_tokens_per_s")}))
    if "fanout" in results:
        lines.extend(fanout_lines("3. fan-out", [results[key] for key in ("fanout", "fanout_uncompressed")
                                                 if key in results]))
    if "wire" in results or "wire_uncompressed" in results:
        lines.extend(wire_lines([results[key] for key in ("wire", "wire_uncompressed") if key in results]))
    if "plain_pace" in results:
        lines.extend(plain_pace_lines(results["plain_pace"]))
    if "embedded" in results:
        lines.append("\n5. embedded models")
        for model, e in results["embedded"].items():
            lines.append(f"   {model:<22} direct {e['direct']['tokens_per_s']} tok/s "
                         f"(TTFT {e['direct']['ttft_ms']} ms)"
                         f"  via pipeline {e['through_pipeline']['tokens_per_s']} tok/s (TTFT "
                         f"{e['through_pipeline']['ttft_ms']} ms)  ratio {e['tokens_per_s_ratio']}")
    if "scale" in results:
        scaled = results["scale"]
        lines.append(f"\n6. scale: {scaled['instances']} instances on Redis + PostgreSQL, "
                     "POST to one, watch on the other")
        lines.extend(overhead_lines("   first token (ms)", scaled["overhead"]))
        lines.extend(concurrency_lines("   concurrency", scaled["concurrency"]))
        lines.extend(fanout_lines("   fan-out", [scaled["fanout"]]))
    if "costs" in results:
        lines.extend(cost_lines(results))
    if "protocols" in results:
        lines.extend(protocol_lines(results["protocols"]))
    if "tools" in results:
        trip = results["tools"]["round_trip_ms"]
        lines.append(f"\n9. a calculator call's round trip (model round ended → model asked again), "
                     f"{results['tools']['samples']} calls: p50 {trip['p50']} ms, p95 {trip['p95']} ms")
    if "burst" in results:
        lines.extend(burst_lines(results["burst"]))
    return "\n".join(lines)


def burst_lines(b: dict[str, Any]) -> list[str]:
    """Scenario 10: the provider called directly, then each transport, every POST of a run at once."""
    title = f"10. burst ({b['tokens']} tokens at {b['tokens_per_s']:g}/s, lag from the POST)"
    lines = [f"\n{title:<56} done   lag p50   lag p99  p99/direct  POST p99"]
    for run in b["runs"]:
        count, direct = run["conversations"], run["direct"]
        lines.append(f"   {count:>5} provider direct {'':<34} {direct['completed']:>5} {direct['lag_ms']['p50']!s:>9} "
                     f"{direct['lag_ms']['p99']!s:>9}")
        for transport in b["transports"]:
            r = run[transport]
            lines.append(f"   {count:>5} {transport:<50} {r['completed']:>5} {r['lag_ms']['p50']!s:>9} "
                         f"{r['lag_ms']['p99']!s:>9} {r['lag_p99_over_direct']!s:>11} {r['post_ms']['p99']!s:>9}")
    return lines


def wire_lines(blocks: list[dict[str, Any]]) -> list[str]:
    """Scenario 4: one row per reply length, compression on then off."""
    lines = ["\n4. wire bytes per reply byte   tokens  motia-ws  deltas-ws     sse  store writes  store B/reply B"
             "  compression  motia-ws updates, longest gap ms"]
    for block in blocks:
        for r in block["runs"]:
            b = r["bytes_per_reply_byte"]
            lines.append(f"   {'':<26} {r['tokens']:>7} {b['websocket_motia']:>9} {b['websocket_deltas']:>10} "
                         f"{b['sse']:>7} {r['store_writes_per_reply']:>13} "
                         f"{r.get('store_bytes_per_reply_byte', '-')!s:>16}  {block.get('compression', True)!s:>11}"
                         f"  {r.get('plain_updates', '-')!s:>16}, {r.get('plain_longest_gap_ms', '-')}")
    return lines


def plain_pace_lines(p: dict[str, Any]) -> list[str]:
    """Scenario 4b: plain Motia subscribers against delta ones at C=1."""
    lines = [f"\n4b. plain vs delta at C=1 ({p['tokens_per_s']:g} tok/s)  tokens x replies  compression"
             "  lag p50/p99 plain   lag p50/p99 deltas  p99 ratio  plain updates  longest gap ms  wire B/B plain"]
    for r in p["runs"]:
        plain, deltas = r["lag_ms"]["plain"], r["lag_ms"]["deltas"]
        lines.append(f"   {'':<35} {r['tokens']:>6} x {r['replies']:<3} {r['compression']!s:>11}"
                     f"  {plain['p50']!s:>7} / {plain['p99']!s:<8}  {deltas['p50']!s:>7} / {deltas['p99']!s:<9}"
                     f"  {r['plain_to_deltas_p99']!s:>9}  {r['plain_updates_per_reply']:>13}"
                     f"  {r['plain_longest_gap_ms']:>14}  {r['wire_bytes_per_reply_byte']['plain']:>14}")
    return lines


def protocol_lines(p: dict[str, Any]) -> list[str]:
    """Scenario 8: one row per protocol x readers."""
    title = f"8. protocols ({p['tokens']} tokens at {p['tokens_per_s']:g}/s)"
    lines = [f"\n{title:<37} readers   lag p50   lag p99  complete  cpu µs/tok/reader  cpu util  wire B/reply B"]
    for r in p["runs"]:
        lines.append(f"   {r['protocol']:<34} {r['readers']:>7} {r['lag_ms']['p50']!s:>9} {r['lag_ms']['p99']!s:>9} "
                     f"{r['complete']:>9} {r['server_cpu_us_per_token_per_reader']:>18} "
                     f"{r['server_cpu_utilisation']:>9} {r['wire_bytes_per_reply_byte']:>15}")
    return lines


def cost_lines(results: dict[str, Any]) -> list[str]:
    """Scenario 7, with the whole-server figures of scenarios 2 and 3 beside it when they ran."""
    c = results["costs"]
    read, unwatched = c["provider_read_us_per_token"], c["unwatched_server"]
    lines = ["\n7. CPU per token (µs)",
             f"   reading the provider through the SDK   {read['sdk']:>7}   (aiohttp + orjson alone: "
             f"{read['aiohttp_floor']})",
             f"   server, nobody watching                {unwatched['server_us_per_token']:>7}   "
             f"({unwatched['conversations']} conversations x {c['tokens']} tokens at {c['tokens_per_s']:g}/s, "
             f"{unwatched['completed']} completed)"]
    watched = [run for block in results.get("concurrency", {}).values() for run in block["runs"]
               if run["conversations"] == unwatched["conversations"] and run["tokens_per_s_each"] == c["tokens_per_s"]]
    if watched:
        per_token = watched[0]["server_cpu_s_per_1000_tokens"] * 1000
        lines.append(f"   server, one delta subscriber each      {per_token:>7.1f}   (scenario 2, same load)")
        if "relay_floor_us_per_token" in c:
            relay = c["relay_floor_us_per_token"]
            lines.append(f"   floor: read + one frame, nothing else  {relay:>7.1f}   (a relay, same load; the server "
                         f"is {per_token / relay:.2f}x it)")
    widest = max((run for run in results.get("fanout", {}).get("runs", [])), key=lambda r: r["subscribers"],
                 default=None)
    if widest is not None:
        per_frame = widest["server_cpu_s"] / (widest["subscribers"] * c["tokens"]) * 1e6
        lines.append(f"   one WebSocket frame written            {per_frame:>7.1f}   (scenario 3, "
                     f"{widest['subscribers']} subscribers)")
    return lines


def overhead_lines(title: str, o: dict[str, Any]) -> list[str]:
    lines = [f"\n{title:<24} p50      p95      p99   overhead p50/p99   ratio p50",
             f"   provider direct   {o['provider_ttft_ms']['p50']:>8} {o['provider_ttft_ms']['p95']:>8} "
             f"{o['provider_ttft_ms']['p99']:>8}"]
    for name in ("websocket_motia", "websocket_deltas", "sse"):
        f, d = o[name]["first_token_ms"], o[name]["overhead_ms"]
        lines.append(f"   {name:<17} {f['p50']:>8} {f['p95']:>8} {f['p99']:>8}   {d['p50']:>6} / {d['p99']:<8}"
                     f"  {o[name]['ratio_p50']}")
    return lines


def concurrency_lines(title: str, blocks: dict[str, Any]) -> list[str]:
    lines = [f"\n{title:<19} conv  tok/s   done    lag p50   lag p99  cpu s/1k tok  cpu util  rss MB"]
    for block in blocks.values():
        for r in block["runs"]:
            lines.append(f"   {'':<14} {r['conversations']:>6} {r['tokens_per_s_each']:>6g} "
                         f"{r['completion_rate']:>6.1%} {r['lag_ms']['p50']!s:>9} {r['lag_ms']['p99']!s:>9} "
                         f"{r['server_cpu_s_per_1000_tokens']:>13} {r['server_cpu_utilisation']:>9} "
                         f"{r['server_peak_rss_mb']:>7}")
    return lines


def fanout_lines(title: str, blocks: list[dict[str, Any]]) -> list[str]:
    lines = [f"\n{title:<14} subscribers   lag p50   lag p99   cpu s  complete  compression"]
    for block in blocks:
        for r in block["runs"]:
            lines.append(f"   {'':<12} {r['subscribers']:>11} {r['lag_ms']['p50']!s:>9} {r['lag_ms']['p99']!s:>9} "
                         f"{r['server_cpu_s']:>7} {r['complete_copies']:>9}  {block['compression']}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark streamchat against a fake provider on 127.0.0.1.")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run (about two minutes) that checks the harness")
    parser.add_argument("--only", default="",
                        help="comma-separated scenarios: overhead,concurrency,dedicated_core,fanout,"
                             "fanout_uncompressed,wire,wire_uncompressed,plain_pace,embedded,scale,costs,"
                             "protocols,tools,burst")
    parser.add_argument("--out", default=None, help="where to write the JSON results (default "
                        "bench/results/latest.json, or soak.json with --soak)")
    parser.add_argument("--soak", action="store_true",
                        help="run only the memory soak instead (bench/soak.py; its options follow, e.g. "
                             "--minutes 8 --rate 10); never part of the default run nor of --quick")
    parser.add_argument("--compare", metavar="REV",
                        help="an A/B of the commit REV against the working tree instead, in alternating runs "
                             "(bench/ab.py; its options follow, e.g. --rounds 6 --burst 500)")
    args, rest = parser.parse_known_args()
    if args.compare:
        ab.main(["--compare", args.compare, *rest, *([] if args.out is None else ["--out", args.out])])
        return
    if args.soak:
        soak.main(rest + ([] if args.out is None else ["--out", args.out]))
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    plan = QUICK if args.quick else FULL
    # The clients' own pauses must not show up as lag: a full collection over the SDK's and the
    # clients' modules takes ~40 ms here, so they are left out of it, as the server does.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    # The same event loop as the server (uvicorn runs uvloop): the load clients cost less CPU, and the
    # provider measured directly is read the way the server reads it.
    results = uvloop.run(run(plan, {name for name in args.only.split(",") if name} or None))
    results["mode"] = "quick" if args.quick else "full"
    out = Path(args.out or RESULTS / "latest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    charts = draw(results, out.parent)
    print("\n" + table(results))
    print(f"\nresults: {out}" + (f"\ncharts: {', '.join(str(c) for c in charts)}" if charts else ""))


if __name__ == "__main__":
    main()
