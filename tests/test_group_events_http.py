"""Group events over the real wire: a handler's `ctx.streams.<name>.send_event` reaches WebSocket and SSE
watchers in order with the item changes, on one instance and across two (Redis + PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Cluster, Server, ServerFactory
from helpers import SseFrame, Watcher, read_sse

#: A steps package of its own: a stream with a sticky event, and steps that write it, switch, delete.
STEPS = {
    "notes_stream.py": """
        from pydantic import BaseModel
        from streamchat.framework import StreamConfig

        class Note(BaseModel):
            message: str

        config = StreamConfig(name="conversation", schema=Note, sticky_events=("active-branch",))
    """,
    "note_step.py": """
        from pydantic import BaseModel
        from streamchat.framework import ApiConfig, ApiResponse

        class Body(BaseModel):
            message: str

        config = ApiConfig(name="Note", method="PUT", path="/test/{cid}/notes/{nid}", body=Body,
                           writes=["conversation"])

        async def handler(req, ctx):
            item = await ctx.streams.conversation.set(req.path_params["cid"], req.path_params["nid"], req.body)
            return ApiResponse(200, {"seq": item.seq})
    """,
    "switch_step.py": """
        from pydantic import BaseModel
        from streamchat.framework import ApiConfig, ApiResponse

        class Branch(BaseModel):
            activeMessageId: str
            path: list[str]

        config = ApiConfig(name="Switch", method="PUT", path="/test/{cid}/active", body=Branch,
                           writes=["conversation"])

        async def handler(req, ctx):
            seq = await ctx.streams.conversation.send_event(req.path_params["cid"], "active-branch", req.body)
            return ApiResponse(200, {"seq": seq})
    """,
    "delete_step.py": """
        from streamchat.framework import ApiConfig, ApiResponse

        config = ApiConfig(name="Delete", method="DELETE", path="/test/{cid}", writes=["conversation"])

        async def handler(req, ctx):
            deleted = await ctx.streams.conversation.delete_group(req.path_params["cid"])
            return ApiResponse(200, {"deleted": len(deleted)})
    """,
}


@pytest.fixture(scope="module")
def steps_package(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The package's name and the PYTHONPATH that finds it (before this checkout's own)."""
    root = tmp_path_factory.mktemp("group-event-steps")
    name = f"pkg_events_{uuid.uuid4().hex[:8]}"
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    for filename, source in STEPS.items():
        (root / name / filename).write_text(textwrap.dedent(source))
    return name, os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))


@pytest.fixture(params=["one instance", "two instances"])
def deployment(request: pytest.FixtureRequest, steps_package: tuple[str, str], tmp_path: Path) -> tuple[Server, Server]:
    """(the instance handlers write on, the instance watchers watch): the same SQLite server, or two
    servers sharing Redis and PostgreSQL."""
    name, path = steps_package
    if request.param == "one instance":
        servers: ServerFactory = request.getfixturevalue("servers")
        server = servers.start(STREAMCHAT_STEPS=name, PYTHONPATH=path)
        return server, server
    cluster: Cluster = request.getfixturevalue("cluster")
    writer, watched = cluster.start_many(2, STREAMCHAT_STEPS=name, PYTHONPATH=path)
    return writer, watched


async def put(server: Server, path: str, body: dict[str, Any]) -> int:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.put(path, json=body)
    assert response.status_code == 200, response.text
    return int(response.json()["seq"])


