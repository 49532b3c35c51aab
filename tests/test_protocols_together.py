"""One reply, every client at once: Motia's npm client, SSE, the AI SDK's resume, an OpenAI
Responses stream and a ChatKit stream all end with byte-identical text, equal to what the server
stored; and a reply started through one protocol is stopped through another."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from openai import AsyncOpenAI

from conftest import FakeProvider, Server, ServerFactory
from helpers import FINISHED, Transcript, read_sse, until, wait_for_status, wait_until_streaming
from test_ai_sdk import drive
from test_ai_sdk import node as node
from test_chatkit import frames_until, text_of
from test_motia_client import NodeWatcher

# Multi-byte characters, a split emoji sequence, newlines and Markdown: bytes, not just characters, must agree.
TOKENS = ["Grüße ", "aus ", "Köln", " — ", "naïve ", "café\n\n", "```py\n", "print('日本')\n", "```\n",
          "👩", "\u200d", "💻 ", "done."]


async def sse_text(server: Server, cid: str, reply_id: str, opened: asyncio.Event) -> str:
    transcript = Transcript()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client, \
            client.stream("GET", f"/api/conversations/{cid}/events") as response:
        opened.set()
        async for frame in read_sse(response):
            if isinstance(frame, str):
                continue
            transcript.apply(frame)
            if frame.event == "item" and frame.data["id"] == reply_id and frame.data["status"] in FINISHED:
                return transcript.texts[reply_id]
    raise AssertionError("the SSE stream ended before the reply did")


async def responses_text(server: Server, reply_id: str, opened: asyncio.Event) -> str:
    async with AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        stream = await client.responses.retrieve(reply_id, stream=True)
        opened.set()
        events = [event async for event in stream]
    assert events[-1].type == "response.completed"
    return "".join(event.delta for event in events if event.type == "response.output_text.delta")


async def chatkit_text(server: Server, cid: str, opened: asyncio.Event) -> str:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client, \
            client.stream("GET", f"/chatkit/threads/{cid}/events") as response:
        opened.set()
        frames = await frames_until(response, lambda frame: False)
    assert frames[-1].data["type"] == "thread.item.done"
    return text_of(frames)


async def motia_text(node: str, server: Server, cid: str, reply_id: str, opened: asyncio.Event) -> str:
    watcher = await NodeWatcher.start(node, server.ws_url, cid, "item", reply_id)
    opened.set()
    result: dict[str, Any] = await watcher.final()
    return str(result["state"]["message"])


async def test_one_reply_reads_byte_identical_through_all_five(
    node: str, server: Server, fake_provider: FakeProvider,
) -> None:
    # Held mid-way until all five readers are attached: each joins a reply still streaming.
    fake_provider.script(tokens=TOKENS, hold_after=6)
    async with AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        created = await client.responses.create(model="fake-model", input="greet me", background=True)
    assert created.conversation is not None
    cid, reply_id = created.conversation.id, created.id
    await wait_until_streaming(server.url, cid, reply_id)
    opened = [asyncio.Event() for _ in range(5)]
    loop = asyncio.get_running_loop()

    async def release_once_all_are_attached() -> None:
        await asyncio.gather(*(event.wait() for event in opened))
        await asyncio.to_thread(fake_provider.release)

    motia, sse, ai_sdk, responses, chatkit, _ = await asyncio.gather(
        motia_text(node, server, cid, reply_id, opened[0]),
        sse_text(server, cid, reply_id, opened[1]),
        drive(node, "ai-6", "resume", server.url, cid, reconnected=lambda: loop.call_soon_threadsafe(opened[2].set)),
        responses_text(server, reply_id, opened[3]),
        chatkit_text(server, cid, opened[4]),
        release_once_all_are_attached(),
    )
    assert ai_sdk["resumed"] is not None, "the reply was still streaming when the AI SDK reconnected"
    stored = (await wait_for_status(server.url, cid, reply_id))["message"]
    expected = "".join(TOKENS).encode()
    assert stored.encode() == expected
    for name, text in {"motia": motia, "sse": sse, "ai sdk": ai_sdk["resumed"]["text"], "responses": responses,
                       "chatkit": chatkit}.items():
        assert text.encode() == expected, name


async def test_a_reply_started_with_the_ai_sdk_is_cancelled_through_the_responses_api(
    node: str, server: Server, fake_provider: FakeProvider,
) -> None:
    fake_provider.script(tokens=[f"w{i} " for i in range(40)], hold_after=3)  # never released: the cancel ends it
    chat = "crossprotocol0001"
    sending = asyncio.create_task(drive(node, "ai-5", "send", server.url, chat))
    messages: list[dict[str, Any]] = []

    async def reply_shows_text() -> bool:  # the reply appears as the AI SDK's POST stores it
        nonlocal messages
        async with httpx.AsyncClient(base_url=server.url) as http:
            messages = (await http.get(f"/api/conversations/{chat}")).json().get("messages", [])
        return len(messages) == 2 and bool(messages[1]["message"])

    await until(reply_shows_text, "the AI SDK's reply streaming")
    async with AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        cancelled = await client.responses.cancel(messages[1]["id"])
    sent = (await sending)["sent"]
    stored = await wait_for_status(server.url, chat, messages[1]["id"])
    assert cancelled.status == "cancelled" and stored["status"] == "stopped"
    assert sent["text"] == stored["message"] == cancelled.output_text
    assert sent["chunks"][-4:] == ["finish-step", "abort", "message-metadata", "finish"]
    assert sent["metadata"]["status"] == "stopped"


async def test_a_quiet_reply_keeps_every_protocols_stream_alive(
    servers: ServerFactory, fake_provider: FakeProvider,
) -> None:
    """While the model is silent, each stream sends `: ping` comments (which every SSE client skips)."""
    server = servers.start(STREAMCHAT_SSE_PING_SECONDS="0.2")
    fake_provider.script(hold=True, tokens=["at ", "last"])
    requests = [
        ("/api/chat", {"id": "quietchat0000001", "messages": [
            {"id": "u", "role": "user", "parts": [{"type": "text", "text": "wait"}]}]}),
        ("/v1/responses", {"input": "wait", "stream": True}),
        ("/v1/chat/completions", {"model": "fake-model", "messages": [{"role": "user", "content": "wait"}],
                                  "stream": True}),
        ("/chatkit", {"type": "threads.create", "params": {"input": {
            "content": [{"type": "input_text", "text": "wait"}], "attachments": [], "inference_options": {}}}}),
    ]

    pinged = {path: 0 for path, _ in requests}

    async def read(path: str, body: dict[str, Any]) -> tuple[int, str]:
        text = ""
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client, \
                client.stream("POST", path, json=body) as response:
            async for line in response.aiter_lines():
                pinged[path] += line == ": ping"
                text += line + "\n"
        return pinged[path], text

    async def every_stream_pinged_twice() -> bool:
        return all(pings >= 2 for pings in pinged.values())

    reading = [asyncio.create_task(read(path, body)) for path, body in requests]
    await until(every_stream_pinged_twice, f"two pings on every stream while the model is silent: {pinged}")
    fake_provider.release()
    for (path, _), (pings, text) in zip(requests, await asyncio.gather(*reading), strict=True):
        assert pings >= 2, (path, text)
        assert "last" in text, (path, text)
