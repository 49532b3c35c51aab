"""A full disk under the SQLite file: 507 with a JSON error, nothing stored harmed, and back without a restart.

The state file lives on a small tmpfs of the test's own (mounting needs root, as the test machines
run); the disk is filled with a plain file and emptied again while the server runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import pwd
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from conftest import FakeProvider, PrivatePostgres, ServerFactory
from helpers import until, wait_for_status
from streamchat.testing.databases import run_sql


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str, options: str = "") -> Iterator[Path]:
    assert os.geteuid() == 0, "the full-disk tests mount a tmpfs, which needs root (the test machines run as root)"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}{options}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "disk", "8m") as disk:
        yield disk


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


@pytest.fixture
def postgres_small_disk(private_postgres: PrivatePostgres) -> Iterator[tuple[str, Path]]:
    """A database of a private PostgreSQL whose tables live on a small tmpfs (a tablespace), while its
    write-ahead log stays on the big disk: the way PostgreSQL runs out of room without stopping.
    The tmpfs has room for the new database's catalogs (about 8 MB) and some more."""
    owner = pwd.getpwnam("postgres")
    options = f",uid={owner.pw_uid},gid={owner.pw_gid},mode=700"
    with mounted_tmpfs(private_postgres.dir / "small", "24m", options) as disk:
        for sql in (f"CREATE TABLESPACE small LOCATION '{disk}'", "CREATE DATABASE chat TABLESPACE small"):
            run_sql(private_postgres.url, sql)
        yield private_postgres.url.rsplit("/", 1)[0] + "/chat", disk


@pytest.mark.parametrize("bus", ["memory", "redis"])
async def test_postgres_out_of_space_is_507_with_nothing_half_written_and_recovers(
    servers: ServerFactory, fake_provider: FakeProvider, postgres_small_disk: tuple[str, Path], bus: str,
    request: pytest.FixtureRequest,
) -> None:
    """PostgreSQL fills the free room of its pages first, so POSTs keep working for a while after the
    disk is full; the first that needs a new page gets 507, with nothing of it kept, even when its
    first write still fitted. Replies accepted meanwhile wait for room instead of failing, and end
    up stored as they ended, also where Redis carried the changes meanwhile."""
    url, small_disk = postgres_small_disk
    redis = {} if bus == "memory" else {"STREAMCHAT_BUS_URL": request.getfixturevalue("redis_url"),
                                        "STREAMCHAT_REDIS_PREFIX": f"full-{uuid.uuid4().hex[:8]}"}
    server = servers.start(STREAMCHAT_STATE_URL=url, **redis)
    fake_provider.script(tokens=["stored ", "fine"])
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        first = (await client.post("/chat", json={"message": "before the disk fills"})).json()
        await wait_for_status(server.url, first["conversationId"], first["assistantMessageId"])

        # Replies wait until the disk is full, then need more room than is left.
        noise = [f"{uuid.uuid4().hex} " for _ in range(300)]  # PostgreSQL compresses repeated text to nothing
        fake_provider.script(tokens=["stored ", "fine ", *noise], hold=True)
        filler = fill(small_disk)
        accepted: list[dict[str, str]] = []
        refused: list[str] = []
        for index in range(500):
            cid = f"full-{index}"
            answer = await client.post("/chat", json={"message": f"{index} " + "padding " * 250,
                                                      "conversationId": cid})
            assert answer.status_code in (200, 507), answer.text
            if answer.status_code == 507:
                assert answer.json()["error"] == "insufficient_storage", answer.text
                refused.append(cid)
                if len(refused) == 3:
                    break
            else:
                accepted.append(answer.json())
        assert len(refused) == 3, "the tablespace never filled up"
        for cid in refused:
            gone = await client.get(f"/api/conversations/{cid}")
            assert gone.status_code == 404, f"a refused POST left something behind: {gone.text}"

        fake_provider.release()  # the accepted replies now stream into a full disk, past every retry
        if bus == "memory":
            # Each run of a reply asks the provider again: five runs each are more than its retries
            # (AiResponse's max_retries is 3), so a store outage must not count as one.
            questions = [f"{reply['conversationId'].removeprefix('full-')} padding" for reply in accepted]

            async def every_reply_ran_five_times() -> bool:
                asked = [str(body["messages"][-1]["content"])
                         for body in await asyncio.to_thread(fake_provider.requests)]
                runs = [sum(text.startswith(question) for text in asked) for question in questions]
                # A reply whose delivery cannot even take its lease (the disk is full) waits without
                # running; every reply that runs is run again and again.
                return any(runs) and all(count == 0 or count >= 5 for count in runs)

            await until(every_reply_ran_five_times, "every accepted reply run five times against the full disk", 60)
        else:
            # Redis carries the changes: each reply ends there while the disk is still full, to be
            # stored once there is room.
            for reply in accepted:
                ended = await wait_for_status(server.url, reply["conversationId"], reply["assistantMessageId"], 60)
                assert ended["status"] == "completed", ended

            async def store_retried() -> bool:  # the store refused them, and they are kept to be written again
                return "store still unavailable; will retry" in server.logs()

            await until(store_retried, "the ended replies kept for the store while the disk is full")
        filler.unlink()
        again = (await client.post("/chat", json={"message": "space is back"})).json()
        for reply in [first, *accepted, again]:
            done = await wait_for_status(server.url, reply["conversationId"], reply["assistantMessageId"], 60)
            assert done["status"] == "completed" and done["message"].startswith("stored fine"), done
        listed = {c["conversationId"] for c in (await client.get("/api/conversations")).json()["conversations"]}
        assert not listed & set(refused)
        assert {first["conversationId"], again["conversationId"]} <= listed
    replies = {reply["assistantMessageId"] for reply in [first, *accepted, again]}
    await until_stored_as_completed(url, replies)


