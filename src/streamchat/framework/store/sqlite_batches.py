"""One SQLite connection on a thread of its own, with group commit: every statement queued while a
trip to the thread runs goes in the next trip, as one transaction.

Why hand-written: with one connection and one trip (and one commit) per statement, a burst of
requests waits in line, each statement costing a round of the event loop; 200 messages sent at once
(seven writes each) took seconds to answer here. Batched, the same burst costs a few trips. Each
piece of work in a batch runs inside a savepoint of its own, so one that fails (a full disk, a
refused write) is rolled back alone and reports its own error, while the others commit. Work is a
plain function of the `sqlite3.Connection` run on the thread: it must not block on anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]


@dataclass(eq=False)
class _Queued:
    work: Work
    future: asyncio.Future[Any]
    outcome: tuple[bool, Any] = field(default=(False, None))


class BatchedConnection:
    """`await connection.call(work)`: `work(sqlite3.Connection)` runs on the connection's thread, in
    the next batch, atomically (its statements commit together, or none of them)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamchat-sqlite")
        self._connection: sqlite3.Connection | None = None
        self._queue: list[_Queued] = []
        self._trip: asyncio.Future[None] | None = None
        #: Batches committed so far (each is one write transaction).
        self.batches = 0

    async def open(self) -> None:
        def connect() -> None:
            self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)

        await asyncio.get_running_loop().run_in_executor(self._executor, connect)

    async def script(self, sql: str) -> None:
        """Run a script of statements (a schema) outside any batch: `executescript` commits first."""
        await self.call_outside(lambda connection: connection.executescript(sql))

    async def call_outside(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the thread between batches, in no transaction (pragmas, schema changes)."""
        if self._connection is None:
            raise RuntimeError("the SQLite connection is not open")
        connection = self._connection
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, connection)

    async def close(self) -> None:
        while self._trip is not None:
            with contextlib.suppress(BaseException):
                await self._trip
            await asyncio.sleep(0)  # the trip's callback ran: the next one, if any, has started
        connection, self._connection = self._connection, None
        if connection is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, connection.close)
        self._executor.shutdown(wait=False)

    async def call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._connection is None:
            raise RuntimeError("the SQLite connection is not open")
        loop = asyncio.get_running_loop()
        queued = _Queued(work, loop.create_future())
        self._queue.append(queued)
        if self._trip is None:
            self._start_trip(loop)
        result: T = await queued.future
        return result

    def _start_trip(self, loop: asyncio.AbstractEventLoop) -> None:
        """A trip to the thread with everything queued now; the next one starts when it is back."""
        # Work whose caller was cancelled before its trip is not run (as a statement waiting for a lock was not).
        batch, self._queue = [queued for queued in self._queue if not queued.future.cancelled()], []
        if not batch:
            return
        trip = self._trip = loop.run_in_executor(self._executor, self._run, batch)
        trip.add_done_callback(lambda _: self._back(loop, batch, trip))

    def _back(self, loop: asyncio.AbstractEventLoop, batch: list[_Queued], trip: asyncio.Future[None]) -> None:
        failure = trip.exception() if not trip.cancelled() else asyncio.CancelledError()
        for queued in batch:
            if queued.future.done():
                continue
            succeeded, value = (False, failure) if failure is not None else queued.outcome
            if succeeded:
                queued.future.set_result(value)
            else:
                queued.future.set_exception(value)
        self._trip = None
        if self._queue:
            self._start_trip(loop)

    def _run(self, batch: list[_Queued]) -> None:
        """On the thread: the batch as one transaction, each piece of work in a savepoint."""
        connection = self._connection
        assert connection is not None
        if len(batch) == 1:  # no savepoint needed
            self._run_alone(connection, batch[0])
            return
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            for queued in batch:
                queued.outcome = (False, error)
            return
        for queued in batch:
            if not connection.in_transaction:  # SQLite rolled the whole transaction back (e.g. a full disk)
                break
            connection.execute("SAVEPOINT work")
            try:
                queued.outcome = (True, queued.work(connection))
                connection.execute("RELEASE work")
            except Exception as error:
                queued.outcome = (False, error)
                if connection.in_transaction:
                    connection.execute("ROLLBACK TO work")
                    connection.execute("RELEASE work")
        if connection.in_transaction:
            try:
                connection.execute("COMMIT")
                self.batches += 1
                return
            except sqlite3.Error:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
        # Nothing of the batch is stored: each piece of work runs again in a transaction of its own,
        # so each reports what happened to it.
        for queued in batch:
            self._run_alone(connection, queued)

    def _run_alone(self, connection: sqlite3.Connection, queued: _Queued) -> None:
        try:
            connection.execute("BEGIN IMMEDIATE")
            queued.outcome = (True, queued.work(connection))
            connection.execute("COMMIT")
            self.batches += 1
        except Exception as error:
            queued.outcome = (False, error)
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
