"""The floor of a token's CPU: a relay that reads the provider's stream and writes each piece to one
WebSocket subscriber as one frame, and does nothing else (no store, no sequence, no fan-out).

    python -m bench.floor --port 8765 --provider http://127.0.0.1:PORT   # the relay, as its own process

Each connection to the relay starts one reply: the relay POSTs to the provider with aiohttp, parses
each SSE line with orjson, and sends `{"delta": piece}` as a text frame (the websockets library, with
the permessage-deflate the client negotiates, as the server's subscribers do), then closes. Its CPU
per delivered token, under the same load as the server in the same run, is the floor the server's
CPU per token is held against.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from bench.harness import ROOT, Fake, Process
from streamchat.testing.processes import free_port

BODY = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "go"}]}


async def relay(port: int, provider: str) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one(socket: ServerConnection) -> None:
            async with session.post(f"{provider}/v1/chat/completions", json=BODY) as response:
                async for line in response.content:
                    if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
                        continue
                    choices = orjson.loads(line[5:])["choices"]
                    piece = choices[0]["delta"].get("content") if choices else None
                    if piece:
                        await socket.send(orjson.dumps({"delta": piece}).decode())
            await socket.send('{"done":true}')

        async with serve(one, "127.0.0.1", port, max_size=None) as server:
            await server.serve_forever()


class Relay:
    """The relay as its own process, with its CPU readable like a server's."""

    def __init__(self, workdir: Path, fake: Fake) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/"
        # Its health check is an HTTP GET, which a WebSocket server answers 426: up is up.
        self.process = Process([sys.executable, "-m", "bench.floor", "--port", str(self.port), "--provider", fake.url],
                               {**os.environ, "PYTHONPATH": os.pathsep.join(
                                   filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}, f"http://127.0.0.1:{self.port}/",
                               workdir / f"relay-{self.port}.log")

    def stop(self) -> None:
        self.process.stop()


async def _subscriber(url: str, delay: float) -> int:
    await asyncio.sleep(delay)
    pieces = 0
    async with connect(url, max_size=None, open_timeout=60) as socket:
        async for frame in socket:
            if frame == '{"done":true}':
                break
            pieces += 1
    return pieces


async def relay_cpu_per_token(workdir: Path, fake: Fake, count: int, tokens: int, rate: float,
                              arrivals_per_s: float) -> dict[str, Any]:
    """The relay's CPU per delivered token at `count` replies x `tokens` at `rate`, arriving like scenario 2's."""
    fake.script(count=tokens, delay=1 / rate, stamp=True)
    relay_process = Relay(workdir, fake)
    try:
        ramp = min(count / arrivals_per_s, tokens / rate / 2)
        before, started = relay_process.process.cpu_seconds(), time.time()
        delivered = sum(await asyncio.gather(*(_subscriber(relay_process.url, ramp * index / count)
                                               for index in range(count))))
        cpu = relay_process.process.cpu_seconds() - before
        return {"conversations": count, "delivered_tokens": delivered, "elapsed_s": round(time.time() - started, 2),
                "cpu_s_per_1000_tokens": round(1000 * cpu / max(delivered, 1), 4)}
    finally:
        relay_process.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--provider", required=True, help="the fake provider's base URL")
    args = parser.parse_args()
    uvloop.run(relay(args.port, args.provider))


if __name__ == "__main__":
    main()
