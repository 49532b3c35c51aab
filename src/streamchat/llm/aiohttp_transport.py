"""The SDK's HTTP client on aiohttp, handing over every byte received before a broken connection's error.

aiohttp reads a streamed reply for about half (a token a read) to a quarter (many a read) of the
CPU httpx2's own transport takes (BENCHMARKS.md, "The provider read"), but its `StreamReader`
raises an error it has stored (a provider that hangs up mid-reply) before the bytes it had buffered
with it, so such a reply lost its last tokens; the SDK's own aiohttp transport (vendored, private)
passes that on. This transport hands them over first, then raises. Otherwise it does what the
SDK's does: httpx2's timeouts and TLS settings, proxies from the environment, aiohttp's errors as
httpx2's where the SDK and the provider tell them apart (timeouts, unreachable, broken mid-reply).

A body that needs no decoding is also handed to the reader as it is (`body_chunks`): read through
httpx2's and the SDK's byte iterators, each chunk passed three more async generators, about a
sixth of a streamed token's CPU in the provider read (bench/costs.py: 30 against 25 µs a token).
"""

from __future__ import annotations

import collections
import contextlib
import urllib.request
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx2
import openai

CHUNK_BYTES = 16 * 1024
#: The response extension under which a body that needs no decoding is handed over as it is.
BODY_CHUNKS = "streamchat.body_chunks"

#: Most specific first: the first match names the error.
_AS_HTTPX: tuple[tuple[type[aiohttp.ClientError], type[httpx2.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx2.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx2.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx2.ConnectError),
    (aiohttp.ClientPayloadError, httpx2.ReadError),
    (aiohttp.ClientConnectionError, httpx2.NetworkError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except aiohttp.ClientError as error:
        for theirs, ours in _AS_HTTPX:
            if isinstance(error, theirs):
                raise ours(str(error)) from error
        raise


def buffered(content: aiohttp.StreamReader) -> bytes:
    """What aiohttp received but has not handed over yet. Its read methods raise a stored error
    before looking at the buffer and nothing public reads past it, so this reads the private buffer;
    if that is not what aiohttp 3.x keeps there, it hands over nothing, as before
    (tests/test_streaming.py's hang-up test catches that)."""
    chunks = getattr(content, "_buffer", None)
    offset = getattr(content, "_buffer_offset", 0)
    if not isinstance(chunks, collections.deque) or not isinstance(offset, int):
        return b""
    if not all(isinstance(chunk, bytes) for chunk in chunks):
        return b""
    return b"".join(chunks)[offset:]


class _Body(httpx2.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with _as_httpx_errors():
            try:
                async for chunk in content.iter_chunked(CHUNK_BYTES):
                    yield chunk
            except aiohttp.ClientError:
                if rest := buffered(content):
                    yield rest
                raise

    async def aclose(self) -> None:
        """Back to the pool when read to the end, else the connection closes (the provider sees a hang-up)."""
        self._response.release()
        await self._response.wait_for_close()


class AiohttpTransport(httpx2.AsyncBaseTransport):
    def __init__(self, limits: httpx2.Limits = openai.DEFAULT_CONNECTION_LIMITS) -> None:
        self._limits = limits
        self._ssl = httpx2.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}

    def _open(self) -> aiohttp.ClientSession:
        """On the first request, as aiohttp wants a running event loop."""
        connector = aiohttp.TCPConnector(limit=self._limits.max_connections or 0, ssl=self._ssl,
                                         keepalive_timeout=self._limits.keepalive_expiry)
        return aiohttp.ClientSession(connector=connector)

    def _proxy(self, url: httpx2.URL) -> str | None:
        """The environment's proxy for this scheme and host (`HTTPS_PROXY`, `NO_PROXY`, ...), looked up
        once: aiohttp's own lookup (`trust_env`) runs in threads on every request, which measured
        about as much CPU per reply as its hundreds of tokens."""
        key = (url.scheme, url.host)
        if key not in self._proxies:
            proxy = urllib.request.getproxies().get(url.scheme)
            self._proxies[key] = None if proxy is None or urllib.request.proxy_bypass(url.host) else proxy
        return self._proxies[key]

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self._session is None:
            self._session = self._open()
        timeout = request.extensions.get("timeout", {})
        with _as_httpx_errors():
            response = await self._session.request(
                request.method, str(request.url), headers=request.headers.multi_items(),
                data=await request.aread() or None, allow_redirects=False, auto_decompress=False,
                proxy=self._proxy(request.url),
                timeout=aiohttp.ClientTimeout(sock_connect=timeout.get("connect"), sock_read=timeout.get("read"),
                                              connect=timeout.get("pool")),
            )
        body = _Body(response)
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1"}
        if response.headers.get("Content-Encoding", "identity").lower() == "identity":
            extensions[BODY_CHUNKS] = body
        if response.reason:  # else httpx2 names the status's standard phrase
            extensions["reason_phrase"] = response.reason.encode()
        return httpx2.Response(response.status, headers=response.raw_headers, stream=body,
                               request=request, extensions=extensions)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def body_chunks(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The body's bytes as they come: from this transport directly when it needs no decoding, else
    through httpx2 (which decodes what the server compressed)."""
    body = response.extensions.get(BODY_CHUNKS)
    return body.__aiter__() if isinstance(body, _Body) else response.aiter_bytes()


def http_client() -> httpx2.AsyncClient:
    """The SDK's default client (its timeouts, limits and redirects) on this transport."""
    return openai.DefaultAsyncHttpxClient(transport=AiohttpTransport())
