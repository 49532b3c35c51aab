"""A full disk under the SQLite file: 507 with a JSON error, nothing stored harmed, and back without a restart.

The state file lives on a small tmpfs of the test's own (mounting needs root, as the test machines
run); the disk is filled with a plain file and emptied again while the server runs.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import FakeProvider, ServerFactory
from helpers import wait_for_status


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    assert os.geteuid() == 0, "the full-disk test mounts a tmpfs, which needs root (the test machines run as root)"
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Write until the disk says it is full (ENOSPC); what is left for SQLite is a few bytes at most."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        chunk = b"\0" * 65536
        while True:
            try:
                out.write(chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
                if len(chunk) == 1:
                    return filler
                chunk = chunk[: len(chunk) // 2]


async def test_a_full_disk_is_507_and_recovers_when_space_returns(
    servers: ServerFactory, fake_provider: FakeProvider, small_disk: Path,
) -> None:
    server = servers.start(STREAMCHAT_STATE_URL=f"sqlite:///{small_disk / 'state.db'}")
    fake_provider.script(tokens=["stored ", "fine"])
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        first = (await client.post("/chat", json={"message": "before the disk fills"})).json()
        await wait_for_status(server.url, first["conversationId"], first["assistantMessageId"])

        filler = fill(small_disk)
        for body in ({"message": "a new conversation"},
                     {"message": "into the old one", "conversationId": first["conversationId"]}):
            refused = await client.post("/chat", json=body)
            assert refused.status_code == 507, refused.text
            assert refused.json()["error"] == "insufficient_storage" and "full" in refused.json()["detail"]
        kept = (await client.get(f"/api/conversations/{first['conversationId']}")).json()["messages"]
        assert [(m["from"], m["status"]) for m in kept] == [("user", "completed"), ("assistant", "completed")]
        assert kept[1]["message"] == "stored fine", "nothing stored was harmed"

        filler.unlink()
        again = await client.post("/chat", json={"message": "space is back", "conversationId": first["conversationId"]})
        assert again.status_code == 200, again.text
        await wait_for_status(server.url, first["conversationId"], again.json()["assistantMessageId"])
        final = (await client.get(f"/api/conversations/{first['conversationId']}")).json()["messages"]
        assert [m["message"] for m in final] == ["before the disk fills", "stored fine", "space is back", "stored fine"]
        assert (await client.get("/api/conversations")).json()["conversations"][0]["conversationId"] == (
            first["conversationId"]), "no conversation was half-created while the disk was full"
        assert len((await client.get("/api/conversations")).json()["conversations"]) == 1
