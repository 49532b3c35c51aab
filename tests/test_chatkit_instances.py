"""ChatKit streams resumed on another instance (Redis + PostgreSQL): the event ids and the events after
any of them are the same whichever instance answers, live while the reply's model rounds are held
and after the reply ended, tool calls included (what makes them so is in state, not in a process)."""

from __future__ import annotations

import asyncio

from conftest import Cluster, FakeProvider, Server
from helpers import wait_for_status
from test_chatkit import Frame, frames_until, order, text_of, user_input


async def tail_from(server: Server, thread_id: str, last_event_id: str | None) -> list[Frame]:
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    path = f"/chatkit/threads/{thread_id}/events"
    async with server.client() as client, client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        return await frames_until(response, lambda frame: False)


async def test_a_stream_resumes_exactly_on_another_instance_live_and_after_the_end(
        cluster: Cluster, fake_provider: FakeProvider) -> None:
    a, b = cluster.start_many(2)
    fake_provider.script(tool_calls=[[{"text": "Checking. "},
                                      {"name": "calculator", "arguments": {"expression": "6 * 7"}}]],
                         tokens=["It", " is", " 42."], hold_after=1)
    body = {"type": "threads.create", "params": {"input": user_input("6 * 7?")}}
    async with a.client() as client, client.stream("POST", "/chatkit", json=body) as response:
        assert response.status_code == 200
        head = await frames_until(response, lambda frame: bool(text_of([frame])))
    thread_id = head[0].data["thread"]["id"]
    resumed = [asyncio.create_task(tail_from(server, thread_id, head[-1].id)) for server in (a, b)]
    fake_provider.release_stream(0)
    await fake_provider.until_held(1)  # the round after the call, held after its first piece
    fake_provider.release()
    on_a, on_b = await asyncio.wait_for(asyncio.gather(*resumed), 60)
    assert [(frame.id, frame.data) for frame in on_a] == [(frame.id, frame.data) for frame in on_b]
    whole = head + on_a
    assert [order(frame.id) for frame in whole] == sorted({order(frame.id) for frame in whole})
    assert "workflow.task.updated" in [frame.data.get("update", {}).get("type") for frame in on_a]
    reply_id = head[3].data["item"]["id"]
    stored = await wait_for_status(b.url, thread_id, reply_id)
    assert text_of(whole) == stored["message"] == "Checking. It is 42."
    expected = [(frame.id, frame.data) for frame in whole]
    assert [(frame.id, frame.data) for frame in await tail_from(b, thread_id, None)] == expected
    for index, frame in enumerate(whole):
        again = await tail_from((a, b)[index % 2], thread_id, frame.id)
        assert [(each.id, each.data) for each in again] == expected[index + 1:], index