class SseClient:
    """One SSE connection to a conversation; `frames(n)` reads the next n frames (comments skipped)."""

    def __init__(self, server: Server, cid: str, last_event_id: int | None = None) -> None:
        self.url = f"{server.url}/api/conversations/{cid}/events"
        self.headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}

    async def __aenter__(self) -> SseClient:
        self._client = httpx.AsyncClient(timeout=30)
        self._response = await self._client.send(self._client.build_request("GET", self.url, headers=self.headers),
                                                 stream=True)
        assert self._response.status_code == 200
        self._frames: AsyncIterator[SseFrame | str] = read_sse(self._response)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._response.aclose()
        await self._client.aclose()

    async def next(self) -> SseFrame:
        while isinstance(frame := await asyncio.wait_for(anext(self._frames), 30), str):
            pass
        return frame

    async def frames(self, count: int) -> list[SseFrame]:
        return [await self.next() for _ in range(count)]

    async def snapshot(self) -> list[SseFrame]:
        """A fresh connection's snapshot: frames up to the one carrying an id (the only one that does)."""
        frames = [await self.next()]
        while frames[-1].id is None:
            frames.append(await self.next())
        return frames


async def test_a_handlers_event_reaches_every_watcher_in_order_resumes_and_ends_each_snapshot(
    deployment: tuple[Server, Server],
) -> None:
    writer, watched = deployment
    cid = str(uuid.uuid4())
    branch = {"activeMessageId": "m1", "path": ["m1"]}

    async with Watcher(watched.ws_url, cid) as socket, SseClient(watched, cid) as sse:
        first = await put(writer, f"/test/{cid}/notes/m1", {"message": "hi"})
        switched = await put(writer, f"/test/{cid}/active", branch)
        last = await put(writer, f"/test/{cid}/notes/m2", {"message": "there"})
        assert first < switched < last, "the event takes the group's next seq, between the items"

        frames = await sse.frames(3)
        assert [(f.id, f.event) for f in frames] == [(first, "item"), (switched, "active-branch"), (last, "item")]
        assert frames[1].data == branch
        ws_frames = [await socket.next_frame() for _ in range(3)]
        assert [f["event"]["type"] for f in ws_frames] == ["create", "event", "create"]
        assert ws_frames[1] == {"timestamp": ws_frames[1]["timestamp"], "streamName": "conversation", "groupId": cid,
                                "event": {"type": "event", "event": {"type": "active-branch", "data": branch}}}

        # An SSE client that reconnects (to an instance where the group is still watched) gets what it missed.
        async with SseClient(watched, cid, last_event_id=first) as resumed:
            assert [(f.id, f.event, f.data) for f in await resumed.frames(2)] == [
                (switched, "active-branch", branch), (last, "item", {"message": "there", "id": "m2", "seq": last})]

    # A fresh connection, or one whose missed frames are no longer kept, starts from a snapshot.
    for last_event_id in (None, 10**9):
        async with SseClient(watched, cid, last_event_id) as fresh:
            snapshot = await fresh.snapshot()
        assert [(f.id, f.event) for f in snapshot] == [(None, "item"), (None, "item"), (last, "active-branch")]
        assert snapshot[-1].data == branch, "the snapshot ends with the current branch (its id: where it is at)"

    branch = {"activeMessageId": "m2", "path": ["m1", "m2"]}
    switched = await put(writer, f"/test/{cid}/active", branch)
    async with SseClient(watched, cid) as fresh:
        snapshot = await fresh.snapshot()
    assert (snapshot[-1].id, snapshot[-1].event, snapshot[-1].data) == (switched, "active-branch", branch)
    async with Watcher(watched.ws_url, cid) as joined:
        after_sync = await joined.next_frame()
    assert after_sync["event"] == {"type": "event", "event": {"type": "active-branch", "data": branch}}, (
        "a WebSocket join gets the sticky event right after its sync")

    async with httpx.AsyncClient(base_url=writer.url, timeout=30) as client:
        assert (await client.delete(f"/test/{cid}")).json() == {"deleted": 2}
    # The group is empty now: a fresh connection's first frame is the next change, no branch before it.
    async with SseClient(watched, cid) as fresh:
        taken_up = await put(writer, f"/test/{cid}/notes/m3", {"message": "again"})
        frame = await fresh.next()
    assert (frame.id, frame.event, frame.data["id"]) == (taken_up, "item", "m3")
