"""Any OpenAI-compatible server, through the official SDK.

The SDK handles auth, base URL, retries of 429/5xx/connect errors (honouring Retry-After)
and error types. Its typed per-chunk objects cost ~150 µs a token, so the hot path reads the
raw SSE lines (the body as the transport receives it) and parses each with orjson. The request
goes out through the client's `post`, the SDK's documented way to send a body as it is: its typed
`create` first transforms every parameter against the API's typed dicts, recursively (~0.1 ms a
request for the few scalar ones, ~1.5 ms more when the messages go that way too); a streamed
request of a short reply cost this process ~1.25 ms through `create`, ~1.15 ms this way. An
aiohttp transport reads a reply for half to a quarter of the CPU of the SDK's default httpx2 one
(ours, aiohttp_transport.py, also keeps the tokens that came with a hang-up). The SDK's own
telemetry headers (`X-Stainless-*`: its language, version, OS, runtime, retry count, timeout) are
left out: no server needs them, and each open stream kept them three times over (the SDK's
request, aiohttp's and the list between them), about half of a request's headers.
Token usage comes from the chunk the server sends last when asked (`stream_options.include_usage`),
the finish reason from the chunk that carries one.

A reply limit is sent only when one is set (the request's or the constructor's): a server without one
lets the model end its turn, where a default cap would cut long answers short. It goes out as
`max_tokens`, which every OpenAI-compatible server accepts; OpenAI's reasoning models want
`max_completion_tokens` instead, which other servers do not all know.

Tools go out only when given. The `tool_calls` of a chunk's delta are yielded
as ToolCallDeltas (only when tools were sent: a caller that sent none reads text alone). A piece that
has no `index` takes its place in the list, as some compatible servers leave it out; a turn that made
calls but says "stop" (as some servers do) ends as "tool_calls".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, overload

import aiohttp
import httpx2
import openai
import orjson

from streamchat.llm.aiohttp_transport import body_chunks, http_client
from streamchat.llm.base import (
    INSTRUCTION_PROMPT,
    ChatTurn,
    ProviderError,
    Sampling,
    TokenCount,
    ToolCallDelta,
    ToolSpecs,
    with_system_prompt,
)

#: Left out of every request (see the module's docstring).
SDK_TELEMETRY_HEADERS: dict[str, str | openai.Omit] = {name: openai.Omit() for name in (
    "X-Stainless-Lang", "X-Stainless-Package-Version", "X-Stainless-OS", "X-Stainless-Arch", "X-Stainless-Runtime",
    "X-Stainless-Runtime-Version", "X-Stainless-Async", "X-Stainless-Retry-Count", "X-Stainless-Read-Timeout")}


class OpenAIProvider:
    name = "openai"

    def __init__(
        self, *, api_key: str, base_url: str | None, model: str, max_tokens: int | None = None,
        max_retries: int = 2, connect_timeout: float = 10.0, read_timeout: float = 60.0,
        temperature: float | None = None, total_timeout: float = 600.0,
    ) -> None:
        self.model = model
        self.total_timeout = total_timeout
        #: Defaults for every reply (None: send none); a request's Sampling overrides each.
        self.defaults = Sampling(temperature=temperature, max_tokens=max_tokens)
        self.client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or None,
            max_retries=max_retries,
            timeout=openai.Timeout(read_timeout, connect=connect_timeout),
            http_client=http_client(),
        )

    def start(self) -> None:
        """Nothing to prepare: the first request opens the connection."""

    def readiness(self) -> str:
        return "ok"

    def options(self, sampling: Sampling | None) -> dict[str, Any]:
        """The request's sampling parameters: each set one, the request's value over the default."""
        temperature, max_tokens = self.defaults.temperature, self.defaults.max_tokens
        if sampling is not None:
            temperature = temperature if sampling.temperature is None else sampling.temperature
            max_tokens = max_tokens if sampling.max_tokens is None else sampling.max_tokens
        options: dict[str, Any] = {}
        if temperature is not None:
            options["temperature"] = temperature
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        return options

    @overload
    def stream(
        self, turns: Sequence[ChatTurn], count: TokenCount | None = None, sampling: Sampling | None = None,
        tools: None = None,
    ) -> AsyncGenerator[str, None]: ...

    @overload
    def stream(
        self, turns: Sequence[ChatTurn], count: TokenCount | None = None, sampling: Sampling | None = None,
        tools: ToolSpecs | None = None,
    ) -> AsyncGenerator[str | ToolCallDelta, None]: ...

    async def stream(
        self, turns: Sequence[ChatTurn], count: TokenCount | None = None, sampling: Sampling | None = None,
        tools: ToolSpecs | None = None,
    ) -> AsyncGenerator[str | ToolCallDelta, None]:
        body: dict[str, Any] = {
            "model": self.model, "stream": True, "stream_options": {"include_usage": True}, **self.options(sampling),
            "messages": [_message(turn) for turn in with_system_prompt(turns, INSTRUCTION_PROMPT)]}
        if tools:
            body["tools"] = list(tools)
        finished = called = False
        try:
            async with self._streamed(body) as response:
                deadline = asyncio.get_running_loop().time() + self.total_timeout
                async for payload in _data_lines(body_chunks(response)):
                    if payload == b"[DONE]":
                        finished = True
                        break
                    text, reason, usage, calls = _parse_chunk(payload)
                    if calls and tools:
                        called = True
                    if reason is not None:
                        finished = True
                        if count is not None:
                            count.finish_reason = "tool_calls" if called and reason == "stop" else reason
                    if usage is not None and count is not None:
                        count.prompt, count.completion = usage
                    if text:
                        yield text
                    if calls and tools:
                        for call in calls:
                            yield call
                    if asyncio.get_running_loop().time() > deadline:
                        raise ProviderError(f"the reply took longer than {self.total_timeout:g}s")
        except openai.APIStatusError as error:
            raise ProviderError(f"provider answered HTTP {error.status_code}") from error
        except openai.APITimeoutError as error:
            if isinstance(error.__cause__, httpx2.ConnectTimeout):
                raise ProviderError("could not reach the provider") from error
            raise ProviderError("provider timed out") from error
        except openai.APIConnectionError as error:
            raise ProviderError("could not reach the provider") from error
        except (TimeoutError, httpx2.TimeoutException) as error:  # aiohttp's read timeouts are TimeoutErrors too
            raise ProviderError("provider timed out") from error
        except (httpx2.HTTPError, aiohttp.ClientError) as error:
            raise ProviderError("provider connection broke mid-reply") from error
        if not finished:
            raise ProviderError("provider stream ended before the reply was finished")

    @contextlib.asynccontextmanager
    async def _streamed(self, body: dict[str, Any]) -> AsyncIterator[httpx2.Response]:
        """The response to `body` (sent as it is, with the client's retries, errors and auth), left
        for the caller to read and closed after."""
        response = await self.client.post("/chat/completions", cast_to=httpx2.Response, body=body,
                                          options={"headers": SDK_TELEMETRY_HEADERS}, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    async def close(self) -> None:
        await self.client.close()


MAX_LINE_BYTES = 1 << 20


async def _data_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The payloads of the `data:` lines of an SSE byte stream, never decoded to str on the way."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        if len(pending) > MAX_LINE_BYTES and b"\n" not in chunk:
            raise ProviderError("provider sent a line longer than 1 MiB")
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.startswith(b"data:"):
                yield line[5:].strip()


def _message(turn: ChatTurn) -> dict[str, Any]:
    """A turn as a Chat Completions message: an assistant's calls and a call's result in OpenAI's shape."""
    if turn.tool_calls:
        return {"role": "assistant", "content": turn.content or None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in turn.tool_calls]}
    if turn.tool_call_id is not None:
        return {"role": "tool", "tool_call_id": turn.tool_call_id, "content": turn.content}
    return {"role": turn.role, "content": turn.content}


