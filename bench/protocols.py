"""Scenario 8: one reply read through each wire protocol that streams it as SSE (the conversation's
own events, the Vercel AI SDK's UI message stream, OpenAI Responses), by many readers at once.

A `ProtocolReader` reads one reply through one protocol over httpx: it turns the protocol's frames
into pieces of the reply (text added, or the whole text so far) and measures each token's lag.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.harness import Fake, Server, WatchResult, percentiles, stamps
from bench.scenarios import _ending
from streamchat.client import FINISHED, StreamchatClient


@dataclass(frozen=True, slots=True)
class Piece:
    """What one frame of a protocol tells about the reply: text it adds, or the whole text so far; the
    reply's status when the frame says it; whether it is the reply's last frame."""

    added: str = ""
    whole: str | None = None
    status: str | None = None
    last: bool = False


@dataclass(frozen=True)
class Protocol:
    """A wire protocol that streams one reply as SSE: where to GET it, and the reply's piece in each frame."""

    name: str
    path: Callable[[str, str], str]  # (conversation id, reply id) -> path
    piece: Callable[[str, bytes, bytes], Piece | None]  # (reply id, event, data) -> piece


def _conversation_piece(reply_id: str, event: bytes, data: bytes) -> Piece | None:
    """The conversation's own SSE: `delta` adds text, `item` carries the whole reply (first and last)."""
    if event not in (b"delta", b"item"):
        return None
    body = orjson.loads(data)
    if body["id"] != reply_id:
        return None  # the user's message, in the snapshot
    if event == b"delta":
        return Piece(added=body["delta"])
    return Piece(whole=body["message"], status=body["status"], last=body["status"] in FINISHED)


def _ui_message_piece(reply_id: str, event: bytes, data: bytes) -> Piece | None:
    """The Vercel AI SDK's UI message stream: `text-delta` chunks, the status in `message-metadata`, `[DONE]`."""
    if data == b"[DONE]":
        return Piece(last=True)
    body = orjson.loads(data)
    if body["type"] == "text-delta":
        return Piece(added=body["delta"])
    if body["type"] == "message-metadata":
        return Piece(status=body["messageMetadata"]["status"])
    return None


def _responses_piece(reply_id: str, event: bytes, data: bytes) -> Piece | None:
    """The OpenAI Responses event stream: `response.output_text.delta` events, then one terminal event."""
    if event == b"response.output_text.delta":
        return Piece(added=orjson.loads(data)["delta"])
    if event in (b"response.completed", b"response.failed", b"response.incomplete"):
        return Piece(status=orjson.loads(data)["response"]["status"], last=True)
    return None


PROTOCOLS = (
    Protocol("conversation_sse", lambda cid, reply: f"/api/conversations/{cid}/events", _conversation_piece),
    Protocol("ai_sdk", lambda cid, reply: f"/api/chat/{cid}/stream", _ui_message_piece),
    Protocol("openai_responses", lambda cid, reply: f"/v1/responses/{reply}?stream=true", _responses_piece),
)


class ProtocolReader:
    """One reader of one reply through one protocol, over httpx: `start()` opens the stream, `task` reads it.

    Lag is measured only for tokens sent after the stream opened: the ones before are the backlog
    every resume sends at once, which measures when the reader came, not the server.
    """

    def __init__(self, http: httpx.AsyncClient, protocol: Protocol, cid: str, reply_id: str) -> None:
        self.http, self.protocol, self.reply_id = http, protocol, reply_id
        self.path = protocol.path(cid, reply_id)
        self.result = WatchResult()
        self.opened_at = 0.0
        self.backlog_tokens = 0
        self.task: asyncio.Task[None] | None = None
        self._parts: list[str] = []  # the text so far, joined at the end, so a piece costs O(1)
        self._length = 0

    async def start(self) -> None:
        response = await self.http.send(self.http.build_request("GET", self.path), stream=True)
        self.opened_at = time.time()
        self.task = asyncio.create_task(self._read(response))

    async def _read(self, response: httpx.Response) -> None:
        try:
            if response.status_code != 200:
                self.result.status = f"HTTP {response.status_code}"
                return
            buffer = b""
            async for chunk in response.aiter_bytes():
                now = time.time()
                self.result.bytes_received += len(chunk)
                *frames, buffer = (buffer + chunk).split(b"\n\n")
                for frame in frames:
                    if self._frame(frame, now):
                        return
        finally:
            self.result.text = "".join(self._parts)
            self.result.wire_bytes = response.num_bytes_downloaded
            await response.aclose()

    def _frame(self, frame: bytes, now: float) -> bool:
        """Parse one SSE frame (comments and `retry:` skipped); True once it was the reply's last."""
        event, data = b"message", []
        for line in frame.split(b"\n"):
            name, _, value = line.partition(b":")
            if name == b"event":
                event = value.strip()
            elif name == b"data":
                data.append(value[1:] if value[:1] == b" " else value)
        piece = self.protocol.piece(self.reply_id, event, b"\n".join(data)) if data else None
        if piece is None:
            return False
        added = piece.added
        if piece.whole is not None:
            added = piece.whole[self._length:]
            self._parts, self._length = [piece.whole], len(piece.whole)
        elif added:
            self._parts.append(added)
            self._length += len(added)
        if added:
            self._measure(added, now)
        if piece.status is not None:
            self.result.status = piece.status
        if piece.last:
            self.result.done_at = now
        return piece.last

    def _measure(self, added: str, now: float) -> None:
        self.result.pieces += 1
        self.result.first_token_at = self.result.first_token_at or now
        self.result.last_token_at = now
        for sent in stamps(added):
            if sent >= self.opened_at:
                self.result.lags_ms.append((now - sent) * 1000)
            else:
                self.backlog_tokens += 1


