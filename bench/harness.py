"""Processes and clients for the benchmark: a fake provider, server processes, WebSocket and SSE watchers,
and readers of one reply through each wire protocol (the conversation's SSE, the AI SDK, OpenAI Responses).

The watchers are streamchat.client's Watch and Events with the measurements around them: when each
piece arrived, how late its stamp was, the bytes each connection received.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from streamchat.client import FINISHED, Change, StreamchatClient, Watch
from streamchat.testing.databases import create_database, drop_database
from streamchat.testing.processes import free_port, start_process, stop_process

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "n": len(ordered)}


class Process:
    """A child process on a loopback port, with its CPU time and peak memory readable from /proc."""

    def __init__(self, args: list[str], env: dict[str, str], health: str, log: Path) -> None:
        self.log = log
        self.popen = start_process(args, env, log, health, cwd=ROOT, timeout=120)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def stop(self) -> None:
        stop_process(self.popen)


class Fake:
    """The fake OpenAI-compatible provider as its own process."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = Process([sys.executable, "-m", "streamchat.testing.fake_openai", "--port", str(self.port)],
                               dict(os.environ), f"{self.url}/control/requests", workdir / "fake.log")

    def script(self, **settings: Any) -> None:
        httpx.post(f"{self.url}/control/reset").raise_for_status()
        httpx.post(f"{self.url}/control", json=settings).raise_for_status()


class Server:
    """One streamchat server process with its own SQLite file."""

    def __init__(self, workdir: Path, fake: Fake | None, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMCHAT_", "OPENAI_"))}
        db = Path(tempfile.mkdtemp(dir=workdir)) / "state.db"
        base.update({"STREAMCHAT_STATE_URL": f"sqlite:///{db}", "STREAMCHAT_LOG_LEVEL": "WARNING",
                     "STREAMCHAT_DATA_DIR": str(ROOT / ".streamchat")})
        if fake is not None:
            base.update({"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": f"{fake.url}/v1", "OPENAI_MODEL": "bench"})
        base.update(env)
        self.process = Process([sys.executable, "-m", "streamchat", "serve", "--port", str(self.port)], base,
                               f"{self.url}/healthz", workdir / f"server-{self.port}.log")

    def store_writes(self) -> int:
        return int(httpx.get(f"{self.url}/api/admin/stats").json()["storeWrites"])

    def store_bytes_written(self) -> int | None:
        """None from a server too old to count them (`--compare` runs older commits)."""
        written = httpx.get(f"{self.url}/api/admin/stats").json().get("storeBytesWritten")
        return None if written is None else int(written)

    def stop(self) -> None:
        self.process.stop()


@dataclass
class WatchResult:
    """What one subscriber saw of one reply."""

    first_token_at: float | None = None
    last_token_at: float | None = None
    done_at: float | None = None
    status: str | None = None
    error: str | None = None
    text: str = ""
    bytes_received: int = 0
    wire_bytes: int = 0
    pieces: int = 0
    #: The longest wait between two frames that added text (for a plain subscriber: whole-item updates).
    longest_gap_ms: float = 0.0
    lags_ms: list[float] = field(default_factory=list)


def stamps(text: str) -> list[float]:
    return [float(part) for part in text.split()]


class CountingConnection(ClientConnection):
    """A WebSocket client connection that counts the bytes that actually cross the wire
    (after permessage-deflate, which the server and this client negotiate)."""

    wire_bytes = 0

    def data_received(self, data: bytes) -> None:
        self.wire_bytes += len(data)
        super().data_received(data)


class WsWatcher:
    """A WebSocket subscriber of one conversation (the client's Watch): plain Motia protocol, or with deltas."""

    def __init__(self, ws_url: str, cid: str, deltas: bool, measure_lag: bool = False) -> None:
        self.ws_url, self.cid, self.deltas, self.measure_lag = ws_url, cid, deltas, measure_lag
        self.result = WatchResult()
        self.reply_id: str | None = None
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 60)

    async def _run(self) -> None:
        async with Watch(self.ws_url, self.cid, deltas=self.deltas, connection=CountingConnection,
                         open_timeout=60) as watch:
            self.ready.set()
            async for change in watch.changes():
                if self._handle(change, time.time()):
                    assert isinstance(watch.socket, CountingConnection)
                    self.result.bytes_received, self.result.wire_bytes = watch.bytes_received, watch.socket.wire_bytes
                    return

    def _handle(self, change: Change, now: float) -> bool:
        item = change.item
        if change.kind == "delete" or item.get("from") != "assistant":
            return False
        if self.reply_id is None:
            self.reply_id = item["id"]
        if item["id"] != self.reply_id:
            return False
        self._text(item["message"], "" if change.restarted else change.appended, now)
        if item["status"] in FINISHED:
            self.result.status, self.result.done_at, self.result.error = item["status"], now, item.get("error")
            return True
        return False

    def _text(self, text: str, new: str, now: float) -> None:
        if new:
            self.result.pieces += 1
            if self.result.last_token_at is not None:
                self.result.longest_gap_ms = max(self.result.longest_gap_ms, (now - self.result.last_token_at) * 1000)
            self.result.last_token_at = now
        if new and self.result.first_token_at is None:
            self.result.first_token_at = now
        if self.measure_lag and new.strip():
            self.result.lags_ms.extend((now - sent) * 1000 for sent in stamps(new))
        self.result.text = text


