"""Group commit on SQLite: work queued at once goes in one trip and one transaction, each piece atomic."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from streamchat.framework.store import SQLiteStore, StoredItem
from streamchat.framework.store.sqlite_batches import BatchedConnection


async def test_work_queued_at_once_commits_in_one_batch_in_order(tmp_path: Path) -> None:
    connection = BatchedConnection(str(tmp_path / "b.db"))
    await connection.open()
    await connection.script("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    try:
        async def add(n: int) -> int:
            row = await connection.call(lambda db: db.execute("INSERT INTO t VALUES (?) RETURNING n", (n,)).fetchone())
            return int(row[0])

        before = connection.batches
        seen = await asyncio.gather(*(add(n) for n in range(100)),
                                    connection.call(lambda db: db.execute("SELECT count(*) FROM t").fetchone()[0]))
        assert seen[:100] == list(range(100))
        assert seen[100] == 100, "a read queued after the writes did not see them"
        assert connection.batches - before <= 2, "100 writes queued at once took more than two transactions"
    finally:
        await connection.close()
    with sqlite3.connect(tmp_path / "b.db") as check:
        assert check.execute("SELECT count(*) FROM t").fetchone()[0] == 100


async def test_a_failing_piece_of_work_is_rolled_back_alone(tmp_path: Path) -> None:
    connection = BatchedConnection(str(tmp_path / "b.db"))
    await connection.open()
    await connection.script("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    try:
        def half_then_fail(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO t VALUES (1000)")
            db.execute("INSERT INTO t VALUES (1)")  # already there: the whole piece goes, its 1000 too

        results = await asyncio.gather(
            connection.call(lambda db: db.execute("INSERT INTO t VALUES (1)")),
            connection.call(half_then_fail),
            connection.call(lambda db: db.execute("INSERT INTO t VALUES (2)")),
            return_exceptions=True)
        assert isinstance(results[1], sqlite3.IntegrityError)
        assert not isinstance(results[0], BaseException) and not isinstance(results[2], BaseException)
        rows = await connection.call(lambda db: [row[0] for row in db.execute("SELECT n FROM t ORDER BY n")])
        assert rows == [1, 2]
    finally:
        await connection.close()


async def test_the_store_answers_a_burst_of_writes_and_reads_exactly(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "s.db"))
    await store.connect()
    try:
        await asyncio.gather(*(store.put_item("s", f"g{n % 10}", StoredItem(f"i{n}", {"n": n}, n + 1))
                               for n in range(200)))
        groups = await asyncio.gather(*(store.list_items("s", f"g{g}") for g in range(10)))
        assert [[item.data["n"] for item in items] for items in groups] == [
            list(range(g, 200, 10)) for g in range(10)]
        older = StoredItem("i0", {"n": -1}, 1)  # the same seq: refused, in a batch with newer writes
        await asyncio.gather(store.put_item("s", "g0", older), store.put_item("s", "g0", StoredItem("i0", {"n": 7}, 9)))
        assert (await store.get_item("s", "g0", "i0")) == StoredItem("i0", {"n": 7}, 9)
    finally:
        await store.disconnect()


async def test_work_cancelled_before_its_trip_is_not_run(tmp_path: Path) -> None:
    connection = BatchedConnection(str(tmp_path / "b.db"))
    await connection.open()
    await connection.script("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    try:
        slow = asyncio.ensure_future(connection.call(lambda db: time.sleep(0.3)))  # holds the thread
        await asyncio.sleep(0.05)
        cancelled = asyncio.ensure_future(connection.call(lambda db: db.execute("INSERT INTO t VALUES (1)")))
        kept = asyncio.ensure_future(connection.call(lambda db: db.execute("INSERT INTO t VALUES (2)")))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        await slow
        await kept
        rows = await connection.call(lambda db: [row[0] for row in db.execute("SELECT n FROM t")])
        assert rows == [2]
    finally:
        await connection.close()


async def test_work_after_close_is_refused(tmp_path: Path) -> None:
    connection = BatchedConnection(str(tmp_path / "b.db"))
    await connection.open()
    await connection.close()
    with pytest.raises(RuntimeError, match="not open"):
        await connection.call(lambda db: db.execute("SELECT 1"))
