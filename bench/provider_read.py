"""CPU per token of reading one long streamed reply through `OpenAIProvider`, transport by transport.

The fake provider runs as its own process, so this process's CPU time (`time.process_time()`) is
the provider path alone: SDK request, transport, SSE line split and orjson. Each repetition is one
reply; the median and the range over the repetitions are printed, as the machine is shared.

    python -m bench.provider_read [--tokens 20000] [--delay 0] [--repeats 7] [--transport provider httpx2]

Without a delay the fake sends as fast as it can and a read often carries several tokens; with one
(`--tokens 2000 --delay 0.001`) each token comes alone, as a model's do, and the per-read cost shows.

`provider` is `OpenAIProvider` as it stands; `httpx2` the same class on the SDK's default transport.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import openai
import uvloop

from bench.harness import Fake
from streamchat.llm.base import ChatTurn
from streamchat.llm.openai_provider import OpenAIProvider


def _provider(fake: Fake, transport: str) -> OpenAIProvider:
    provider = OpenAIProvider(api_key="sk-bench", base_url=f"{fake.url}/v1", model="bench", max_tokens=1 << 20)
    if transport == "httpx2":
        provider.client = provider.client.with_options(http_client=openai.DefaultAsyncHttpxClient())
    return provider


async def _read(provider: OpenAIProvider) -> int:
    return sum([1 async for _ in provider.stream([ChatTurn("user", "go")])])


async def measure(fake: Fake, transport: str, tokens: int, repeats: int) -> list[float]:
    """µs of this process's CPU per token, one value per reply read."""
    provider = _provider(fake, transport)
    try:
        await _read(provider)  # imports, connection and caches warmed up
        samples = []
        for _ in range(repeats):
            started = time.process_time()
            received = await _read(provider)
            spent = time.process_time() - started
            if received != tokens:
                raise RuntimeError(f"{transport}: {received} of {tokens} tokens")
            samples.append(spent / tokens * 1e6)
        return samples
    finally:
        await provider.close()


async def main(tokens: int, delay: float, repeats: int, transports: list[str]) -> None:
    fake = Fake(Path(tempfile.mkdtemp(prefix="provider-read-")))
    try:
        fake.script(count=tokens, delay=delay)
        print(f"{tokens} tokens per reply, {delay:g} s apart, {repeats} replies per transport; µs of CPU per token")
        print("| transport | median | min-max | samples |\n|---|---|---|---|")
        for transport in transports:
            samples = await measure(fake, transport, tokens, repeats)
            print(f"| {transport} | {statistics.median(samples):.1f} | {min(samples):.1f}-{max(samples):.1f} "
                  f"| {' '.join(f'{s:.1f}' for s in samples)} |", flush=True)
    finally:
        fake.process.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=20000)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between tokens")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--transport", nargs="+", default=["provider", "httpx2"], choices=["provider", "httpx2"])
    arguments = parser.parse_args()
    uvloop.run(main(arguments.tokens, arguments.delay, arguments.repeats, arguments.transport))
