"""Plain Motia subscribers beside delta ones, one conversation at a time (C=1).

A plain subscriber gets whole items, so how late its text is depends on when the server sends it
the item again, not on the frame path alone. Both subscribers watch the same reply of stamped
tokens, so their lags are compared on the same tokens in the same moment of a shared machine. A
long reply (about ten thousand characters) shows the longest wait between two whole-item updates
and the bytes on the wire once the item no longer fits the compressor's window; each case runs
with WebSocket compression on and off (a client that does not negotiate it pays raw bytes).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from bench.harness import Fake, Server, WatchResult, WsWatcher, percentiles, stamps
from streamchat.client import StreamchatClient


async def plain_pace(workdir: Path, fake: Fake, short: int, short_replies: int, long: int,
                     rate: float) -> dict[str, Any]:
    """`short_replies` replies of `short` tokens, then one of `long`, each with compression on and off."""
    runs: list[dict[str, Any]] = []
    for compression in (True, False):
        # One server for both lengths: its first reply (a warm-up, not measured) pays for the imports.
        server = Server(workdir, fake, STREAMCHAT_WS_COMPRESSION="on" if compression else "off")
        try:
            for tokens, replies in ((short, short_replies), (long, 1)):
                runs.append(await _replies(server, fake, tokens, replies, rate, compression, warm=not runs
                                           or runs[-1]["compression"] != compression))
                _report(runs[-1])
        finally:
            server.stop()
    return {"tokens_per_s": rate, "runs": runs}


def _report(run: dict[str, Any]) -> None:
    print(f"  plain pace {run['tokens']:>5} tokens x {run['replies']} "
          f"(compression {'on' if run['compression'] else 'off'}): "
          f"lag p99 plain {run['lag_ms']['plain']['p99']} / deltas {run['lag_ms']['deltas']['p99']} ms, "
          f"longest plain gap {run['plain_longest_gap_ms']} ms, "
          f"plain {run['wire_bytes_per_reply_byte']['plain']} wire B/B", flush=True)


async def _replies(server: Server, fake: Fake, tokens: int, replies: int, rate: float,
                   compression: bool, warm: bool) -> dict[str, Any]:
    """`replies` replies one after the other, each watched plain and with deltas (after one not
    measured when `warm`: the first reply of a fresh server pays for its imports)."""
    fake.script(count=tokens, delay=1 / rate, stamp=True)
    seen: dict[str, list[WatchResult]] = {"plain": [], "deltas": []}
    async with StreamchatClient(server.url, timeout=60) as client:
        for index in range(-1 if warm else 0, replies):
            cid = str(uuid.uuid4())
            plain, deltas = (WsWatcher(server.ws_url, cid, deltas=False, measure_lag=True),
                             WsWatcher(server.ws_url, cid, deltas=True, measure_lag=True))
            for watcher in (plain, deltas):
                await watcher.start()
            await client.send("pace", cid)
            await asyncio.wait_for(asyncio.gather(*(w.task for w in (plain, deltas) if w.task)),
                                   tokens / rate + 60)
            if index < 0:
                continue  # the warm-up
            for name, watcher in (("plain", plain), ("deltas", deltas)):
                if len(stamps(watcher.result.text)) != tokens or watcher.result.status != "completed":
                    raise RuntimeError(f"the {name} subscriber saw {watcher.result.status} with "
                                       f"{len(stamps(watcher.result.text))} of {tokens} tokens")
                seen[name].append(watcher.result)
    reply_bytes = sum(len(result.text.encode()) for result in seen["deltas"])
    lags = {name: percentiles([lag for result in results for lag in result.lags_ms]) for name, results in seen.items()}
    plain_p99, deltas_p99 = lags["plain"]["p99"], lags["deltas"]["p99"]
    return {
        "tokens": tokens, "replies": replies, "compression": compression,
        "reply_bytes": reply_bytes // replies, "lag_ms": lags,
        "plain_to_deltas_p99": round(plain_p99 / deltas_p99, 2) if plain_p99 and deltas_p99 else None,
        "plain_updates_per_reply": round(sum(r.pieces for r in seen["plain"]) / replies, 1),
        "plain_longest_gap_ms": round(max(r.longest_gap_ms for r in seen["plain"]), 1),
        "wire_bytes_per_reply_byte": {name: round(sum(r.wire_bytes for r in results) / reply_bytes, 3)
                                      for name, results in seen.items()},
    }
