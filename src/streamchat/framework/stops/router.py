"""Stop requests across instances: a stop sent to any instance reaches the one running the work.

A running scope is announced as `{prefix}:running:{key}` = the instance's id (expiring, so a
dead instance's entries go away). A stop for a key not running here looks the owner up and
asks it on its control channel `{prefix}:control:{instance}`; the owner stops the scope, waits
for it to wind up, and answers on the asker's channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import orjson

from streamchat.framework.cancellation import stop_task
from streamchat.framework.errors import BrokerUnavailable
from streamchat.framework.redis_link import RedisLink
from streamchat.framework.stops.registry import StopRegistry

logger = logging.getLogger("streamchat.stops")

RUNNING_TTL_MS = 6 * 3600 * 1000
ANSWER_GRACE_SECONDS = 1.0


class StopRouter:
    """The `StopRoute` of a Redis deployment."""

    def __init__(self, link: RedisLink, registry: StopRegistry) -> None:
        self.link = link
        self.registry = registry
        self.channel = link.key("control", link.instance_id)
        self._answers: dict[str, asyncio.Future[bool]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def _running_key(self, key: str) -> str:
        return self.link.key("running", key)

    async def start(self) -> None:
        self.registry.route = self
        self._listener = asyncio.create_task(self._listen(), name="stop-router")
        try:
            await asyncio.wait_for(self._ready.wait(), self.link.retry_seconds)
        except TimeoutError:
            await self.stop()
            raise BrokerUnavailable(
                f"Redis at {self.link.address} did not answer within {self.link.retry_seconds:g}s") from None

    async def announce(self, key: str) -> None:
        try:
            await self.link.call(lambda: self.link.client.set(
                self._running_key(key), self.link.instance_id, px=RUNNING_TTL_MS), "announce")
        except BrokerUnavailable:
            logger.warning("could not announce a running scope; stops from other instances will miss it",
                           extra={"key": key})

    async def withdraw(self, key: str) -> None:
        with contextlib.suppress(BrokerUnavailable):
            current = await self.link.call(lambda: self.link.client.get(self._running_key(key)), "withdraw")
            if current is not None and current.decode() == self.link.instance_id:
                await self.link.call(lambda: self.link.client.delete(self._running_key(key)), "withdraw")

    async def stop_elsewhere(self, key: str, wait: float) -> bool:
        owner = await self.link.call(lambda: self.link.client.get(self._running_key(key)), "find owner")
        if owner is None:
            return False
        if owner.decode() == self.link.instance_id:
            return await self.registry.stop_here(key, wait)
        request = uuid.uuid4().hex
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._answers[request] = answer
        message = orjson.dumps({"op": "stop", "key": key, "wait": wait, "request": request, "reply": self.channel})
        try:
            await self.link.call(lambda: self.link.client.publish(
                self.link.key("control", owner.decode()), message), "send stop")
            return await asyncio.wait_for(answer, wait + ANSWER_GRACE_SECONDS)
        except TimeoutError:
            # The owner did not answer (it may have just died): the caller treats the work as
            # not running and records the stop itself.
            logger.warning("no answer to a stop request", extra={"key": key, "owner": owner.decode()})
            return False
        finally:
            self._answers.pop(request, None)

    async def _listen(self) -> None:
        async def subscribed(_: bool) -> None:
            self._ready.set()

        await self.link.listen(self.channel, lambda data: self._handle(orjson.loads(data)), subscribed)

    def _handle(self, message: dict[str, Any]) -> None:
        if message.get("op") == "stop":
            task = asyncio.create_task(self._stop_for(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif message.get("op") == "stopped":
            answer = self._answers.get(message.get("request", ""))
            if answer is not None and not answer.done():
                answer.set_result(bool(message.get("stopped")))

    async def _stop_for(self, message: dict[str, Any]) -> None:
        stopped = await self.registry.stop_here(str(message["key"]), float(message.get("wait", 0.0)))
        reply = orjson.dumps({"op": "stopped", "request": message["request"], "stopped": stopped})
        with contextlib.suppress(BrokerUnavailable):
            await self.link.call(lambda: self.link.client.publish(message["reply"], reply), "answer stop")

    async def stop(self) -> None:
        self.registry.route = None
        await stop_task(self._listener)