async def protocols(workdir: Path, fake: Fake, readers: list[int], tokens: int, rate: float) -> dict[str, Any]:
    """One reply read by N concurrent readers through each wire protocol in turn (one protocol per run).

    Every protocol view follows the reply through an item watch and renders each piece into its own
    frame for each reader; this shows what that costs per token and per reader, next to the
    conversation's own SSE (one frame serialised for everyone). The readers join once the reply has
    begun, as a resume does (the AI SDK's answers 204 before that).
    """
    out: dict[str, Any] = {"tokens": tokens, "tokens_per_s": rate, "runs": []}
    for protocol in PROTOCOLS:
        for count in readers:
            run = await _protocol_run(workdir, fake, protocol, count, tokens, rate)
            out["runs"].append(run)
            print(f"  protocols {protocol.name:<17} {count:>5} readers: lag p50/p99 {run['lag_ms']['p50']} / "
                  f"{run['lag_ms']['p99']} ms, complete {run['complete']}/{count}, "
                  f"{run['server_cpu_us_per_token_per_reader']} µs/token/reader, "
                  f"{run['wire_bytes_per_reply_byte']} wire B/B", flush=True)
    return out


async def _protocol_run(workdir: Path, fake: Fake, protocol: Protocol, count: int, tokens: int,
                        rate: float) -> dict[str, Any]:
    """One reply, `count` readers of it through `protocol`, on a server of its own."""
    fake.script(count=tokens, delay=1 / rate, stamp=True)
    server = Server(workdir, fake)
    try:
        limits = httpx.Limits(max_connections=count + 1, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http, \
                StreamchatClient(server.url, timeout=60) as client:
            cpu_before, client_cpu_before = server.process.cpu_seconds(), time.process_time()
            started = time.time()
            reply = await client.send("protocols", str(uuid.uuid4()))
            cid, reply_id = reply.conversation_id, reply.assistant_message_id
            readers = [ProtocolReader(http, protocol, cid, reply_id) for _ in range(count)]
            for batch in range(0, count, 100):
                await asyncio.gather(*(r.start() for r in readers[batch:batch + 100]))
            opened = time.time() - started
            _, pending = await asyncio.wait([r.task for r in readers if r.task], timeout=tokens / rate + 60)
            for task in pending:
                task.cancel()
            elapsed = time.time() - started
            cpu = server.process.cpu_seconds() - cpu_before
            client_cpu = time.process_time() - client_cpu_before
            stored = next(m["message"] for m in await client.conversation(cid) if m["id"] == reply_id)
        reply_bytes = len(stored.encode())
        incomplete = [r for r in readers if not (r.result.status == "completed" and r.result.text == stored
                                                 and len(stamps(stored)) == tokens)]
        lags = [lag for r in readers for lag in r.result.lags_ms]
        return {
            "protocol": protocol.name, "readers": count, "tokens": tokens, "tokens_per_s": rate,
            "lag_ms": percentiles(lags), "complete": count - len(incomplete),
            "incomplete": [{"status": r.result.status, "tokens": len(stamps(r.result.text)),
                            "reader": _ending(r.task)} for r in incomplete[:5]],
            "readers_opened_s": round(opened, 2),
            "backlog_tokens": percentiles([float(r.backlog_tokens) for r in readers]),
            "server_cpu_s": round(cpu, 3), "server_cpu_utilisation": round(cpu / elapsed, 3),
            "server_cpu_us_per_token_per_reader": round(cpu / (tokens * count) * 1e6, 1),
            "clients_cpu_utilisation": round(client_cpu / elapsed, 3),
            "reply_bytes": reply_bytes,
            "wire_bytes_per_reply_byte": round(sum(r.result.wire_bytes for r in readers) / (count * reply_bytes), 3),
            "elapsed_s": round(elapsed, 2), "server_peak_rss_mb": server.process.peak_rss_mb(),
        }
    finally:
        server.stop()
