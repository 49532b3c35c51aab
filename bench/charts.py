"""PNG charts of a benchmark run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def draw(results: dict[str, Any], folder: Path) -> list[Path]:
    made: list[Path] = []
    if "concurrency" in results:
        figure, axis = plt.subplots(figsize=(7, 4))
        for label, block in results["concurrency"].items():
            runs = block["runs"]
            counts = [r["conversations"] for r in runs]
            axis.plot(counts, [r["lag_ms"]["p99"] for r in runs], marker="o", label=f"p99, {label.replace('_', ' ')}")
            axis.plot(counts, [r["lag_ms"]["p50"] for r in runs], marker=".", linestyle="--",
                      label=f"p50, {label.replace('_', ' ')}")
        axis.axhline(100, color="red", linewidth=0.8, label="target p99 100 ms")
        axis.set(xlabel="simultaneous conversations", ylabel="token delivery lag (ms)", xscale="log", yscale="log",
                 title="Concurrency: per-token lag")
        axis.legend(fontsize=8)
        made.append(_save(figure, folder / "concurrency.png"))
    if "fanout" in results:
        figure, axis = plt.subplots(figsize=(7, 4))
        runs = results["fanout"]["runs"]
        counts = [r["subscribers"] for r in runs]
        axis.plot(counts, [r["lag_ms"]["p99"] for r in runs], marker="o", label="p99")
        axis.plot(counts, [r["lag_ms"]["p50"] for r in runs], marker=".", linestyle="--", label="p50")
        axis.axhline(100, color="red", linewidth=0.8, label="target p99 100 ms")
        axis.set(xlabel="subscribers of one reply", ylabel="token delivery lag (ms)", xscale="log", yscale="log",
                 title="Fan-out: per-token lag")
        axis.legend(fontsize=8)
        made.append(_save(figure, folder / "fanout.png"))
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
