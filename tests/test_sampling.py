"""Per-request sampling and the finish reason, through the providers themselves: the OpenAI-compatible
one against the fake provider (a real HTTP server that records what it was asked), the embedded one
with its real model."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import FakeProvider
from streamchat.llm.base import ChatProvider, ChatTurn, ProviderError, Sampling, TokenCount
from streamchat.llm.local_models import resolve
from streamchat.llm.local_provider import LocalProvider
from streamchat.llm.openai_provider import OpenAIProvider


def remote(fake: FakeProvider, **options: Any) -> OpenAIProvider:
    return OpenAIProvider(api_key="sk-test", base_url=f"{fake.url}/v1", model="fake-model", max_retries=0, **options)


async def reply(provider: ChatProvider, sampling: Sampling | None = None, prompt: str = "go") -> tuple[str, TokenCount]:
    """The whole reply and its counts, as the provider reported them."""
    count = TokenCount()
    text = "".join([piece async for piece in provider.stream([ChatTurn("user", prompt)], count, sampling)])
    return text, count


def fake_tokens(count: int) -> str:
    """The text of a fake reply of `count` generated tokens (`count` or `[tokens=N]`)."""
    return "".join(f" t{i}" for i in range(count))


async def test_without_a_limit_a_long_reply_arrives_whole_and_no_limit_is_sent(fake_provider: FakeProvider) -> None:
    fake_provider.script(count=600)
    provider = remote(fake_provider, max_tokens=None)
    try:
        text, count = await reply(provider)
    finally:
        await provider.close()
    assert text == fake_tokens(600)
    assert (count.completion, count.finish_reason) == (600, "stop")
    sent = fake_provider.requests()[-1]
    assert "max_tokens" not in sent and "temperature" not in sent, sent


async def test_a_limit_cuts_the_reply_and_says_so(fake_provider: FakeProvider) -> None:
    fake_provider.script(count=600)
    provider = remote(fake_provider, max_tokens=100, temperature=0.4)
    try:
        text, count = await reply(provider)
    finally:
        await provider.close()
    assert text == fake_tokens(100)
    assert (count.completion, count.finish_reason) == (100, "length")
    sent = fake_provider.requests()[-1]
    assert (sent["max_tokens"], sent["temperature"]) == (100, 0.4)
    assert fake_provider.streams()[-1]["finish_reason"] == "length"


@pytest.mark.parametrize(("defaults", "sampling", "sent", "tokens", "finish"), [
    ({"max_tokens": 100, "temperature": 0.7}, Sampling(temperature=0.1, max_tokens=5), (5, 0.1), 5, "length"),
    ({"max_tokens": 100, "temperature": 0.7}, Sampling(), (100, 0.7), 100, "length"),
    ({"max_tokens": 100, "temperature": 0.7}, Sampling(max_tokens=1000), (1000, 0.7), 600, "stop"),
    ({"max_tokens": None}, Sampling(temperature=0.0, max_tokens=7), (7, 0.0), 7, "length"),
    ({"max_tokens": None}, Sampling(temperature=1.5), (None, 1.5), 600, "stop"),
])
async def test_the_requests_sampling_overrides_the_providers_defaults(
    fake_provider: FakeProvider, defaults: dict[str, Any], sampling: Sampling,
    sent: tuple[int | None, float | None], tokens: int, finish: str,
) -> None:
    fake_provider.script(count=600)
    provider = remote(fake_provider, **defaults)
    try:
        text, count = await reply(provider, sampling)
    finally:
        await provider.close()
    request = fake_provider.requests()[-1]
    assert (request.get("max_tokens"), request.get("temperature")) == sent
    assert text == fake_tokens(tokens)
    assert count.finish_reason == finish


@pytest.mark.parametrize(("script", "max_tokens", "text", "finish"), [
    ({"tokens": ["a", "b", "c"]}, 3, "abc", "stop"),  # a reply that fits its limit exactly is whole
    ({"tokens": ["a", "b", "c"], "finish_reason": "content_filter"}, None, "abc", "content_filter"),
    ({"tokens": ["a", "b", "c"], "misbehave": "no-finish-reason"}, None, "abc", None),
    ({"tokens": ["a"], "endless": True}, 3, "a t1 t2", "length"),
])
async def test_the_finish_reason_is_what_the_provider_said(
    fake_provider: FakeProvider, script: dict[str, Any], max_tokens: int | None, text: str, finish: str | None,
) -> None:
    fake_provider.script(**script)
    provider = remote(fake_provider, max_tokens=max_tokens)
    try:
        received, count = await reply(provider)
    finally:
        await provider.close()
    assert (received, count.finish_reason) == (text, finish)


async def test_a_limit_the_server_refuses_is_a_provider_error(fake_provider: FakeProvider) -> None:
    provider = remote(fake_provider)
    try:
        with pytest.raises(ProviderError, match="provider answered HTTP 400"):
            await reply(provider, Sampling(max_tokens=0))
    finally:
        await provider.close()


async def test_the_embedded_model_is_capped_and_says_where_it_stopped(tmp_path: Path) -> None:
    """The constructor's cap applies without a request's, the request's wins when given; both cut the
    reply as "length" (short caps, so the test stays quick); a reply that ends by itself says "stop"."""
    provider = LocalProvider(resolve(None), models_dir=tmp_path, max_tokens=2, temperature=0)
    prompt = "Write a long story about a dragon."
    try:
        short, short_count = await reply(provider, prompt=prompt)
        longer, longer_count = await reply(provider, Sampling(max_tokens=6), prompt=prompt)
        answer, answer_count = await reply(provider, Sampling(max_tokens=64), prompt="What is the capital of France?")
    finally:
        await provider.close()
    assert "Paris" in answer and answer_count.finish_reason == "stop", (answer, answer_count)
    assert short_count.finish_reason == longer_count.finish_reason == "length"
    assert short_count.completion is not None and longer_count.completion is not None
    assert short_count.completion <= 3 < longer_count.completion <= 7, (short_count, longer_count)
    assert longer.startswith(short.strip()), "greedy decoding: the longer reply goes on from the shorter one"


async def test_closing_the_embedded_model_while_it_loads_waits_for_the_load(tmp_path: Path) -> None:
    """llama.cpp swaps sys.stdout while it loads: a load left running past close would swallow the
    output of whatever this process does next (it once took another test's captured output)."""
    before = sys.stdout
    provider = LocalProvider(resolve(None), models_dir=tmp_path)
    provider.start()
    await provider.close()
    assert [thread.name for thread in threading.enumerate() if thread.name.startswith("llama")] == []
    assert sys.stdout is before


async def test_requests_carry_no_sdk_telemetry_headers(fake_provider: FakeProvider) -> None:
    """The SDK's `X-Stainless-*` telemetry headers are left out (each open stream kept them several times
    over); the key, the content type and the SDK's user agent still go. (The request goes through the
    client's `post`, so the raw-response marker of `with_streaming_response` is not sent either.)"""
    provider = remote(fake_provider)
    try:
        await reply(provider)
    finally:
        await provider.close()
    [names] = fake_provider.header_names()
    assert [name for name in names if name.startswith("x-stainless")] == [], names
    assert {"authorization", "content-type", "user-agent"} <= set(names)
