"""Conversations survive a server restart on the SQLite file."""

from __future__ import annotations

import signal

import httpx

from conftest import FakeProvider, ServerFactory
from helpers import post_chat, wait_for_status, wait_until_streaming


async def test_conversations_survive_a_restart(servers: ServerFactory) -> None:
    first = servers.start()
    accepted = await post_chat(first.url, "remember me")
    cid = accepted["conversationId"]
    await wait_for_status(first.url, cid, accepted["assistantMessageId"])
    before = httpx.get(f"{first.url}/api/conversations/{cid}").json()
    assert first.stop() == 0, "SIGTERM shuts down gracefully and exits with status 0"
    assert "stopped cleanly" in first.logs()

    second = servers.start()
    after = httpx.get(f"{second.url}/api/conversations/{cid}").json()
    assert after == before
    listed = httpx.get(f"{second.url}/api/conversations").json()["conversations"]
    assert cid in [record["conversationId"] for record in listed]

    follow_up = await post_chat(second.url, "and again", cid)
    final = await wait_for_status(second.url, cid, follow_up["assistantMessageId"])
    assert final["status"] == "completed"
    messages = httpx.get(f"{second.url}/api/conversations/{cid}").json()["messages"]
    assert [m["message"] for m in messages][:3] == ["remember me", before["messages"][1]["message"], "and again"]
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(seqs), "sequence numbers keep rising across the restart"


async def test_a_reply_cut_off_by_a_crash_is_finished_after_restart(
    servers: ServerFactory, fake_provider: FakeProvider
) -> None:
    tokens = [f"part{i} " for i in range(40)]
    fake_provider.script(tokens=tokens, hold_after=3)  # held mid-way: the crash cuts it off
    first = servers.start()
    accepted = await post_chat(first.url, "survive a crash")
    cid, mid = accepted["conversationId"], accepted["assistantMessageId"]
    await fake_provider.until_held()
    await wait_until_streaming(first.url, cid, mid)
    first.stop(signal.SIGKILL)

    fake_provider.script(hold_after=None)  # the run after the restart goes to the end
    second = servers.start()
    final = await wait_for_status(second.url, cid, mid)
    assert (final["status"], final["message"]) == ("completed", "".join(tokens))
    messages = httpx.get(f"{second.url}/api/conversations/{cid}").json()["messages"]
    assert [m["from"] for m in messages] == ["user", "assistant"], "exactly one reply, no duplicate"
    assert "replaying an event" in second.logs()
