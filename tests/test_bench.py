"""Smoke test of the benchmark harness: `./scripts/bench --quick` runs end to end and writes its results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT


def short_of_complete(block: dict[str, Any]) -> str:
    """The runs of a scenario that did not complete every reply, whole (pytest shortens a dict)."""
    return json.dumps([run for run in block["runs"] if run["completion_rate"] != 1.0], indent=1)


@pytest.mark.timeout(660)  # the run itself is bounded below
def test_quick_benchmark_runs_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    # A bound on a hang, not on speed: the run takes about two minutes alone, several times
    # that beside other work on two cores.
    result = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert {"overhead", "concurrency", "dedicated_core", "fanout", "wire", "embedded", "scale", "costs",
            "protocols", "tools", "burst", "machine"} <= results.keys()
    assert results["tools"]["round_trip_ms"]["n"] == 3 and results["tools"]["round_trip_ms"]["p50"] > 0
    assert results["scale"]["instances"] == 2
    for block in results["scale"]["concurrency"].values():
        assert all(run["completion_rate"] == 1.0 for run in block["runs"]), short_of_complete(block)
    assert results["overhead"]["websocket_motia"]["first_token_ms"]["n"] == 5
    for block in results["concurrency"].values():
        assert all(run["completion_rate"] == 1.0 for run in block["runs"]), short_of_complete(block)
    for run in results["wire"]["runs"]:
        assert set(run["bytes_per_reply_byte"]) == {"websocket_motia", "websocket_deltas", "sse"}
    assert list(results["embedded"]) == ["smollm2-135m-instruct", "gemma3-270m"]
    for model in results["embedded"].values():
        piped = model["through_pipeline"]
        assert piped["tokens"] == model["direct"]["tokens"] > 0 and 0 < piped["frames"] <= piped["tokens"]
    cpus = os.sched_getaffinity(0)
    if len(cpus) >= 2 and 0 in cpus:  # the machines this runs on have two cores: the run must happen
        block = results["dedicated_core"]["50_tokens_per_s"]  # --quick runs at 50 tokens/s
        assert [run["completion_rate"] for run in block["runs"]] == [1.0], block
    else:
        assert "skipped" in results["dedicated_core"]
    for chart in ("concurrency.png", "fanout.png", "wire.png"):
        assert (tmp_path / chart).stat().st_size > 1000
    unwatched = results["costs"]["unwatched_server"]
    assert unwatched["completed"] == unwatched["conversations"] == 10 and unwatched["server_us_per_token"] > 0
    assert results["costs"]["provider_read_us_per_token"]["sdk"] > 0
    runs = results["protocols"]["runs"]
    assert {run["protocol"] for run in runs} == {"conversation_sse", "ai_sdk", "openai_responses"}
    for run in runs:
        assert run["complete"] == run["readers"], run
        assert run["lag_ms"]["n"] > 0 and run["wire_bytes_per_reply_byte"] > 1, run
    assert "7. CPU per token" in result.stdout and "8. protocols" in result.stdout
    assert "9. a calculator call's round trip" in result.stdout and "10. burst" in result.stdout
    burst = results["burst"]["runs"][0]
    assert burst["direct"]["completed"] == 5
    for transport in ("websocket", "sse"):
        assert burst[transport]["completed"] == 5 and burst[transport]["lag_ms"]["n"] == 5 * 20, burst
    assert results["costs"]["relay_floor_us_per_token"] > 0
    assert "1. first token" in result.stdout and "6. scale: 2 instances" in result.stdout
    assert "2b. the server alone on CPU" in result.stdout or "2b. server on a core of its own: skipped" in result.stdout
