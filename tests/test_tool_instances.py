"""Tool calls across instances (Redis bus, PostgreSQL state): a call whose instance dies mid-run is run
again on another, and the reply goes on there; an approval asked on one instance is answered on another."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from conftest import Cluster, FakeProvider, Server
from helpers import wait_for_status
from test_tool_clients import with_loop_tools


async def calls(server: Server, cid: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        messages = (await client.get(f"/api/conversations/{cid}")).json()["messages"]
    return [message for message in messages if message["from"] == "tool"]


async def until_status(server: Server, cid: str, status: str, timeout: float = 30) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = [call for call in await calls(server, cid) if call["status"] == status]
        if found:
            return found[0]
        assert asyncio.get_running_loop().time() < deadline, f"no call {status}: {await calls(server, cid)}"
        await asyncio.sleep(0.05)


def ran_a_call(server: Server) -> bool:
    return '"msg":"handler started","step":"ToolCall"' in server.logs()


async def test_a_call_whose_instance_dies_mid_run_is_run_again_on_another_which_ends_the_reply(
    cluster: Cluster, fake_provider: FakeProvider,
) -> None:
    servers = cluster.start_many(2, **with_loop_tools())
    fake_provider.script(tool_calls=[[{"text": "Working. "}, {"name": "slow_wait", "arguments": {"seconds": 2}}]],
                         tokens=["Done."])
    cid = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=servers[0].url, timeout=30) as client:
        sent = (await client.post("/chat", json={"message": "work", "conversationId": cid})).json()
    await until_status(servers[1], cid, "running")
    [runner] = [server for server in servers if ran_a_call(server)]
    survivor = servers[1] if runner is servers[0] else servers[0]
    runner.process.kill()
    runner.process.wait()

    reply = await wait_for_status(survivor.url, cid, sent["assistantMessageId"], timeout=60)
    assert (reply["status"], reply["message"]) == ("completed", "Working. Done.")
    [call] = await calls(survivor, cid)
    assert (call["status"], call["result"]) == ("completed", {"waited": 2})
    assert ran_a_call(survivor), "the survivor ran the call the dead instance had taken"


async def test_an_approval_asked_on_one_instance_is_answered_on_another(
    cluster: Cluster, fake_provider: FakeProvider,
) -> None:
    first, second = cluster.start_many(2, **with_loop_tools())
    fake_provider.script(tool_calls=[[{"name": "delete_file", "arguments": {"path": "/tmp/elsewhere"}}]],
                         tokens=["Deleted."])
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
        sent = (await client.post("/chat", json={"message": "delete"})).json()
    cid = sent["conversationId"]
    waiting = await until_status(first, cid, "awaiting_approval")
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
        approved = await client.post(f"/api/conversations/{cid}/messages/{waiting['id']}/approve")
        again = await client.post(f"/api/conversations/{cid}/messages/{waiting['id']}/approve")
    assert approved.status_code == 200 and again.status_code == 409
    reply = await wait_for_status(first.url, cid, sent["assistantMessageId"])
    assert (reply["status"], reply["message"]) == ("completed", "Deleted.")
    assert [(call["status"], call["result"]) for call in await calls(second, cid)] == [
        ("completed", {"deleted": "/tmp/elsewhere"})]
