"""Riding out a backend restart: retry what failed to connect, with backoff, until a deadline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from streamchat.framework.errors import Unavailable

T = TypeVar("T")
logger = logging.getLogger("streamchat.retry")

FIRST_DELAY = 0.05
MAX_DELAY = 1.0


async def retry_transient(
    operation: Callable[[], Awaitable[T]], *, transient: tuple[type[BaseException], ...], seconds: float,
    unavailable: Callable[[BaseException], Unavailable], what: str,
) -> T:
    """Run `operation`; on a `transient` error try again (50 ms, doubling to 1 s) for up to `seconds`,
    then raise `unavailable(error)`. Other errors pass through at once.
    """
    deadline = time.monotonic() + seconds
    delay = FIRST_DELAY
    while True:
        try:
            return await operation()
        except transient as error:
            if time.monotonic() + delay > deadline:
                raise unavailable(error) from error
            logger.warning("backend call failed, retrying", extra={"what": what, "error": repr(error),
                                                                   "delay_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
