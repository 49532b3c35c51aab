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
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]


@dataclass(eq=False)
class _Queued:
    work: Work
    future: asyncio.Future[Any]
    outcome: tuple[bool, Any] = field(default=(False, None))


def _settle(future: asyncio.Future[Any], succeeded: bool, value: Any) -> None:
    if future.done():  # its caller was cancelled meanwhile
        return
    if succeeded:
        future.set_result(value)
    else:
        future.set_exception(value)


class BatchedConnection:
    """`await connection.call(work)`: `work(sqlite3.Connection)` runs on the connection's thread, in
    the next batch, atomically (its statements commit together, or none of them).

    The thread hands each batch back with one `call_soon_threadsafe`, which settles every caller's
    future at once: one round of the event loop a trip, as a trip to aiosqlite's thread costs.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._connection: sqlite3.Connection | None = None
        self._queue: list[_Queued] = []
        self._travelling = False
        self._drained = asyncio.Event()
        #: Batches committed so far (each is one write transaction).
        self.batches = 0

    async def open(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="streamchat-sqlite", daemon=True)
        self._thread.start()

        def connect() -> None:
            self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)

        await self._on_thread(connect)
        self._drained.set()

    def _serve(self) -> None:
        """The thread: run jobs in the order they came until told to stop."""
        while (job := self._jobs.get()) is not None:
            job()

    async def _on_thread(self, job: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def run() -> None:
            try:
                result = job()
            except BaseException as error:  # handed to the caller
                loop.call_soon_threadsafe(_settle, future, False, error)
            else:
                loop.call_soon_threadsafe(_settle, future, True, result)

        self._jobs.put(run)
        return await future

    async def script(self, sql: str) -> None:
        """Run a script of statements (a schema) outside any batch: `executescript` commits first."""
        await self.call_outside(lambda connection: connection.executescript(sql))

    async def call_outside(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on the thread between batches, in no transaction (pragmas, schema changes)."""
        connection = self._connection
        if connection is None:
            raise RuntimeError("the SQLite connection is not open")
        return await self._on_thread(lambda: work(connection))

    async def close(self) -> None:
        """Finish what is queued, then close the connection and end the thread."""
        connection = self._connection
        if connection is None:
            return
        await self._drained.wait()
        self._connection = None
        try:
            await self._on_thread(connection.close)
        finally:
            self._jobs.put(None)

    async def call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._connection is None:
            raise RuntimeError("the SQLite connection is not open")
        loop = asyncio.get_running_loop()
        queued = _Queued(work, loop.create_future())
        self._queue.append(queued)
        if not self._travelling:
            self._start_trip(loop)
        result: T = await queued.future
        return result

    def _start_trip(self, loop: asyncio.AbstractEventLoop) -> None:
        """A trip to the thread with everything queued now; the next one starts when it is back."""
        # Work whose caller was cancelled before its trip is not run (as a statement waiting for a lock was not).
        batch, self._queue = [queued for queued in self._queue if not queued.future.cancelled()], []
        if not batch:
            self._drained.set()
            return
        self._travelling = True
        self._drained.clear()

        def trip() -> None:
            try:
                self._run(batch)
            except BaseException as error:  # not the work's (each is caught): the connection's
                for queued in batch:
                    queued.outcome = (False, error)
            loop.call_soon_threadsafe(self._back, loop, batch)

        self._jobs.put(trip)

    def _back(self, loop: asyncio.AbstractEventLoop, batch: list[_Queued]) -> None:
        for queued in batch:
            _settle(queued.future, *queued.outcome)
        self._travelling = False
        if self._queue:
            self._start_trip(loop)
        else:
            self._drained.set()

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
