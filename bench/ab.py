"""An A/B of two checkouts on one machine, in alternating runs, each figure relative to one measured
in the same run, so that the machine's drift between runs (15-25% here) does not count as a change.

    ./scripts/bench --compare REV [--rounds 4 ...]      # REV against the working tree
    python -m bench.ab --base /tmp/base --head . --rounds 4 --out /tmp/ab.json

Each round runs the base, then the head (the order flips every round), each in a process of its own
with that checkout's `src` first on PYTHONPATH (the bench code is this one's, for both), and takes:
- the first-token overhead: p50 of (first token at a delta WebSocket subscriber minus the provider called
  directly just before), both in that run; also its ratio to the direct call's p50;
- the server's CPU per 1000 delivered tokens at `--conversations` x `--tokens` at `--rate` tokens/s
  (one delta subscriber each), and its ratio to the floor measured in that run at the same load:
  the CPU of a relay that reads the provider and writes each piece as one WebSocket frame (floor.py);
- a burst (`--burst` conversations whose POSTs all leave at once, one delta WebSocket subscriber
  each): the lag p99 from the POST, over the provider called directly by as many readers in that run.
The table gives each figure's mean over the rounds for both checkouts and the change, with the spread
of the change measured round by round (a round's head against the base of the same round).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from bench.burst import burst
from bench.floor import relay_cpu_per_token
from bench.harness import ROOT, Fake
from bench.scenarios import ARRIVALS_PER_S, _conversations, overhead

FIGURES = ("overhead_p50_ms", "overhead_over_direct", "cpu_s_per_1000_tokens", "cpu_over_floor",
           "burst_lag_p99_ms", "burst_over_direct")
BURST_TOKENS, BURST_RATE = 100, 50.0


async def one_run(samples: int, conversations: int, tokens: int, rate: float, bursting: int) -> dict[str, Any]:
    """The figures of this process's checkout, measured once."""
    with tempfile.TemporaryDirectory(prefix="streamchat-ab-") as tmp:
        workdir = Path(tmp)
        fake = Fake(workdir)
        try:
            first = await overhead(workdir, fake, samples)
            delta = first["websocket_deltas"]["overhead_ms"]["p50"]
            result: dict[str, Any] = {"overhead_p50_ms": delta,
                                      "overhead_over_direct": round(delta / first["provider_ttft_ms"]["p50"], 4)}
            if conversations:  # 0: the first token alone
                floor = (await relay_cpu_per_token(workdir, fake, conversations, tokens, rate, ARRIVALS_PER_S)
                         )["cpu_s_per_1000_tokens"]
                load = await _conversations(workdir, fake, conversations, tokens, rate)
                cpu = load["server_cpu_s_per_1000_tokens"]
                result |= {"cpu_s_per_1000_tokens": cpu, "cpu_over_floor": round(cpu / floor, 3),
                           "floor_s_per_1000_tokens": floor, "completed": load["completed"],
                           "conversations": conversations}
            if bursting:
                run = (await burst(workdir, fake, [bursting], BURST_TOKENS, BURST_RATE, ("websocket",)))["runs"][0]
                result |= {"burst_lag_p99_ms": run["websocket"]["lag_ms"]["p99"],
                           "burst_over_direct": run["websocket"]["lag_p99_over_direct"],
                           "burst_completed": run["websocket"]["completed"]}
        finally:
            fake.process.stop()
    return result


def run_checkout(checkout: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{checkout / 'src'}{os.pathsep}{ROOT}"}
    command = [sys.executable, "-m", "bench.ab", "--one", "--samples", str(args.samples),
               "--conversations", str(args.conversations), "--tokens", str(args.tokens), "--rate", str(args.rate),
               "--burst", str(args.burst)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def table(runs: dict[str, list[dict[str, Any]]]) -> str:
    lines = [f"{'figure (mean over rounds)':<28}{'base':>12}{'head':>12}{'change':>10}{'spread':>10}"]
    for figure in FIGURES:
        pairs = [(base[figure], head[figure]) for base, head in zip(runs["base"], runs["head"], strict=False)
                 if base.get(figure) and head.get(figure) is not None]
        if not pairs:
            continue
        base_mean = statistics.mean(base for base, _ in pairs)
        head_mean = statistics.mean(head for _, head in pairs)
        changes = [(head / base - 1) * 100 for base, head in pairs]
        spread = f"±{statistics.stdev(changes):.1f}%" if len(changes) > 1 else "-"
        lines.append(f"{figure:<28}{base_mean:>12.4g}{head_mean:>12.4g}{(head_mean / base_mean - 1) * 100:>+9.1f}%"
                     f"{spread:>10}")
    return "\n".join(lines)


def checkout_of(revision: str, into: Path) -> Path:
    """The source tree of `revision` of this repository, unpacked under `into` (its `src` is what runs)."""
    target = into / revision.replace("/", "_")
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", revision, "src"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, help="the checkout to compare against")
    parser.add_argument("--compare", metavar="REV", help="compare the commit REV (its src) instead of a checkout")
    parser.add_argument("--head", type=Path, default=ROOT)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--samples", type=int, default=30, help="first-token samples a run")
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=200, help="conversations fired at once a run (0: none)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(uvloop.run(one_run(args.samples, args.conversations, args.tokens, args.rate, args.burst))))
        return
    if args.compare is not None:
        with tempfile.TemporaryDirectory(prefix="streamchat-compare-") as tmp:
            args.base = checkout_of(args.compare, Path(tmp))
            compare(args)
        return
    if args.base is None:
        parser.error("--base or --compare is needed")
    compare(args)


def compare(args: argparse.Namespace) -> None:
    runs: dict[str, list[dict[str, Any]]] = {"base": [], "head": []}
    for round_number in range(args.rounds):
        order = ("base", "head") if round_number % 2 == 0 else ("head", "base")
        for name in order:
            started = time.time()
            result = run_checkout(args.base if name == "base" else args.head, args)
            runs[name].append(result)
            print(f"round {round_number + 1} {name}: {json.dumps(result)} ({time.time() - started:.0f} s)", flush=True)
    print(table(runs))
    if args.out is not None:
        args.out.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