Chunk = tuple[str, str | None, tuple[int | None, int | None] | None, list[ToolCallDelta] | None]


def _parse_chunk(payload: bytes) -> Chunk:
    """Text of one streamed chunk, its finish_reason when it carried one, the (prompt, completion)
    tokens when it carried usage, and its tool-call pieces when it carried some."""
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise ProviderError("provider sent a malformed stream chunk") from error
    if not isinstance(chunk, dict):
        raise ProviderError("provider sent a malformed stream chunk")
    if "error" in chunk:
        raise ProviderError("provider reported an error mid-reply")
    usage = _usage(chunk.get("usage"))
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return "", None, usage, None
    choice = choices[0]
    delta = choice.get("delta")
    text = calls = None
    if isinstance(delta, dict):
        text, calls = delta.get("content"), delta.get("tool_calls")
    reason = choice.get("finish_reason")
    if reason is not None and not isinstance(reason, str):
        reason = str(reason)
    return (text if isinstance(text, str) else ""), reason, usage, (_tool_call_deltas(calls) if calls else None)


def _tool_call_deltas(calls: Any) -> list[ToolCallDelta]:
    """The tool-call pieces of one delta (`delta.tool_calls`)."""
    if not isinstance(calls, list):
        raise ProviderError("provider sent a malformed tool call")
    pieces: list[ToolCallDelta] = []
    for position, call in enumerate(calls):
        function = (call.get("function") or {}) if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise ProviderError("provider sent a malformed tool call")
        index, call_id = call.get("index"), call.get("id")
        index = position if index is None else index
        name, arguments = function.get("name"), function.get("arguments") or ""
        if (not isinstance(index, int) or isinstance(index, bool) or not isinstance(call_id, str | None)
                or not isinstance(name, str | None) or not isinstance(arguments, str)):
            raise ProviderError("provider sent a malformed tool call")
        pieces.append(ToolCallDelta(index, call_id, name, arguments))
    return pieces


def _usage(reported: Any) -> tuple[int | None, int | None] | None:
    if not isinstance(reported, dict):
        return None
    prompt, completion = reported.get("prompt_tokens"), reported.get("completion_tokens")
    return (prompt if isinstance(prompt, int) else None), (completion if isinstance(completion, int) else None)
