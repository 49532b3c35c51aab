"""AG-UI runs on two instances (Redis + PostgreSQL): a run posted to one is resumed on the other while
its reply is held mid-round and after it ended, at every event id, and the events are the very ones
the first stream had; a run is cancelled from the instance that does not run it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from conftest import Cluster, FakeProvider
from helpers import wait_for_status
from test_ag_ui import DELETE_ROUNDS, run_input, thread_id
from test_tool_clients import with_loop_tools

Framed = tuple[str, dict[str, Any]]


def framed(body: str) -> list[Framed]:
    """(id, event) of each frame, pings skipped."""
    frames = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if line and not line.startswith(":"))
        if fields:
            frames.append((fields["id"], json.loads(fields["data"])))
    return frames


async def read_until(response: httpx.Response, stop: str) -> list[Framed]:
    """Frames of a live stream up to (and with) the first event of type `stop`; the connection is closed."""
    seen: list[Framed] = []
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        *whole, buffer = buffer.split("\n\n")
        for block in whole:
            seen += framed(block)
            if seen and seen[-1][1]["type"] == stop:
                await response.aclose()
                return seen
    raise AssertionError(f"no {stop} in {seen}")


async def test_a_run_resumes_on_another_instance_live_and_after_it_ended(
    cluster: Cluster, fake_provider: FakeProvider,
) -> None:
    a, b = cluster.start_many(2, **with_loop_tools())
    fake_provider.script(tool_calls=DELETE_ROUNDS, tokens=["Del", "eted", "."], hold_after=1)
    thread = thread_id()
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as on_a, \
            httpx.AsyncClient(base_url=b.url, timeout=30) as on_b:
        async with on_a.stream("POST", "/ag-ui", json=run_input(thread, "tidy up", run="one")) as response:
            head = await read_until(response, "TEXT_MESSAGE_CONTENT")
        resumed = asyncio.create_task(on_b.get(f"/ag-ui/{thread}/runs/one/events",
                                               headers={"Last-Event-ID": head[-1][0]}))
        fake_provider.release()
        first = head + framed((await resumed).text)
        assert first[-1][1]["outcome"]["type"] == "interrupt"
        delete_id = first[-1][1]["outcome"]["interrupts"][0]["id"]

        resume = [{"interruptId": delete_id, "status": "resolved"}]
        fake_provider.script(tokens=["Del", "eted", "."], hold_after=1)
        async with on_b.stream("POST", "/ag-ui", json=run_input(thread, None, run="two", resume=resume)) as response:
            head = await read_until(response, "TEXT_MESSAGE_CONTENT")
        resumed = asyncio.create_task(on_a.get(f"/ag-ui/{thread}/runs/two/events",
                                               headers={"Last-Event-ID": head[-1][0]}))
        fake_provider.release()
        second = head + framed((await resumed).text)
        assert second[-1][1]["type"] == "RUN_FINISHED" and "outcome" not in second[-1][1]

        reply = await wait_for_status(a.url, thread, delete_id.rsplit(".t", 1)[0])
        deltas = [event["delta"] for _, event in first + second if event["type"] == "TEXT_MESSAGE_CONTENT"]
        assert "".join(deltas) == reply["message"]
        for name, whole in (("one", first), ("two", second)):
            for after in range(-1, len(whole)):
                client = (on_a, on_b)[after % 2]
                headers = {} if after < 0 else {"Last-Event-ID": whole[after][0]}
                again = await client.get(f"/ag-ui/{thread}/runs/{name}/events", headers=headers)
                assert framed(again.text) == whole[after + 1:], (name, after)


async def test_cancel_on_the_instance_that_does_not_run_the_reply(
    cluster: Cluster, fake_provider: FakeProvider,
) -> None:
    a, b = cluster.start_many(2)
    fake_provider.script(tokens=["one", " two"], hold_after=1)
    thread = thread_id()
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as on_a, \
            httpx.AsyncClient(base_url=b.url, timeout=30) as on_b:
        async with on_a.stream("POST", "/ag-ui", json=run_input(thread, "go", run="held")) as response:
            head = await read_until(response, "TEXT_MESSAGE_CONTENT")
            await fake_provider.until_held()
            cancelled = await on_b.post(f"/ag-ui/{thread}/runs/held/cancel")
            assert cancelled.status_code == 202, cancelled.text
        tail = framed((await on_a.get(f"/ag-ui/{thread}/runs/held/events",
                                      headers={"Last-Event-ID": head[-1][0]})).text)
    assert [event["type"] for _, event in tail][-3:] == ["TEXT_MESSAGE_END", "STEP_FINISHED", "RUN_FINISHED"]
    assert tail[-1][1]["outcome"] == {"type": "cancelled"}
