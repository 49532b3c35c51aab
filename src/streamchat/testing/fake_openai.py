"""A fake OpenAI-compatible chat server: a real HTTP server streaming SSE chunks in OpenAI's format.

Tests and the benchmark drive it through `/control`:
  POST /control {"tokens": [...], "delay": 0.01, "ttft": 0.0, "fail": [500, 429],
                 "hang_up_after": 3, "burst": false, "retry_after_ms": 10, "hold": false, "hold_after": 2,
                 "count": 200, "stamp": true, "tag": true,
                 "misbehave": "garbage" | "empty-choices" | "no-newline" | "no-finish-reason",
                 "usage": true, "prompt_tokens": 42, "endless": true, "finish_reason": "content_filter",
                 "gzip": true}
sets how the next replies behave (`fail` statuses are used up one per request; `hold` keeps every
reply from starting, `hold_after` keeps it open after that many tokens, until POST /control/release,
or POST /control/release {"stream": n} for the n-th stream alone, counted as `tag` counts them; with
`burst`, the tokens before a `hang_up_after` go out in one write, so they reach the client together
with the hang-up, as from a proxy that buffers);
GET /control/requests lists the request bodies received (with their `max_tokens` and `temperature`
when sent) and each one's header names; POST /control/reset restores defaults.
A request whose last message contains `[tokens=N]` gets N tokens instead of the scripted ones;
`count` makes every reply N tokens long; with `stamp`, each token is its own send time
(` 1764000000.123456`), so a client can measure the delivery lag of every token; with `tag`, each
token starts with `r<n>-`, n counting the streams served since the last reset, so two runs of one
reply differ and a client can tell whose text it shows. A request with
`stream_options: {"include_usage": true}` gets a last chunk with `usage` (no choices), as OpenAI
sends it: completion tokens are the tokens sent, prompt tokens the words of every message unless
`prompt_tokens` says otherwise; `"usage": false` leaves it out, as some compatible servers do.
The usage a stream reported is in its entry of `streams`, and `held` is true while `hold_after` holds it;
`asked_at` and `ended_at` are when its request came and its last byte went (time.time()).
With `endless`, a reply goes on after its tokens (one more every `delay`, at least every 20 ms) until
the client hangs up, so a test can see a client close a reply that never finishes by itself; it is
taken when a reply is requested, so a test can make one reply endless and the next one finite.
A request's `max_tokens` is honoured as OpenAI does: a reply longer than that is cut after that many
tokens (an endless one too) and ends with `finish_reason: "length"`; a reply that ends by itself says
"stop", or the scripted `finish_reason`. A `max_tokens` that is not a positive integer gets a 400.
The finish reason a stream sent is in its entry of `streams`. With `gzip`, the stream is sent
gzip-compressed (`Content-Encoding: gzip`, each chunk flushed as it goes), as some proxies send it.

Tool calls (see fake_tool_calls.py for how they stream):
  POST /control {"tool_calls": [[{"name": "calculator", "arguments": {"expression": "2+3"}}, ...], ...],
                 "argument_chunk": 5}
scripts one list per model round of a reply: a request that sends `tools` is answered with the round
after the ones it already had (its assistant `tool_calls` messages since the last user message, so a
request whose last message is a `tool` result gets the next round), ending "tool_calls"; past the last
round, or without `tools`, it gets text as usual. A round may mix in `{"text": "..."}` (streamed before
or between its calls); arguments given as text are streamed as written (so malformed JSON can be
scripted, as can a tool name never offered), in pieces of `argument_chunk` characters. A round's
entry of `streams` has its `round` and `tool_calls` (id, name, arguments); the requests keep the
`tools` and the tool messages they carried. `delay`, `hold_after`, `hang_up_after` and `max_tokens`
count a call's pieces as tokens; `"tool_finish_reason": "stop"` ends a round as some compatible
servers do. A bad `tool_calls` gets a 400 naming it.

Run: python -m streamchat.testing.fake_openai --port 8900
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pydantic
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from streamchat.testing.fake_tool_calls import round_pieces, rounds_done, scripted_rounds

DEFAULT_TOKENS = ["Hello", "!", " I", " am", " the", " fake", " provider", "."]
_TOKEN_COUNT = re.compile(r"\[tokens=(\d+)\]")


class HangUp(Exception):
    """Raised inside the response body to drop the connection mid-stream."""


@dataclass(frozen=True)
class Reply:
    """What one request is answered with, fixed when it arrives."""

    #: The stream's number: its index in `streams` since the last reset.
    number: int
    #: Text tokens, and a tool-call round's pieces (each a `delta.tool_calls` entry).
    tokens: list[str | dict[str, Any]]
    #: The prefix of the tokens sent past the scripted ones, for an endless reply; None ends it.
    endless_prefix: str | None
    #: The request's `max_tokens`: the reply ends, as "length", when it has sent that many tokens.
    limit: int | None
    #: What the reply's last chunk says: "length" when `limit` cuts it, else the scripted reason.
    finish_reason: str


@dataclass
class Script:
    tokens: list[str] = field(default_factory=lambda: list(DEFAULT_TOKENS))
    delay: float = 0.0
    ttft: float = 0.0
    fail: list[int] = field(default_factory=list)
    hang_up_after: int | None = None
    burst: bool = False
    retry_after_ms: int = 10
    hold: bool = False
    hold_after: int | None = None
    count: int | None = None
    stamp: bool = False
    tag: bool = False
    #: Misbehaviour: "garbage" (a non-JSON data line after the tokens), "empty-choices" (chunks with
    #: no choices, never a finish), "no-newline" (bytes that never end a line), "no-finish-reason"
    #: (the tokens and [DONE], no chunk with a finish_reason).
    misbehave: str | None = None
    usage: bool = True
    prompt_tokens: int | None = None
    endless: bool = False
    #: The finish reason of a reply that ends by itself ("stop" unless a test wants another).
    finish_reason: str = "stop"
    #: The tool calls of each model round (see fake_tool_calls.scripted_rounds); none: text replies.
    tool_calls: list[list[dict[str, Any]]] = field(default_factory=list)
    #: How many characters of a call's arguments each streamed piece carries.
    argument_chunk: int = 5
    #: What a round of tool calls ends with.
    tool_finish_reason: str = "tool_calls"
    #: Send the stream gzip-compressed.
    gzip: bool = False


#: How often an endless reply sends a token past its scripted ones when no `delay` is set.
ENDLESS_PACE = 0.02


class FakeOpenAI:
    def __init__(self) -> None:
        self.script = Script()
        self.requests: list[dict[str, Any]] = []
        #: The header names of each request, in the order of `requests`.
        self.header_names: list[list[str]] = []
        self.streams: list[dict[str, Any]] = []
        #: Set by a release of every held reply; cleared by a new script.
        self.release = asyncio.Event()
        #: Releases of one stream each, by its number (its index in `streams`).
        self._released: dict[int, asyncio.Event] = {}

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/chat/completions", self.completions, methods=["POST"]),
            Route("/control", self.control, methods=["POST"]),
            Route("/control/reset", self.reset, methods=["POST"]),
            Route("/control/release", self.release_held, methods=["POST"]),
            Route("/control/requests", self.list_requests, methods=["GET"]),
        ])

    async def control(self, request: Request) -> JSONResponse:
        changes = await request.json()
        for key, value in changes.items():
            if not hasattr(self.script, key):
                return JSONResponse({"error": f"unknown setting {key}"}, status_code=400)
            if key == "tool_calls":
                try:
                    value = scripted_rounds(value)
                except pydantic.ValidationError as error:
                    return JSONResponse({"error": f"tool_calls: {error}"}, status_code=400)
            setattr(self.script, key, value)
        self.release.clear()
        return JSONResponse({"ok": True})

    async def reset(self, _: Request) -> JSONResponse:
        self.script = Script()
        self.requests.clear()
        self.header_names.clear()
        self.streams.clear()
        self._release_all()
        self._released.clear()
        return JSONResponse({"ok": True})

    async def release_held(self, request: Request) -> JSONResponse:
        """Release every held reply, or with {"stream": n} the n-th stream alone (now or when it holds)."""
        body = await request.body()
        stream = orjson.loads(body).get("stream") if body else None
        if stream is None:
            self._release_all()
        else:
            self._released.setdefault(int(stream), asyncio.Event()).set()
        return JSONResponse({"ok": True})

    def _release_all(self) -> None:
        self.release.set()
        for released in self._released.values():
            released.set()

    async def _held(self, number: int) -> None:
        """Wait until this stream, or every held reply, is released."""
        released = self._released.setdefault(number, asyncio.Event())
        if not self.release.is_set():
            await released.wait()

    async def list_requests(self, _: Request) -> JSONResponse:
        return JSONResponse({"requests": self.requests, "headers": self.header_names, "streams": self.streams})

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.header_names.append(sorted(request.headers.keys()))
        script = self.script
        if script.fail:
            status = script.fail.pop(0)
            return JSONResponse(
                {"error": {"message": f"scripted failure {status}", "type": "server_error"}},
                status_code=status, headers={"retry-after-ms": str(script.retry_after_ms)},
            )
        limit = body.get("max_tokens")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            return JSONResponse(
                {"error": {"message": f"max_tokens must be a positive integer, not {limit!r}",
                           "type": "invalid_request_error", "param": "max_tokens"}}, status_code=400)
        tokens: list[str | dict[str, Any]] = list(script.tokens if script.count is None
                                                  else [f" t{i}" for i in range(script.count)])
        last = str(body.get("messages", [{}])[-1].get("content", ""))
        if match := _TOKEN_COUNT.search(last):
            tokens = [f" t{i}" for i in range(int(match.group(1)))]
        number = len(self.streams)
        record: dict[str, Any] = {"sent": 0, "finished": False, "closed_by_client_at": None, "finish_reason": None,
                                  "asked_at": time.time(), "ended_at": None}
        finish_reason = script.finish_reason
        rounds = script.tool_calls if body.get("tools") else []
        if (done := rounds_done(body.get("messages", []))) < len(rounds):
            tokens, record["tool_calls"] = round_pieces(rounds[done], number, script.argument_chunk)
            record["round"], finish_reason = done, script.tool_finish_reason
        prefix = f"r{number}-" if script.tag else ""
        cut = limit is not None and (len(tokens) > limit or script.endless)
        tokens = [f"{prefix}{token}" if isinstance(token, str) else token for token in tokens[:limit]]
        record["text"] = "".join(token for token in tokens if isinstance(token, str))
        self.streams.append(record)
        reply = Reply(number, tokens, prefix if script.endless else None, limit, "length" if cut else finish_reason)
        chunks = self._recorded(self._chunks(body, reply, script, record), record)
        if script.gzip:
            return StreamingResponse(_gzipped(chunks), media_type="text/event-stream",
                                     headers={"Content-Encoding": "gzip"})
        return StreamingResponse(chunks, media_type="text/event-stream")

    @staticmethod
    async def _recorded(chunks: AsyncIterator[bytes], record: dict[str, Any]) -> AsyncIterator[bytes]:
        """Note when the client hung up before the reply was finished."""
        try:
            async for chunk in chunks:
                yield chunk
            record["finished"], record["ended_at"] = True, time.time()
        except (asyncio.CancelledError, GeneratorExit, OSError):
            record["closed_by_client_at"] = time.time()
            raise

    async def _chunks(
        self, body: dict[str, Any], reply: Reply, script: Script, record: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        tokens = reply.tokens
        created = int(time.time())
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                "model": body.get("model", "fake")}
        if script.ttft:
            await asyncio.sleep(script.ttft)
        if script.hold:
            await self._held(reply.number)
        yield _sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "finish_reason": None}]})
        if script.misbehave == "empty-choices":
            for _ in range(len(tokens)):
                yield _sse({**base, "choices": []})
            yield b"data: [DONE]\n\n"
            return
        if script.misbehave == "no-newline":
            while True:
                yield b"data: " + b"x" * 65536
                await asyncio.sleep(0)
        if script.burst and script.hang_up_after is not None and script.hang_up_after < len(tokens):
            yield b"".join(_sse(_token_chunk(base, token)) for token in tokens[:script.hang_up_after])
            record["sent"] = script.hang_up_after
            raise HangUp("scripted hang-up")
        for index, token in enumerate(tokens):
            if script.hang_up_after is not None and index >= script.hang_up_after:
                raise HangUp("scripted hang-up")
            if script.hold_after is not None and index == script.hold_after:
                record["held"] = True
                await self._held(reply.number)
                record["held"] = False
            if index and script.delay:
                await asyncio.sleep(script.delay)
            if script.stamp and isinstance(token, str):
                token = f" {time.time():.6f}"
            yield _sse(_token_chunk(base, token))
            record["sent"] = index + 1
        if reply.endless_prefix is not None:
            for index in itertools.count(len(tokens)):
                if index == reply.limit:
                    break
                await asyncio.sleep(script.delay or ENDLESS_PACE)
                yield _sse(_token_chunk(base, f"{reply.endless_prefix} t{index}"))
                record["sent"] = index + 1
        if script.misbehave == "garbage":
            yield b"data: {this is not json\n\n"
        if script.misbehave != "no-finish-reason":
            record["finish_reason"] = reply.finish_reason
            yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": record["finish_reason"]}]})
        sent = record["sent"]
        if script.usage and (body.get("stream_options") or {}).get("include_usage"):
            prompt = script.prompt_tokens
            if prompt is None:
                prompt = sum(len(str(message.get("content") or "").split()) for message in body.get("messages", []))
            usage = {"prompt_tokens": prompt, "completion_tokens": sent, "total_tokens": prompt + sent}
            record["usage"] = usage
            yield _sse({**base, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"


async def _gzipped(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks as one gzip stream, each flushed so it reaches the client when sent."""
    compressor = zlib.compressobj(wbits=31)
    async for chunk in chunks:
        yield compressor.compress(chunk) + compressor.flush(zlib.Z_SYNC_FLUSH)
    yield compressor.flush()


def _token_chunk(base: dict[str, Any], token: str | dict[str, Any]) -> dict[str, Any]:
    delta = {"content": token} if isinstance(token, str) else {"tool_calls": [token]}
    return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


def _sse(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible streaming server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    args = parser.parse_args()
    uvicorn.run(FakeOpenAI().app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
