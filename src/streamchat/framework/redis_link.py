"""One Redis connection pool per process, shared by the bus, the stream sequencer and stop routing.

Every call has a socket timeout, and hands back a cancellation that redis-py lost during it
(`raise_lost_cancellation`). A call that fails because Redis restarts or the connection
drops is retried with backoff until `retry_seconds` have passed, then fails with
`BrokerUnavailable`. Keys live under a prefix, so deployments (and test runs) can share a server.

Redis here may keep nothing on disk: `epoch()` tells when its data was lost (a restart), so the
bus can re-queue what it had accepted and the stream hub can re-seed its counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamchat.framework.cancellation import cancel_requests, raise_lost_cancellation
from streamchat.framework.errors import BrokerUnavailable
from streamchat.framework.retrying import FIRST_DELAY, MAX_DELAY, retry_transient

logger = logging.getLogger("streamchat.redis")
T = TypeVar("T")


class CancellableRedis(aioredis.Redis):
    """redis-py's client, handing a cancellation it lost during a command back to the task.

    redis-py loses most cancellations that arrive in the middle of a command (8.x always, earlier
    versions with a socket timeout): the command returns normally and the task runs on.
    """

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        before = cancel_requests()
        result = await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        raise_lost_cancellation(before)
        return result

#: Errors that mean "Redis is not reachable right now", worth a retry.
TRANSIENT: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)

#: Lua, shared by the bus's renewal and the stream sequencer: does `token` still hold the lease?
#: The lease key holds the current holder's token and expires; its holder key keeps the latest
#: holder's token for good. An expired lease still belongs to its last holder until someone else
#: takes it, so a holder that was only slow carries on, while one that was taken over (or whose
#: successor has since released the lease) is refused. Both keys gone means Redis lost its data:
#: the holder may re-assert its lease, as every holder does after such a loss.
LEASE_HELD_LUA = """
local function lease_held(lease, holder, token)
  local current = redis.call('GET', lease)
  if current then return current == token end
  local last = redis.call('GET', holder)
  return (not last) or last == token
end
"""


def holder_key(lease_key: str) -> str:
    """Where a Redis lease's latest token outlives the lease (see LEASE_HELD_LUA)."""
    return f"{lease_key}:holder"


def new_instance_id() -> str:
    """A name for this process among the deployment's instances (also its consumer name)."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class RedisLink:
    """A pooled client, key naming, retries with a deadline, and data-loss detection."""

    def __init__(self, url: str, *, prefix: str = "streamchat", timeout: float = 5.0,
                 retry_seconds: float = 15.0, instance_id: str | None = None) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.instance_id = instance_id or new_instance_id()
        # Retries are ours (see `call`), never the client's: a blind resend of a script that
        # already ran would apply it twice.
        # Typed Any on purpose: redis-py annotates replies as unions over decode modes, while this
        # client always answers bytes.
        self.client: Any = CancellableRedis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=10,
            retry=Retry(NoBackoff(), 0), max_connections=256,
        )
        self._epoch: str | None = None

    @property
    def address(self) -> str:
        """The URL without credentials, for logs and errors."""
        parsed = urlsplit(self.url)
        host = parsed.hostname or ""
        return f"{parsed.scheme}://{host}{f':{parsed.port}' if parsed.port else ''}{parsed.path}"

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def call(self, operation: Callable[[], Awaitable[T]], what: str = "redis call") -> T:
        """Run `operation`, retrying connection failures with backoff until the deadline."""
        before = cancel_requests()
        result = await retry_transient(
            operation, transient=TRANSIENT, seconds=self.retry_seconds, what=f"Redis: {what}",
            unavailable=lambda error: BrokerUnavailable(f"Redis unreachable ({what}): {type(error).__name__}"))
        raise_lost_cancellation(before)  # a pipeline's commands do not pass through execute_command
        return result

    async def listen(self, channel: str, on_message: Callable[[bytes], None],
                     on_subscribed: Callable[[bool], Awaitable[None]]) -> None:
        """Stay subscribed to a pub/sub channel for good: reconnect with backoff after a drop.

        `on_subscribed(again)` runs each time the subscription is (re)established; `again` says
        whether it is a re-subscription after a drop (messages published meanwhile were missed).
        """
        delay, again = FIRST_DELAY, False
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                delay = FIRST_DELAY
                await on_subscribed(again)
                again = True
                while True:
                    before = cancel_requests()
                    message = await pubsub.get_message(timeout=1.0)
                    raise_lost_cancellation(before)
                    if message is not None and message["type"] == "message":
                        on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except TRANSIENT as error:
                logger.warning("subscription lost; reconnecting", extra={"channel": channel, "error": repr(error),
                                                                         "delay_s": delay})
            except Exception:
                logger.exception("subscriber failed; restarting it", extra={"channel": channel})
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)

    async def ping(self) -> None:
        """Raise unless Redis answers now (readiness checks): one try."""
        await asyncio.wait_for(self.client.ping(), self.timeout)

    async def epoch(self) -> tuple[bool, bool]:
        """Has Redis lost its data since this process last looked, and did this call start the new epoch?

        The epoch is a random key set once per Redis dataset. `created` is True for exactly one
        caller per dataset: the one that should redo recovery work (e.g. re-queue journaled events).
        """
        key = self.key("epoch")
        candidate = uuid.uuid4().hex
        created = bool(await self.call(lambda: self.client.set(key, candidate, nx=True), "epoch"))
        current = candidate if created else (await self.call(lambda: self.client.get(key), "epoch") or b"").decode()
        changed = self._epoch is not None and current != self._epoch
        self._epoch = current
        return changed, created

    async def close(self) -> None:
        await self.client.aclose()
