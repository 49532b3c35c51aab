"""How the OpenAI-compatible provider reads a streamed body: straight from its aiohttp transport
when the body needs no decoding, through httpx2 (which decodes it) when the server compressed it.
Against the fake provider, a real HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from conftest import FakeProvider
from streamchat.llm.base import ChatTurn, TokenCount
from streamchat.llm.openai_provider import OpenAIProvider


async def whole_reply(fake: FakeProvider) -> tuple[str, TokenCount]:
    provider = OpenAIProvider(api_key="sk-test", base_url=f"{fake.url}/v1", model="fake-model", max_retries=0)
    count = TokenCount()
    try:
        text = "".join([piece async for piece in provider.stream([ChatTurn("user", "go")], count)])
    finally:
        await provider.close()
    return text, count


async def test_a_plain_stream_is_read_from_the_transport_as_it_comes(
    fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpx2's byte iterator (and the SDK's over it) is not on the way of an uncompressed stream."""
    def not_this_way(self: httpx2.Response, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        raise AssertionError("the body went through httpx2's byte iterator")

    monkeypatch.setattr(httpx2.Response, "aiter_bytes", not_this_way)
    fake_provider.script(tokens=["Hel", "lo", " there", " ☃"], delay=0.01)
    text, count = await whole_reply(fake_provider)
    assert text == "Hello there ☃"
    assert (count.completion, count.finish_reason) == (4, "stop")


async def test_a_gzipped_stream_is_decoded_as_it_comes(fake_provider: FakeProvider) -> None:
    """A server (or a proxy) that compresses the stream: the bytes are decoded before they are read as lines."""
    fake_provider.script(tokens=[f" t{i}" for i in range(50)], delay=0.005, gzip=True)
    text, count = await whole_reply(fake_provider)
    assert text == "".join(f" t{i}" for i in range(50))
    assert (count.completion, count.finish_reason) == (50, "stop")


async def test_a_gzipped_stream_goes_through_httpx2(
    fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The compressed body is the one that takes httpx2's decoding iterator."""
    taken: list[Any] = []
    original = httpx2.Response.aiter_bytes

    def counted(self: httpx2.Response, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        taken.append(self.headers.get("content-encoding"))
        return original(self, chunk_size)

    monkeypatch.setattr(httpx2.Response, "aiter_bytes", counted)
    fake_provider.script(gzip=True)
    text, _ = await whole_reply(fake_provider)
    assert text == "Hello! I am the fake provider."
    assert taken == ["gzip"]
