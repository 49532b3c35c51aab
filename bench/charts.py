"""PNG charts of a benchmark run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _lag_chart(series: list[tuple[str, list[float], list[dict[str, Any]]]], xlabel: str, title: str,
               path: Path) -> Path:
    """p99 and p50 token lag against a count, log-log, with the 100 ms target."""
    figure, axis = plt.subplots(figsize=(7, 4))
    for label, counts, runs in series:
        axis.plot(counts, [r["lag_ms"]["p99"] for r in runs], marker="o", label=f"p99{label}")
        axis.plot(counts, [r["lag_ms"]["p50"] for r in runs], marker=".", linestyle="--", label=f"p50{label}")
    axis.axhline(100, color="red", linewidth=0.8, label="target p99 100 ms")
    axis.set(xlabel=xlabel, ylabel="token delivery lag (ms)", xscale="log", yscale="log", title=title)
    axis.legend(fontsize=8)
    return _save(figure, path)


def draw(results: dict[str, Any], folder: Path) -> list[Path]:
    made: list[Path] = []
    if "concurrency" in results:
        series = [(f", {label.replace('_', ' ')}", [r["conversations"] for r in block["runs"]], block["runs"])
                  for label, block in results["concurrency"].items()]
        made.append(_lag_chart(series, "simultaneous conversations", "Concurrency: per-token lag",
                               folder / "concurrency.png"))
    if "fanout" in results:
        runs = results["fanout"]["runs"]
        made.append(_lag_chart([("", [r["subscribers"] for r in runs], runs)], "subscribers of one reply",
                               "Fan-out: per-token lag", folder / "fanout.png"))
    if "wire" in results:
        figure, axis = plt.subplots(figsize=(7, 4))
        runs = results["wire"]["runs"]
        modes = ["websocket_motia", "websocket_deltas", "sse"]
        width = 0.8 / len(runs)
        for index, run in enumerate(runs):
            axis.bar([m + index * width for m in range(len(modes))],
                     [run["bytes_per_reply_byte"][mode] for mode in modes], width, label=f"{run['tokens']} tokens")
        axis.set_xticks([m + width * (len(runs) - 1) / 2 for m in range(len(modes))], modes)
        axis.axhline(3, color="red", linewidth=0.8, label="target ≤ 3x (deltas)")
        axis.set(ylabel="bytes received per byte of reply", title="Wire cost by mode")
        axis.legend(fontsize=8)
        made.append(_save(figure, folder / "wire.png"))
    return made


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def soak_chart(result: dict[str, Any], path: Path) -> Path:
    """The soak's server RSS against the chats done so far (and the idle tail after the load)."""
    figure, axis = plt.subplots(figsize=(7, 4))
    series = result["series"]
    axis.plot([s["chats_done"] for s in series], [s["rss_mb"] for s in series], marker=".", label="RSS")
    axis.plot([s["chats_done"] for s in series], [s["rss_anon_mb"] for s in series], linestyle="--",
              label="RSS anonymous")
    idle = [s for s in series if s["phase"] in ("drained", "idle")]
    if idle:
        axis.scatter([s["chats_done"] for s in idle], [s["rss_mb"] for s in idle], color="red", zorder=3,
                     s=12, label="after the load")
    axis.plot([s["chats_done"] for s in series], [s["replay_mb"] for s in series], linestyle=":",
              label="resume buffers (the hub's estimate)")
    plan = result["plan"]
    axis.set(xlabel="chats done", ylabel="server RSS (MB)",
             title=f"Soak: {plan['rate_per_s']:g} new chats/s for {plan['minutes']:g} min, "
                   f"{plan['tokens']} tokens, watched by {plan['watch']}")
    axis.set_ylim(bottom=0)
    axis.legend(fontsize=8)
    return _save(figure, path)
