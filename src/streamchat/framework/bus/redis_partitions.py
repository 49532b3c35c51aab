"""Which partitions of the Redis bus this instance holds: leases taken, renewed, balanced, let go.

Each partition of a step is leased to one instance at a time: `{prefix}:lease:{step}:{n}` holds
a token new with every taking, so runs under an earlier taking are fenced off too (its holder key
keeps the latest token for good: see redis_link.py), renewed every third of the lease period.
Instances balance: each holds about partitions / live instances (an instance is alive while it
says so within a lease period). A partition over the share drains: it reads no more, and is
released once nothing of it is in flight here. After Redis lost its data every lease went with
it; owners re-assert theirs at their next renewal, so none is taken for a lease period.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable

from streamchat.framework.leases import Lease
from streamchat.framework.redis_link import LEASE_HELD_LUA, RedisLink, holder_key

logger = logging.getLogger("streamchat.bus")

Partition = tuple[str, int]

# KEYS: lease, holder; ARGV: token, lease ms.
RENEW_SCRIPT = LEASE_HELD_LUA + """
if lease_held(KEYS[1], KEYS[2], ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('SET', KEYS[2], ARGV[1])
  return 1
end
return 0
"""
ACQUIRE_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[1])
  return 1
end
return 0
"""
# The holder key stays: a run fenced off by this lease's later holders stays fenced after it is released.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def stream_key(link: RedisLink, step: str, partition: int) -> str:
    """The Redis stream one partition of a step's events goes to."""
    return link.key("bus", step, str(partition))


class PartitionLeases:
    """This instance's partitions: for each held one, its token and whether it drains."""

    def __init__(self, link: RedisLink, *, partitions: int, lease_seconds: float) -> None:
        self.link = link
        self.partitions = partitions
        self.lease_seconds = lease_seconds
        self._renew = link.client.register_script(RENEW_SCRIPT)
        self._acquire = link.client.register_script(ACQUIRE_SCRIPT)
        self._release = link.client.register_script(RELEASE_SCRIPT)
        #: Held partitions -> draining.
        self.held: dict[Partition, bool] = {}
        self._tokens: dict[Partition, str] = {}
        #: Held partitions whose unacknowledged entries this instance let go of while holding them:
        #: claimed at the next round instead of after a visibility timeout.
        self.reclaim: set[Partition] = set()
        self._quiet_until = 0.0
        self._balanced = False

    def key(self, step: str, partition: int) -> str:
        return self.link.key("lease", step, str(partition))

    def keys(self, step: str, partition: int) -> list[str]:
        """The lease key and its holder key, as the fencing scripts take them."""
        lease = self.key(step, partition)
        return [lease, holder_key(lease)]

    def lease_of(self, step: str, partition: int) -> Lease | None:
        """The lease a handler of this partition runs under, while this instance holds it."""
        token = self._tokens.get((step, partition))
        return None if token is None else Lease(self.key(step, partition), token)

    def reading(self) -> list[Partition]:
        """Held partitions that are not draining: the ones to read new entries from."""
        return [partition for partition, draining in self.held.items() if not draining]

    @property
    def settled(self) -> bool:
        """Nothing being handed over or claimed again, and at least the fair share held."""
        return not any(self.held.values()) and self._balanced and not self.reclaim

    def pause_acquisitions(self) -> None:
        """Redis lost its data: take no free-looking partition for a lease period (work in it may
        still run elsewhere until its owner re-asserts the lease)."""
        self._quiet_until = time.monotonic() + self.lease_seconds

    async def rebalance(self, steps: Iterable[str], *, closing: bool, lost: Callable[[str, int], None],
                        busy: Callable[[str, int], bool], claim: Callable[[str, int, int], Awaitable[None]]) -> None:
        """One round: renew what is held (`lost` for what another instance took), drain what is over
        the share and release it once not `busy`, `claim` stranded entries, and take free partitions
        up to the share. Closing, only renew: running handlers finish under their leases."""
        client, now = self.link.client, time.time()
        instances = self.link.key("instances")
        await client.zadd(instances, {self.link.instance_id: now})
        await client.zremrangebyscore(instances, 0, now - self.lease_seconds)
        alive = max(1, await client.zcard(instances))
        target = math.ceil(self.partitions / alive)
        lease_ms = int(self.lease_seconds * 1000)
        self._balanced = True
        for name in steps:
            for partition in [p for (step, p) in self.held if step == name]:
                token = self._tokens.get((name, partition), "")
                if not await self._renew(keys=self.keys(name, partition), args=[token, lease_ms]):
                    logger.warning("lost a bus partition lease", extra={"step": name, "partition": partition})
                    self.held.pop((name, partition), None)
                    self._tokens.pop((name, partition), None)
                    lost(name, partition)
            if closing:
                continue
            mine = [p for (step, p), draining in self.held.items() if step == name and not draining]
            for partition in mine[target:]:
                self.held[name, partition] = True  # drain: read no more, release when idle
            for partition in [p for (step, p), draining in self.held.items() if step == name and draining]:
                if not busy(name, partition):
                    await self._give_up(name, partition)
                    logger.info("released a bus partition", extra={"step": name, "partition": partition})
            for (step, partition), draining in list(self.held.items()):
                if step == name and not draining:
                    again = (step, partition) in self.reclaim
                    self.reclaim.discard((step, partition))
                    await claim(name, partition, 0 if again else lease_ms)
            if time.monotonic() < self._quiet_until:
                self._balanced = False
                continue
            await self._take_free(name, target, lease_ms, claim)
            held = [p for (step, p), draining in self.held.items() if step == name and not draining]
            self._balanced = self._balanced and len(held) >= self.partitions // alive

    async def _take_free(self, name: str, target: int, lease_ms: int,
                         claim: Callable[[str, int, int], Awaitable[None]]) -> None:
        for partition in range(self.partitions):
            if len([p for (step, p) in self.held if step == name]) >= target:
                return
            if (name, partition) in self.held:
                continue
            token = f"{self.link.instance_id}:{uuid.uuid4().hex[:12]}"
            if await self._acquire(keys=self.keys(name, partition), args=[token, lease_ms]):
                logger.info("took a bus partition", extra={"step": name, "partition": partition})
                self.held[name, partition] = False
                self._tokens[name, partition] = token
                await claim(name, partition, 0)  # right after taking it, every stranded entry is ours

    async def _give_up(self, step: str, partition: int) -> None:
        token = self._tokens.pop((step, partition), "")
        self.held.pop((step, partition), None)
        await self._release(keys=[self.key(step, partition)], args=[token])

    async def release_all(self) -> None:
        """Let every partition go (the instance is leaving): the others take them at once."""
        try:
            for step, partition in list(self.held):
                await self._give_up(step, partition)
            await self.link.client.zrem(self.link.key("instances"), self.link.instance_id)
        finally:
            self.held.clear()
            self._tokens.clear()