class SseWatcher:
    """An SSE subscriber of one conversation (the client's Events)."""

    def __init__(self, url: str, cid: str, measure_lag: bool = False) -> None:
        self.url, self.cid, self.measure_lag = url, cid, measure_lag
        self.result = WatchResult()
        self.ready = asyncio.Event()
        self.reply_id: str | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 60)

    async def _run(self) -> None:
        async with StreamchatClient(self.url, timeout=None) as client, client.events(self.cid) as events:
            self.ready.set()
            async for frame in events:
                if self._handle(frame.event, frame.data, time.time()):
                    self.result.bytes_received, self.result.wire_bytes = events.bytes_received, events.wire_bytes
                    return

    def _handle(self, event: str, data: dict[str, Any], now: float) -> bool:
        if event == "delta":
            if self.result.first_token_at is None and data["delta"]:
                self.result.first_token_at = now
            if self.measure_lag:
                self.result.lags_ms.extend((now - sent) * 1000 for sent in stamps(data["delta"]))
            self.result.text += data["delta"]
        elif event == "item" and data["from"] == "assistant":
            self.reply_id = self.reply_id or data["id"]
            if data["id"] == self.reply_id:
                self.result.text = data["message"]
                if data["status"] in FINISHED:
                    self.result.status, self.result.done_at, self.result.error = data["status"], now, data.get("error")
                    return True
        return False


REDIS_URL = os.environ.get("STREAMCHAT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_ADMIN_URL = os.environ.get("STREAMCHAT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pin(pid: int, cpus: set[int]) -> None:
    """Keep every thread of a process (0: this one) on `cpus`; threads started later inherit it."""
    for task in Path(f"/proc/{pid or os.getpid()}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


class Deployment:
    """The servers a scenario runs against: one process, or `instances` sharing Redis and PostgreSQL.

    Requests go to one instance and subscribers watch another (`poster(i)` / `watcher(i)`), so a
    multi-instance run measures the trip through Redis.
    """

    def __init__(self, workdir: Path, fake: Fake | None, instances: int = 1, server_cpus: set[int] | None = None,
                 **env: str) -> None:
        self.database: str | None = None
        if instances > 1:
            self.database = create_database(POSTGRES_ADMIN_URL, "streamchat_bench")
            env = {"STREAMCHAT_BUS_URL": REDIS_URL, "STREAMCHAT_STATE_URL": self.database,
                   "STREAMCHAT_REDIS_PREFIX": f"bench-{uuid.uuid4().hex[:8]}", **env}
        self.servers = [Server(workdir, fake, **env) for _ in range(instances)]
        if server_cpus is not None:
            for server in self.servers:
                pin(server.process.popen.pid, server_cpus)
        if instances > 1:
            self._wait_until_balanced()

    def _wait_until_balanced(self, timeout: float = 60.0) -> None:
        """Measure the steady state: every event partition (of every event step) owned, each instance
        holding its share."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            buses = [httpx.get(f"{s.url}/api/admin/stats").json()["bus"] for s in self.servers]
            owned = [bus["partitionsOwned"] for bus in buses]
            every = buses[0]["partitionsInAll"]
            if sum(owned) == every and min(owned) >= every // len(self.servers):
                return
            time.sleep(0.1)
        raise TimeoutError(f"the instances did not share the bus partitions within {timeout}s")

    def poster(self, index: int = 0) -> Server:
        return self.servers[index % len(self.servers)]

    def watcher(self, index: int = 0) -> Server:
        return self.servers[(index + 1) % len(self.servers)]

    def cpu_seconds(self) -> float:
        return sum(server.process.cpu_seconds() for server in self.servers)

    def peak_rss_mb(self) -> float:
        return max(server.process.peak_rss_mb() for server in self.servers)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.database is not None:
            drop_database(POSTGRES_ADMIN_URL, self.database)
