"""The Redis Streams bus on the machine's real Redis, below the level of the multi-instance tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
import zlib

import orjson

from helpers import until
from streamchat.framework.bus import Event, Subscription
from streamchat.framework.bus.redis import RedisBus
from streamchat.framework.redis_link import RedisLink

PARTITIONS = 2


def conversation_in(partition: int) -> str:
    """A conversation id whose events land in `partition` (the bus hashes the group key)."""
    while True:
        cid = uuid.uuid4().hex
        if zlib.crc32(f"Receiver:{cid}".encode()) % PARTITIONS == partition:
            return cid


async def test_entries_with_the_same_id_in_two_partitions_are_counted_apart(redis_url: str) -> None:
    """Redis numbers entries per stream: two partitions fed in the same millisecond hand out the
    same id. Each entry's runs must be its own: with no retries allowed, a shared count would
    dead-letter the second one before it ever ran (seen once in 500 conversations on two instances).
    """
    link = RedisLink(redis_url, prefix=f"test-bus-{uuid.uuid4().hex[:8]}")
    bus = RedisBus(link, partitions=PARTITIONS, lease_seconds=3.0, block_ms=50)
    started: list[str] = []
    both_running = asyncio.Event()
    finish = asyncio.Event()

    async def handler(event: Event) -> None:
        started.append(event.data["conversationId"])
        if len(started) == PARTITIONS:
            both_running.set()
        await finish.wait()

    bus.subscribe(Subscription("Receiver", "ping", handler, max_retries=0, group_by="conversationId"))
    same_id = f"{int(time.time() * 1000)}-0"
    conversations = [conversation_in(partition) for partition in range(PARTITIONS)]
    try:
        for partition, cid in enumerate(conversations):
            event = Event("ping", {"conversationId": cid}, trace_id="t")
            entry = {"subscription": "Receiver", **event.to_record(), "order": [time.time_ns(), 0]}
            added = await link.client.xadd(link.key("bus", "Receiver", str(partition)),
                                           {"e": orjson.dumps(entry), "j": ""}, id=same_id)
            assert added.decode() == same_id
        await bus.connect()
        await asyncio.wait_for(both_running.wait(), 10)
        finish.set()

        async def both_acknowledged() -> bool:
            return not await link.client.hlen(link.key("attempts", "Receiver"))

        await until(both_acknowledged, "both entries acknowledged")
        assert sorted(started) == sorted(conversations)
        assert await bus.dead_letters() == []
        assert await link.client.hlen(link.key("attempts", "Receiver")) == 0  # both acknowledged
    finally:
        finish.set()
        await bus.disconnect()
        keys = [key async for key in link.client.scan_iter(match=f"{link.prefix}:*")]
        if keys:
            await link.client.delete(*keys)
        await link.close()


async def test_an_instance_that_lost_its_partition_acknowledges_nothing(redis_url: str) -> None:
    """The handler finishes after another instance took the partition over (simulated by replacing the
    lease's token): the entry stays pending for the new holder, its journal entry stays, no dead letter."""
    link = RedisLink(redis_url, prefix=f"test-bus-{uuid.uuid4().hex[:8]}")
    bus = RedisBus(link, partitions=1, lease_seconds=30.0, block_ms=50)
    running, finish = asyncio.Event(), asyncio.Event()

    async def handler(event: Event) -> None:
        running.set()
        await finish.wait()

    bus.subscribe(Subscription("Receiver", "ping", handler, max_retries=0, group_by="conversationId"))
    stream = link.key("bus", "Receiver", "0")
    try:
        await bus.connect()
        await bus.publish(Event("ping", {"conversationId": "c1"}, trace_id="t"))
        await asyncio.wait_for(running.wait(), 10)
        lease = link.key("lease", "Receiver", "0")
        await link.client.set(lease, b"another-instance:token")
        await link.client.set(f"{lease}:holder", b"another-instance:token")
        finish.set()

        async def delivery_over() -> bool:  # the bus is done with it: acknowledged or left for the holder
            return bus.queue_depth() == 0

        await until(delivery_over, "the bus done with the finished handler's entry")
        assert (await link.client.xpending(stream, "workers"))["pending"] == 1, "not acknowledged"
        assert await link.client.xlen(stream) == 1
        assert await bus.dead_letters() == []
    finally:
        finish.set()
        await bus.disconnect(timeout=1)
        keys = [key async for key in link.client.scan_iter(match=f"{link.prefix}:*")]
        if keys:
            await link.client.delete(*keys)
        await link.close()


async def test_a_redis_call_cancelled_mid_way_raises_the_cancellation(redis_url: str) -> None:
    """A handler cancelled in the middle of a Redis call must see the cancellation, else it runs on:
    redis-py lost most of them (a reply kept streaming past its instance's shutdown hand-back),
    and the link's client hands them back."""
    link = RedisLink(redis_url, prefix=f"test-cancel-{uuid.uuid4().hex[:8]}")
    counter = link.key("counter")
    script = link.client.register_script("redis.call('INCR', KEYS[1]); return redis.call('GET', KEYS[1])")
    lost = 0
    try:
        for trial in range(200):
            async def calls() -> bool:
                while True:
                    await link.call(lambda: script(keys=[counter], args=[]), "test script")
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        return True  # the cancellation was lost in the call

            task = asyncio.create_task(calls())
            await asyncio.sleep(0.001 + (trial % 20) / 1000)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                lost += await task
    finally:
        await link.client.delete(counter)
        await link.close()
    assert lost == 0, f"{lost} of 200 cancellations were lost inside a Redis call"


async def test_redis_calls_cleaning_up_after_a_delivered_cancellation_all_run(redis_url: str) -> None:
    """Only a cancellation lost during a call is handed back: cleanup that runs after one was
    delivered (releasing what a handler held) makes every call it needs."""
    link = RedisLink(redis_url, prefix=f"test-cleanup-{uuid.uuid4().hex[:8]}")
    first, second = link.key("first"), link.key("second")
    cleaned: list[bool] = []
    waiting = asyncio.Event()

    async def handler() -> None:
        try:
            waiting.set()
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await link.call(lambda: link.client.set(first, "1"), "cleanup")
            await link.client.set(second, "2")
            cleaned.append(True)
            raise

    task = asyncio.create_task(handler())
    await waiting.wait()  # cancelled inside its try, so its cleanup runs
    task.cancel()
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert cleaned == [True] and task.cancelled()
        assert await link.client.get(first) == b"1" and await link.client.get(second) == b"2"
    finally:
        await link.client.delete(first, second)
        await link.close()
