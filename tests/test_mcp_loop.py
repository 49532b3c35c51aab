"""MCP tools through the loop: the model calls a tool of an MCP server (stdio and streamable HTTP, the
real test servers written with the `mcp` SDK), the call runs, shows the server's progress, and a
stop cancels it on the server itself (recorded there). In-process app, the real fake provider."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from conftest import FakeProvider
from helpers import InProcessServer, wait_for_status
from test_mcp import lines, recorded
from test_tool_loop import calls, send, until_call
from test_tools_wiring import events, http_url, served  # noqa: F401  (fixtures)


async def test_an_mcp_tool_runs_in_the_loop_and_its_result_goes_to_the_model(
    served: InProcessServer, fake_provider: FakeProvider,  # noqa: F811
) -> None:
    fake_provider.script(tool_calls=[[{"name": "local__add", "arguments": {"a": 2, "b": 3}},
                                      {"name": "local__echo", "arguments": {"text": "hi"}}]], tokens=["Five."])
    sent = await send(served, "add")
    reply = await wait_for_status(served, sent["conversationId"], sent["assistantMessageId"])
    assert (reply["status"], reply["message"]) == ("completed", "Five.")
    added, echoed = await calls(served, sent["conversationId"])
    assert (added["status"], added["result"]) == ("completed", {"sum": 5})
    # The SDK's server wraps a plain return value as structured content: that is what it sends.
    assert (echoed["status"], echoed["result"]) == ("completed", {"result": "hi"})
    results = [message["content"] for message in fake_provider.requests()[-1]["messages"] if message["role"] == "tool"]
    assert results == ['{"sum":5}', '{"result":"hi"}']


@pytest.mark.parametrize("server", ["local", "remote"])
async def test_stop_cancels_a_running_mcp_call_on_its_server(
    served: InProcessServer, fake_provider: FakeProvider, events: Path, server: str,  # noqa: F811
) -> None:
    tag = f"loop-{server}-{uuid.uuid4().hex[:8]}"
    fake_provider.script(tool_calls=[[{"text": "Waiting. "}, {"name": f"{server}__wait", "arguments": {"tag": tag}}]],
                         tokens=["never"])
    sent = await send(served, "wait for it")
    cid, reply_id = sent["conversationId"], sent["assistantMessageId"]
    if server == "remote":  # every tool of that server needs approval
        [waiting] = await until_call(served, cid, "awaiting_approval")
        async with served.client() as client:
            assert (await client.post(f"/api/conversations/{cid}/messages/{waiting['id']}/approve")).status_code == 200
    await recorded(events, f"started {tag}")
    deadline = asyncio.get_running_loop().time() + 20
    while (call := (await calls(served, cid))[0]).get("progress") is None:
        assert asyncio.get_running_loop().time() < deadline, call
        await asyncio.sleep(0.02)
    assert call["status"] == "running" and call["progress"]["message"] == "waiting"
    assert f"cancelled {tag}" not in lines(events)
    async with served.client() as client:
        assert (await client.post(f"/api/conversations/{cid}/messages/{reply_id}/stop")).status_code == 202
    await recorded(events, f"cancelled {tag}")
    reply = await wait_for_status(served, cid, reply_id)
    assert (reply["status"], reply["message"]) == ("stopped", "Waiting. ")
    assert [call["status"] for call in await calls(served, cid)] == ["cancelled"]
