"""Cancelling tasks without losing a cancellation on the way.

A cancellation is how a shutdown hands a running handler back, and how a stop closes a provider
stream; lost once, the handler runs on past its hand-back under a lease its instance is giving
up. Three ways lose one, each met here: a library that swallows it in the middle of a call
(redis-py does: see redis_link.py), cleanup that suppresses every error around an await (the
cancellation of the task doing the cleanup is among them), and a task cancelled once that shrugs
it off. `task.cancelling()` (Python 3.11) counts the cancellations requested of a task, so a
cancellation requested during an await can be told apart from one that came before it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable
from typing import Any

#: How long a task cancelled by `cancel_until_done` has to end before it is cancelled once more.
CANCEL_AGAIN_SECONDS = 0.2


def cancel_requests() -> int:
    """How many cancellations of the current task are pending (see `raise_lost_cancellation`)."""
    task = asyncio.current_task()
    return 0 if task is None else task.cancelling()


def raise_lost_cancellation(before: int) -> None:
    """Raise the cancellation that a call made since `before = cancel_requests()` lost.

    A cancellation requested during the call that is still pending when it returns was never
    delivered: deliver it now. One requested before the call (cleanup running after a delivered
    cancellation) is left alone.
    """
    if cancel_requests() > before:
        raise asyncio.CancelledError


async def settle(work: Awaitable[Any]) -> None:
    """Await cleanup whose own failure does not matter (closing a stream, a cancelled helper task),
    ignoring its errors but never a cancellation of the current task requested meanwhile."""
    before = cancel_requests()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await work
    raise_lost_cancellation(before)


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel a task of ours and wait until it has ended."""
    if task is not None:
        task.cancel()
        await settle(task)


async def cancel_until_done(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel the tasks, again and again until each has ended: one cancellation is not always enough."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN_SECONDS)