async def read_only_setting(url: str, value: str) -> bool:
    """Whether a new session starts with default_transaction_read_only at `value`: the server has
    reloaded its configuration and signalled every session, which applies it before its next statement."""
    connection = await asyncpg.connect(url)
    try:
        return bool(await connection.fetchval("SHOW default_transaction_read_only") == value)
    finally:
        await connection.close()


async def until_stored_as_completed(url: str, replies: set[str], timeout: float = 15) -> None:
    """Read PostgreSQL itself (not the API, which may answer from Redis's log): every reply's row says completed."""
    connection = await asyncpg.connect(url)
    try:
        for _ in range(int(timeout / 0.25)):
            rows = await connection.fetch("SELECT id, data->>'status' FROM stream_items WHERE id = ANY($1::text[])",
                                          sorted(replies))
            if len(rows) == len(replies) and all(status == "completed" for _, status in rows):
                return
            await asyncio.sleep(0.25)
        raise AssertionError(f"not stored as completed: {[tuple(row) for row in rows if row[1] != 'completed']}")
    finally:
        await connection.close()


async def test_a_sqlite_file_that_refuses_writes_is_503_and_recovers(
    servers: ServerFactory, fake_provider: FakeProvider, tmp_path: Path,
) -> None:
    """The write-ahead log made immutable (chattr +i: not even root may write it), as a failing or
    locked-down disk would: writes get 503, reads go on, and writes work again once it is writable."""
    assert os.geteuid() == 0, "chattr +i needs root (the test machines run as root)"
    database = tmp_path / "state.db"
    server = servers.start(STREAMCHAT_STATE_URL=f"sqlite:///{database}")
    fake_provider.script(tokens=["stored ", "fine"])
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        first = (await client.post("/chat", json={"message": "before"})).json()
        await wait_for_status(server.url, first["conversationId"], first["assistantMessageId"])
        wal = Path(f"{database}-wal")
        subprocess.run(["chattr", "+i", str(wal)], check=True)
        try:
            refused = await client.post("/chat", json={"message": "while it refuses writes"})
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "unavailable" and "cannot be written" in refused.json()["detail"]
            kept = (await client.get(f"/api/conversations/{first['conversationId']}")).json()["messages"]
            assert [m["status"] for m in kept] == ["completed", "completed"], "reads still work"
        finally:
            subprocess.run(["chattr", "-i", str(wal)], check=True)
        again = (await client.post("/chat", json={"message": "writable again"})).json()
        await wait_for_status(server.url, again["conversationId"], again["assistantMessageId"])
        assert len((await client.get("/api/conversations")).json()["conversations"]) == 2


async def test_a_read_only_postgres_is_503_and_recovers(
    servers: ServerFactory, fake_provider: FakeProvider, private_postgres: PrivatePostgres,
) -> None:
    server = servers.start(STREAMCHAT_STATE_URL=private_postgres.url)
    fake_provider.script(tokens=["stored ", "fine"])
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        first = (await client.post("/chat", json={"message": "before"})).json()
        await wait_for_status(server.url, first["conversationId"], first["assistantMessageId"])
        # As a standby or a database put into read-only mode: every session's writes are refused from now on.
        for sql in ("ALTER SYSTEM SET default_transaction_read_only = on", "SELECT pg_reload_conf()"):
            run_sql(private_postgres.url, sql)
        try:
            await until(lambda: read_only_setting(private_postgres.url, "on"), "read-only mode in force")
            refused = await client.post("/chat", json={"message": "while read-only"})
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "unavailable" and "read-only" in refused.json()["detail"]
        finally:
            for sql in ("ALTER SYSTEM RESET default_transaction_read_only", "SELECT pg_reload_conf()"):
                run_sql(private_postgres.url + "?options=-c%20default_transaction_read_only%3Doff", sql)
        await until(lambda: read_only_setting(private_postgres.url, "off"), "read-only mode lifted")
        again = (await client.post("/chat", json={"message": "writable again"})).json()
        await wait_for_status(server.url, again["conversationId"], again["assistantMessageId"])
        assert len((await client.get("/api/conversations")).json()["conversations"]) == 2
