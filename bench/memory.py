"""What an idle WebSocket and a streaming conversation hold in the server's memory.

One server process (SQLite, the fake provider) is measured from outside by its RSS (/proc) and, with
`--trace`, from inside by tracemalloc (a second run: tracing costs memory of its own, so the RSS
figures come from the run without it). Before each reading the server collects its garbage, so a
reading is what is held, not what waits for a collection.

- Idle WebSockets: `sockets` connections with permessage-deflate, as browsers connect, each joined
  to one finished conversation (its `sync` received), then nothing.
- Streaming conversations: `conversations` replies streaming at once, each watched by one WebSocket
  with deltas, read when every reply has streamed `tokens` tokens; the figure per conversation
  includes its subscriber's socket, its provider stream and its resume buffer so far.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from bench.harness import ROOT, Fake
from streamchat.serving import IDLE_COMPRESSOR_SECONDS
from streamchat.testing.processes import free_port, start_process, stop_process

#: Where the server writes a reading when it gets SIGUSR1 (its environment names the file).
READING_FILE = "STREAMCHAT_BENCH_MEMORY_READING"


# -- inside the server process ---------------------------------------------------------------

def _serve(port: int, trace: bool) -> int:
    """Run `streamchat serve`, answering SIGUSR1 with a reading in the file READING_FILE names."""
    import tracemalloc

    from streamchat.cli import serve_command

    if trace:
        tracemalloc.start(1)
    reading_path = Path(os.environ[READING_FILE])
    baseline: list[tracemalloc.Snapshot] = []

    def read(signum: int, frame: FrameType | None) -> None:
        gc.collect()
        reading: dict[str, Any] = {}
        if tracemalloc.is_tracing():
            snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            reading["traced_bytes"] = sum(stat.size for stat in snapshot.statistics("filename"))
            if not baseline:
                baseline.append(snapshot)
            reading["by_line"] = [(str(stat.traceback[0]), stat.size_diff, stat.count_diff)
                                  for stat in snapshot.compare_to(baseline[0], "lineno")[:150]]
            baseline[:] = [snapshot]
        reading_path.with_suffix(".tmp").write_bytes(orjson.dumps(reading))
        reading_path.with_suffix(".tmp").rename(reading_path)

    signal.signal(signal.SIGUSR1, read)
    return serve_command("127.0.0.1", port)


# -- the measuring side ----------------------------------------------------------------------

class MeasuredServer:
    """The server process, read by its RSS and (when tracing) its tracemalloc readings."""

    def __init__(self, workdir: Path, fake: Fake, trace: bool, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/"
        self.reading = workdir / f"reading-{self.port}.json"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMCHAT_", "OPENAI_"))}
        base.update({"STREAMCHAT_STATE_URL": f"sqlite:///{tempfile.mkdtemp(dir=workdir)}/state.db",
                     "STREAMCHAT_LOG_LEVEL": "WARNING", "STREAMCHAT_DATA_DIR": str(ROOT / ".streamchat"),
                     "OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": f"{fake.url}/v1", "OPENAI_MODEL": "bench",
                     READING_FILE: str(self.reading), **env})
        args = [sys.executable, "-m", "bench.memory", "--serve", str(self.port)] + (["--trace"] if trace else [])
        self.process = start_process(args, base, workdir / f"server-{self.port}.log", f"{self.url}/healthz",
                                     cwd=ROOT, timeout=120)

    async def read(self) -> dict[str, Any]:
        """Collect the server's garbage, then its RSS (KB) and, when tracing, what tracemalloc counts."""
        self.reading.unlink(missing_ok=True)
        os.kill(self.process.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while not self.reading.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the server wrote no reading")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # the pages freed by the collection
        reading: dict[str, Any] = orjson.loads(self.reading.read_bytes())
        return {**reading, **_rss_kb(self.process.pid)}

    def stop(self) -> None:
        stop_process(self.process)


def _rss_kb(pid: int) -> dict[str, int]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss_kb": int(status["VmRSS"].split()[0]), "rss_anon_kb": int(status["RssAnon"].split()[0])}


async def _join(ws_url: str, cid: str, deltas: bool) -> ClientConnection:
    socket = await websockets.connect(ws_url, compression="deflate", max_size=None)
    join: dict[str, Any] = {"streamName": "conversation", "groupId": cid}
    if deltas:
        join["delta"] = True
    await socket.send(orjson.dumps({"type": "join", "data": join}).decode())
    first = orjson.loads(await socket.recv())
    assert first["event"]["type"] == "sync", first
    return socket


class Progress:
    """Tokens each watcher has seen, and an event set once every one has seen `tokens`."""

    def __init__(self, watchers: int, tokens: int) -> None:
        self.seen = [0] * watchers
        self.tokens = tokens
        self.short = watchers
        self.reached = asyncio.Event()

    async def drain(self, socket: ClientConnection, index: int) -> None:
        async for frame in socket:
            event = orjson.loads(frame)["event"]
            if event["type"] == "event" and event["event"]["type"] == "delta":
                before = self.seen[index]
                self.seen[index] += len(event["event"]["data"]["delta"].split())
                if before < self.tokens <= self.seen[index]:
                    self.short -= 1
                    if not self.short:
                        self.reached.set()


async def _finished_conversation(client: httpx.AsyncClient, fake: Fake) -> str:
    fake.script(count=20)
    cid = str(uuid.uuid4())
    (await client.post("/chat", json={"message": "go", "conversationId": cid})).raise_for_status()
    for _ in range(200):
        messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
        if messages[-1]["status"] == "completed":
            return cid
        await asyncio.sleep(0.05)
    raise TimeoutError("the warm-up reply did not complete")


def _per(after: dict[str, Any], before: dict[str, Any], count: int, key: str) -> float | None:
    """KB per connection (or conversation) of a reading's `key` (KB, or bytes for the traced count)."""
    if key not in after or key not in before:
        return None
    grown = float(after[key] - before[key])
    return round(grown / count if key.endswith("_kb") else grown / 1024 / count, 1)


async def _warm(server: MeasuredServer, client: httpx.AsyncClient, fake: Fake) -> str:
    """A finished conversation, after the server's first sockets and replies have warmed its caches up."""
    cid = await _finished_conversation(client, fake)
    for _ in range(3):
        warm = [await _join(server.ws_url, cid, deltas) for deltas in (False, True) * 10]
        for socket in warm:
            await socket.close()
        await _finished_conversation(client, fake)
    return cid


async def _idle_sockets(server: MeasuredServer, client: httpx.AsyncClient, fake: Fake, sockets: int,
                        tokens: int) -> dict[str, Any]:
    cid = await _warm(server, client, fake)
    before = await server.read()
    idle = [await _join(server.ws_url, cid, deltas=True) for _ in range(sockets)]
    await asyncio.sleep(2.5 * IDLE_COMPRESSOR_SECONDS)  # idle: past the time a socket keeps its compressor
    after = await server.read()
    for socket in idle:
        await socket.close()
    return {"rss_kb": _per(after, before, sockets, "rss_kb"),
            "rss_anon_kb": _per(after, before, sockets, "rss_anon_kb"),
            "traced_kb": _per(after, before, sockets, "traced_bytes"), "top": after.get("by_line", [])}


async def _streaming(server: MeasuredServer, client: httpx.AsyncClient, fake: Fake, conversations: int,
                     tokens: int) -> dict[str, Any]:
    await _warm(server, client, fake)
    fake.script(count=tokens * 10, delay=0.05)
    before = await server.read()
    cids = [str(uuid.uuid4()) for _ in range(conversations)]
    watchers = [await _join(server.ws_url, each, deltas=True) for each in cids]
    progress = Progress(conversations, tokens)
    drains = [asyncio.create_task(progress.drain(socket, index)) for index, socket in enumerate(watchers)]
    for each in cids:
        (await client.post("/chat", json={"message": "go", "conversationId": each})).raise_for_status()
    await asyncio.wait_for(progress.reached.wait(), 120)
    after = await server.read()
    for drain in drains:
        drain.cancel()
    for socket in watchers:
        await socket.close()
    return {"tokens_seen": [min(progress.seen), max(progress.seen)],
            "rss_kb": _per(after, before, conversations, "rss_kb"),
            "rss_anon_kb": _per(after, before, conversations, "rss_anon_kb"),
            "traced_kb": _per(after, before, conversations, "traced_bytes"), "top": after.get("by_line", [])}


async def measure(workdir: Path, sockets: int, conversations: int, tokens: int, trace: bool,
                  env: dict[str, str]) -> dict[str, Any]:
    """Each scenario on a server of its own, so neither reuses memory the other freed."""
    fake = Fake(workdir)
    result: dict[str, Any] = {"sockets": sockets, "conversations": conversations, "tokens": tokens, "env": env}
    try:
        for name, scenario, count in (("idle_socket", _idle_sockets, sockets),
                                      ("streaming_conversation", _streaming, conversations)):
            server = MeasuredServer(workdir, fake, trace, env)
            try:
                async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                             limits=httpx.Limits(max_connections=10)) as client:
                    result[name] = await scenario(server, client, fake, count, tokens)
            finally:
                server.stop()
    finally:
        fake.process.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help="also count with tracemalloc (in a separate run)")
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=200, help="tokens streamed when the reading is taken")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.serve is not None:
        sys.exit(_serve(args.serve, args.trace))
    env = dict(pair.split("=", 1) for pair in args.env)
    with tempfile.TemporaryDirectory() as workdir:
        result = asyncio.run(measure(Path(workdir), args.sockets, args.conversations, args.tokens, False, env))
    if args.trace:  # tracing costs memory of its own: its figures come from a second run
        with tempfile.TemporaryDirectory() as workdir:
            traced = asyncio.run(measure(Path(workdir), args.sockets, args.conversations, args.tokens, True, env))
        for name in ("idle_socket", "streaming_conversation"):
            result[name].update(traced_kb=traced[name]["traced_kb"], top=traced[name]["top"])
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
